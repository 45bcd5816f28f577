# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cloudflare_tunnel role's modules: the readiness gate against a real loopback endpoint that answers 503 and
then 200, and the ingress module run as Ansible runs it on a host."""

from __future__ import annotations

import http.server
import json
import os
import shlex
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _healthcheck, _ingress, _probes, _tunnel
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError

TUNNEL = "6ff42ae2-765d-4adf-8112-31c55c1551ef"


class ReadyEndpoint:
    """GET /ready: 503 (cloudflared without a connection) until ``ready_after`` seconds have passed, then 200."""

    def __init__(self, ready_after: float) -> None:
        self.started = time.monotonic()
        self.answers: list[int] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                ready = time.monotonic() - outer.started >= ready_after
                status = 200 if ready else 503
                outer.answers.append(status)
                body = json.dumps({"status": status, "readyConnections": 4 if ready else 0}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ready"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(name="endpoint")
def fixture_endpoint(request):
    server = ReadyEndpoint(getattr(request, "param", 0.6))
    yield server
    server.stop()


def run_module(name, args, tmp_path, check_mode=False):
    args_file = tmp_path / f"{name}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}))
    done = subprocess.run([sys.executable, "-m", f"ansible_collections.lifeboat.ops.plugins.modules.{name}",
                           str(args_file)], capture_output=True, text=True, check=False, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.environ["ANSIBLE_COLLECTIONS_PATH"]}, timeout=120)
    return done.returncode, json.loads(done.stdout)


def test_the_gate_waits_through_503s_until_200(endpoint):
    result = _probes.wait_ready(endpoint.url, timeout=10, interval=0.2)
    # Counts and bounds loose enough for a loaded 2-core machine: what matters is 503s first, then one 200.
    assert result["status"] == 200 and result["attempts"] >= 2 and result["elapsed"] < 8
    assert endpoint.answers[0] == 503 and endpoint.answers[-1] == 200 and endpoint.answers.count(200) == 1


@pytest.mark.parametrize("endpoint", [3600], indirect=True)
def test_the_gate_fails_in_one_line_after_the_timeout(endpoint):
    started = time.monotonic()
    with pytest.raises(LifeboatError) as raised:
        _probes.wait_ready(endpoint.url, timeout=1.5, interval=0.25)
    assert 1.0 <= time.monotonic() - started < 10
    assert str(raised.value).startswith(f"{endpoint.url} was not ready within 1.5 s: ")
    assert str(raised.value).endswith(" tries, the last answered HTTP 503, expected HTTP 200")
    assert set(endpoint.answers) == {503}


def test_the_gate_names_a_refused_connection(endpoint):
    url = endpoint.url
    endpoint.stop()
    with pytest.raises(LifeboatError, match=r"the last answered Connection refused, expected HTTP 200$"):
        _probes.wait_ready(url, timeout=0.5, interval=0.1)


def test_the_wait_ready_module_succeeds_and_fails_as_a_module(endpoint, tmp_path):
    rc, result = run_module("wait_ready", {"url": endpoint.url, "timeout": 10, "interval": 0.2}, tmp_path)
    assert rc == 0 and result["changed"] is False and result["status"] == 200, result
    rc, result = run_module("wait_ready", {"url": endpoint.url.replace("/ready", "/x"), "timeout": 1,
                                           "expect_status": [204], "interval": 0.2}, tmp_path, check_mode=True)
    assert rc == 1 and result["msg"].endswith("the last answered HTTP 200, expected HTTP 204") and "\n" not in result["msg"]


INGRESS = [{"hostname": "ns.example.com", "service": "http://127.0.0.1:1337"}, {"service": "http_status:404"}]


def test_the_ingress_module_returns_the_checked_config(tmp_path):
    args = {"tunnel": TUNNEL, "credentials_file": f"/etc/cloudflared/{TUNNEL}.json", "ingress": INGRESS,
            "origin_request": {"connectTimeout": "10s"}}
    rc, result = run_module("cloudflared_ingress", args, tmp_path, check_mode=True)
    assert rc == 0 and result["changed"] is False, result
    assert _ingress.load_yaml(result["config"]) == {
        "tunnel": TUNNEL, "credentials-file": f"/etc/cloudflared/{TUNNEL}.json", "metrics": "127.0.0.1:20241",
        "no-autoupdate": True, "originRequest": {"connectTimeout": "10s"}, "ingress": INGRESS}
    assert result["routes"] == [{"url": "https://ns.example.com/", "rule": 1}]
    assert result["rules"] == ["rule #1 (ns.example.com -> http://127.0.0.1:1337)", "rule #2 (* -> http_status:404)"]


@pytest.mark.parametrize(("change", "message"), [
    ({"ingress": [{"hostname": "*.example.com", "service": "http://a:1"}, *INGRESS]},
     "rule #2 (ns.example.com -> http://127.0.0.1:1337) is shadowed by rule #1 (*.example.com -> http://a:1): every "
     "request for it matches the earlier rule first; put the more specific rule first or remove one"),
    ({"ingress": INGRESS[:1]},
     "the last ingress rule (#1) must match all URLs (no hostname and no path), e.g. {service: http_status:404}"),
    ({"ingress": [{"hostname": "ns.example.com", "service": "htps://127.0.0.1:1"}, INGRESS[1]]},
     "rule #1 (ns.example.com -> htps://127.0.0.1:1): unknown service scheme 'htps'; use one of http, https, ws, wss, "
     "tcp, ssh, rdp, smb, unix:, unix+tls:, http_status:, hello_world, hello-world, bastion, socks-proxy, warp-routing"),
    ({"metrics": "0.0.0.0:20241"}, "metrics '0.0.0.0:20241' must be a loopback address and port, e.g. 127.0.0.1:20241"),
])
def test_the_ingress_module_refuses_in_one_line(tmp_path, change, message):
    rc, result = run_module("cloudflared_ingress", {"ingress": INGRESS, **change}, tmp_path)
    assert (rc, result["msg"]) == (1, message)


@pytest.mark.parametrize(("ingress", "message"), [
    ([{"hostnme": "ns.example.com", "service": "http://127.0.0.1:1337"}, INGRESS[1]],
     "rule #1 has the unknown key 'hostnme' (did you mean hostname? a rule takes hostname, path, service, "
     "originRequest), which cloudflared skips, and then refuses the rule: rule #1 matches every hostname, so the rules "
     "after it would never be used: the catch-all must be the last rule"),
    ([{"hostname": "ns.example.com", "service": "127.0.0.1:1337"}, INGRESS[1]],
     "rule #1: service 127.0.0.1:1337 needs a scheme (http://, https://, tcp://, ssh://, unix:, http_status:NNN ...), "
     "e.g. http://127.0.0.1:1337"),
])
def test_the_ingress_module_names_the_mistake(tmp_path, ingress, message):
    rc, result = run_module("cloudflared_ingress", {"ingress": ingress}, tmp_path)
    assert (rc, result["msg"]) == (1, message)


def test_the_ingress_module_warns_of_what_cloudflared_ignores(tmp_path):
    """cloudflared accepts these (its verdicts: tests/unit/fixtures/cloudflared_ingress_verdicts_mistakes.json), and
    the module passes them too, with a warning each."""
    ingress = [{**INGRESS[0], "originRequest": {"conectTimeout": "10s"}},
               {"hostnme": "other.example.com", "service": "http_status:700"}]
    rc, result = run_module("cloudflared_ingress", {"ingress": ingress}, tmp_path, check_mode=True)
    assert (rc, result["changed"]) == (0, False), result
    # ansible-core 2.19 returns each warning as {"event": {"msg": ...}}, earlier ones as the text
    assert [warning["event"]["msg"] if isinstance(warning, dict) else warning for warning in result["warnings"]] == [
        "rule #2 (* -> http_status:700): cloudflared ignores the unknown key 'hostnme' (did you mean hostname? a rule "
        "takes hostname, path, service, originRequest)",
        "rule #1: cloudflared ignores in originRequest the unknown key 'conectTimeout' (did you mean connectTimeout? "
        "originRequest takes connectTimeout, tlsTimeout, tcpKeepAlive, noHappyEyeballs, keepAliveConnections, "
        "keepAliveTimeout, httpHostHeader, originServerName, matchSNItoHost, caPool, noTLSVerify, "
        "disableChunkedEncoding, bastionMode, proxyAddress, proxyPort, proxyType, ipRules, http2Origin, access)",
        "rule #2 (* -> http_status:700): 700 is not an HTTP status (100-599), though cloudflared takes up to 999; give "
        "e.g. http_status:404"]


def fake_cloudflared(tmp_path, validate_exit=0, matched=0):
    """A stand-in for the binary this machine cannot have: it reaches the module's two error paths, nothing more.
    `ingress rule` names the rule by its 0-based index, as the real one does (recorded_cloudflared)."""
    script = tmp_path / "cloudflared"
    script.write_text("#!/bin/sh\n"
                      f'[ "$5" = validate ] && {{ echo "Validation failed: made up" >&2; exit {validate_exit}; }}\n'
                      f'echo "Matched rule #{matched}"\n')
    script.chmod(0o755)
    return str(script)


def recorded_cloudflared(tmp_path, case):
    """Says, for one recorded config, word for word what the real cloudflared said (validate, and rule URL)."""
    lines = ["#!/bin/sh", f'[ "$5" = validate ] && {{ printf %s {shlex.quote(case["validate"]["output"])}; exit 0; }}']
    lines += [f'[ "$6" = {shlex.quote(probe["url"])} ] && {{ printf %s {shlex.quote(probe["output"])}; exit 0; }}'
              for probe in case["rules"]]
    script = tmp_path / "cloudflared"
    script.write_text("\n".join([*lines, "exit 1", ""]))
    script.chmod(0o755)
    return str(script)


def test_the_real_cloudflareds_answers_pass(tmp_path):
    """Its `ingress rule` output, recorded: "Matched rule #0" is the first rule (the check once read it as #1)."""
    with open(os.path.join(os.path.dirname(__file__), "fixtures", "cloudflared_ingress_verdicts_mistakes.json"),
              encoding="utf-8") as handle:
        case = next(case for case in json.load(handle)["cases"] if case["name"] == "rule_key_misspelled_in_last_rule")
    config = _ingress.load_yaml(case["config"])
    ingress = _ingress.check(config)
    assert _tunnel.cloudflared_agrees(recorded_cloudflared(tmp_path, case), case["config"], ingress) == [
        "cloudflared ingress validate: OK", "cloudflared ingress rule https://ns.example.com/: rule #1"]


def test_cloudflareds_own_verdicts_stop_the_check(tmp_path):
    ingress = _ingress.check({"ingress": INGRESS})
    text = _ingress.render_yaml({"ingress": INGRESS})
    assert _tunnel.cloudflared_agrees(fake_cloudflared(tmp_path), text, ingress) == [
        "cloudflared ingress validate: OK", "cloudflared ingress rule https://ns.example.com/: rule #1"]
    with pytest.raises(LifeboatError, match=r"^cloudflared refuses the new configuration: Validation failed: made up$"):
        _tunnel.cloudflared_agrees(fake_cloudflared(tmp_path, validate_exit=1), text, ingress)
    with pytest.raises(LifeboatError, match=r"^cloudflared sends https://ns.example.com/ to rule #2, not to rule #1 "):
        _tunnel.cloudflared_agrees(fake_cloudflared(tmp_path, matched=1), text, ingress)


def test_the_example_inventories_pass_the_checks(tmp_path):
    """examples/edge: the Nightscout host's ingress passes the role's check; both hosts' probes pass the runner's."""
    import yaml  # pylint: disable=import-outside-toplevel

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    for host in ("ns1.example.internal", "daylog1.example.internal"):
        with open(os.path.join(root, "examples", "edge", "host_vars", f"{host}.yml"), encoding="utf-8") as handle:
            host_vars = yaml.safe_load(handle)
        (tmp_path / "probes.json").write_text(json.dumps({"probes": host_vars["healthcheck_probes"]}))
        assert _healthcheck.load_config(str(tmp_path / "probes.json"))["probes"]
        if "cloudflare_tunnel_ingress" in host_vars:
            config = _tunnel.build_config({"tunnel": host_vars["cloudflare_tunnel_id"], "metrics": "127.0.0.1:20241",
                                           "credentials_file": "/etc/cloudflared/x.json",
                                           "ingress": host_vars["cloudflare_tunnel_ingress"]})
            assert _ingress.check(config).probe_urls() == [("https://ns.example.com/", 0)]
