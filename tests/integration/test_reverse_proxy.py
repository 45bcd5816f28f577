# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reverse proxy against a real nginx (Debian's, own prefix, loopback ports) and a real ACME server (Pebble)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import typing as t

import pytest
from proxy_bed import Pebble, Upstream, WebSocketEcho, free_port, start_nginx, start_pebble  # pylint: disable=import-error

from ansible_collections.lifeboat.ops.plugins.module_utils import _nginx, _reverse_proxy
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError

REPO_ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

HOSTILE = "p@ss:w/rd?#&%'\"{{x}}"


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[dict[str, t.Any]]:
    root = str(tmp_path_factory.mktemp("proxy"))
    http_port, https_port = free_port(), free_port()
    nginx = start_nginx(root)
    pebble = start_pebble(os.path.join(root, "pebble"), http_port)
    blue, green, ws = Upstream("blue"), Upstream("green"), WebSocketEcho()
    layout = _nginx.Layout(sites_dir=nginx.sites_dir, include_dir=os.path.join(root, "include"),
                           tls_dir=os.path.join(root, "tls"), webroot=os.path.join(root, "webroot"),
                           listen_address="127.0.0.1", http_port=http_port, https_port=https_port)
    acme = _reverse_proxy.Acme(directory_url=pebble.directory_url, account_key=os.path.join(root, "acme", "account.key"),
                               ca_bundle=pebble.ca_bundle)
    yield {"root": root, "nginx": nginx, "control": _nginx.Nginx(**nginx.control()), "pebble": pebble,
           "layout": layout, "acme": acme, "blue": blue, "green": green, "ws": ws}
    for server in (blue, green, ws, pebble, nginx):
        server.stop()


def apply(bed: dict[str, t.Any], sites: list[dict[str, t.Any]], **kwargs: t.Any) -> _reverse_proxy.SitesResult:
    return _reverse_proxy.apply_sites(sites, bed["layout"], bed["control"], bed["acme"], **kwargs)


def request(bed: dict[str, t.Any], method: str = "GET", path: str = "/", host: str = "localhost", tls: bool = True,
            body: bytes | None = None, headers: dict[str, str] | None = None,
            cafile: str | None = None) -> tuple[int, dict[str, str], bytes]:
    layout = bed["layout"]
    if tls:
        context = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
        connection: http.client.HTTPConnection = _nginx.SNIConnection("127.0.0.1", layout.https_port, host, context, 10)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", layout.http_port, timeout=10)
    connection.request(method, path, body=body, headers={"Host": host, **(headers or {})})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def served_certificate(bed: dict[str, t.Any], cafile: str) -> dict[str, t.Any]:
    """The leaf nginx serves for localhost, through a handshake that verifies the chain against cafile."""
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", bed["layout"].https_port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname="localhost") as tls:
        certificate = tls.getpeercert()
    assert certificate
    return dict(certificate)


def served_names(bed: dict[str, t.Any], server_name: str) -> list[str]:
    from cryptography import x509

    context = ssl._create_unverified_context()
    with socket.create_connection(("127.0.0.1", bed["layout"].https_port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return names.value.get_values_for_type(x509.DNSName)


def site(**extra: t.Any) -> dict[str, t.Any]:
    return {"name": "app", "server_names": ["localhost"], "tls": "acme", **extra}


def test_acme_issuance_through_the_proxy_then_forced_renewal(bed: dict[str, t.Any], tmp_path: t.Any) -> None:
    layout, pebble = bed["layout"], t.cast(Pebble, bed["pebble"])
    check = apply(bed, [site(upstreams=[bed["blue"].address])], check_mode=True)
    assert check.changed and not os.path.exists(layout.site_file("app"))  # check mode wrote nothing

    first = apply(bed, [site(upstreams=[bed["blue"].address])])
    assert first.changed and first.certificates["app"]["changed"]
    root = tmp_path / "pebble-root.pem"
    root.write_text(pebble.root_pem())
    leaf = served_certificate(bed, str(root))  # raises unless the served chain verifies against Pebble's root
    assert ("DNS", "localhost") in leaf["subjectAltName"]
    key = layout.certificate_paths(_nginx.check_site(site(upstreams=[bed["blue"].address])))[1]
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(bed["acme"].account_key).st_mode) == 0o600
    assert "PRIVATE KEY" not in json.dumps(first.__dict__, default=str)
    assert request(bed)[0] == 200

    again = apply(bed, [site(upstreams=[bed["blue"].address])])
    assert not again.changed, again.files

    config = tmp_path / "renew.json"
    config.write_text(_reverse_proxy.renewal_config([site(upstreams=[bed["blue"].address])], layout, bed["control"],
                                                    bed["acme"]))
    assert "PRIVATE" not in config.read_text()
    # the renewal timer's command, as its unit runs it
    renew = [sys.executable, os.path.join(REPO_ROOT, "bin", "lifeboat"), "proxy-renew", "--config", str(config)]
    kept = subprocess.run(renew, capture_output=True, text=True, check=False, timeout=120)
    assert kept.returncode == 0 and "<6>app: kept (" in kept.stdout, kept.stdout + kept.stderr
    assert served_certificate(bed, str(root))["serialNumber"] == leaf["serialNumber"]
    forced = subprocess.run([*renew, "--force"], capture_output=True, text=True, check=False, timeout=120)
    lines = forced.stdout.splitlines()
    assert forced.returncode == 0 and "<6>app: renewed (" in lines[0] and "<6>nginx reloaded" in lines[-1], lines
    assert served_certificate(bed, str(root))["serialNumber"] != leaf["serialNumber"]


def test_headers_redirect_and_body_limit(bed: dict[str, t.Any]) -> None:
    apply(bed, [site(upstreams=[bed["blue"].address], client_max_body_size="1k", hsts_max_age=600)])
    status, headers, _body = request(bed, tls=False, path="/some/page?x=1")
    assert status == 301 and headers["location"] == f"https://localhost:{bed['layout'].https_port}/some/page?x=1"
    status, headers, body = request(bed)
    assert status == 200 and json.loads(body)["upstream"] == "blue"
    assert headers["strict-transport-security"] == "max-age=600"
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert headers["server"] == "nginx"  # server_tokens off: no version
    forwarded = json.loads(body)["headers"]
    assert forwarded["X-Forwarded-Proto"] == "https" and forwarded["X-Real-IP"] == "127.0.0.1"
    assert request(bed, "POST", body=b"x" * 4096)[0] == 413
    assert request(bed, "POST", body=b"x" * 512)[0] == 200


def test_rate_limit_answers_429(bed: dict[str, t.Any]) -> None:
    apply(bed, [site(upstreams=[bed["blue"].address], rate_limit={"rate": "2r/s", "burst": 3})])
    statuses = [request(bed)[0] for _attempt in range(20)]
    assert statuses.count(429) >= 10 and statuses.count(200) >= 3, statuses
    print(f"burst of 20: {statuses.count(200)} x 200, {statuses.count(429)} x 429")


def test_websocket_echo_through_the_proxy(bed: dict[str, t.Any]) -> None:
    from websockets.sync.client import connect

    apply(bed, [site(upstreams=[bed["ws"].address], websocket=True)])
    context = ssl._create_unverified_context()
    with connect(f"wss://localhost:{bed['layout'].https_port}/feed", ssl=context, server_hostname="localhost",
                 sock=socket.create_connection(("127.0.0.1", bed["layout"].https_port))) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "echo: hello"


def test_basic_auth_with_a_hostile_password(bed: dict[str, t.Any]) -> None:
    users = {"users": [{"name": "ops", "password": HOSTILE}]}
    first = apply(bed, [site(upstreams=[bed["blue"].address], basic_auth=users)])
    assert HOSTILE not in json.dumps(first.__dict__, default=str)
    assert all("secret, not shown" in d["after"] for d in first.diff if d["after_header"].endswith(".htpasswd"))
    path = bed["layout"].htpasswd_file("app")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640 and HOSTILE.encode() not in open(path, "rb").read()
    import base64

    good = base64.b64encode(f"ops:{HOSTILE}".encode()).decode()
    assert request(bed)[0] == 401
    assert request(bed, headers={"Authorization": f"Basic {good}"})[0] == 200
    assert not apply(bed, [site(upstreams=[bed["blue"].address], basic_auth=users)]).changed  # hash kept
    apply(bed, [site(upstreams=[bed["blue"].address])])
    assert not os.path.exists(path) and request(bed)[0] == 200


@pytest.mark.parametrize("breakage", ["bad directive", "missing certificate", "duplicate server_name"])
def test_a_broken_configuration_fails_in_one_line_and_the_previous_keeps_serving(
        bed: dict[str, t.Any], breakage: str) -> None:
    layout = bed["layout"]
    good = [site(upstreams=[bed["blue"].address])]
    apply(bed, good)
    before = open(layout.site_file("app"), "rb").read()
    with pytest.raises(LifeboatError) as failure:
        if breakage == "bad directive":
            _nginx.apply([_nginx.Planned(layout.site_file("app"), before + b"bogus_directive on;\n")], bed["control"])
        elif breakage == "missing certificate":
            apply(bed, [site(upstreams=[bed["blue"].address], tls="files", certificate="/nonexistent/chain.pem",
                             certificate_key="/nonexistent/key.pem")])
        else:
            apply(bed, [*good, site(name="other", upstreams=[bed["green"].address])])
    message = str(failure.value)
    expected = {"bad directive": 'unknown directive "bogus_directive"',
                "missing certificate": 'cannot load certificate "/nonexistent/chain.pem"',
                "duplicate server_name": 'conflicting server name "localhost"'}[breakage]
    print(message)
    assert message.startswith("nginx -t refused the new configuration: [")
    assert "\n" not in message and expected in message and "still in place and serving" in message
    assert open(layout.site_file("app"), "rb").read() == before
    assert not os.path.exists(layout.site_file("other"))
    status, _headers, body = request(bed)
    assert status == 200 and json.loads(body)["upstream"] == "blue"


def test_upstream_switch_under_a_request_loop_loses_no_request(bed: dict[str, t.Any]) -> None:
    layout, control = bed["layout"], bed["control"]
    apply(bed, [site(upstreams=[bed["blue"].address])])
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                status, _headers, body = request(bed)
                seen.append(json.loads(body)["upstream"]) if status == 200 else failures.append(str(status))
            except Exception as exc:  # noqa: BLE001 - any failure is counted
                failures.append(repr(exc))

    workers = [threading.Thread(target=loop) for _worker in range(3)]
    for worker in workers:
        worker.start()
    try:
        probe = _nginx.Probe(host="localhost", port=layout.https_port, expect_body='"upstream": "green"')
        for target, name in ((bed["green"], "green"), (bed["blue"], "blue"), (bed["green"], "green")):
            probe.expect_body = f'"upstream": "{name}"'
            switched = _nginx.switch_upstream("app", [target.address], 16, layout, control, probe)
            assert switched.changed and switched.probe == "HTTP 200"
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    print(f"{len(seen)} requests across 3 switches, {len(failures)} failed")
    assert not failures and len(seen) > 30 and seen[-1] == "green" and "blue" in seen


def test_a_switch_to_an_upstream_that_does_not_answer_is_rolled_back(bed: dict[str, t.Any]) -> None:
    layout = bed["layout"]
    apply(bed, [site(upstreams=[bed["blue"].address])])
    before = open(layout.upstream_file("app"), "rb").read()
    probe = _nginx.Probe(host="localhost", port=layout.https_port, expect_status=(200,), timeout=2)
    with pytest.raises(LifeboatError, match=r"does not answer through the proxy: .*HTTP 502.*restored and reloaded"):
        _nginx.switch_upstream("app", [f"127.0.0.1:{free_port()}"], 16, layout, bed["control"], probe)
    assert open(layout.upstream_file("app"), "rb").read() == before
    assert json.loads(request(bed)[2])["upstream"] == "blue"


def test_tls_expiry_probe_reads_the_served_certificate(bed: dict[str, t.Any], tmp_path: t.Any) -> None:
    """The healthcheck role's tls probe (its real runner) against the certificate nginx serves, Pebble's chain."""
    from testbed import metric  # pylint: disable=import-error

    apply(bed, [site(upstreams=[bed["blue"].address])])
    root = tmp_path / "pebble-root.pem"
    root.write_text(bed["pebble"].root_pem())
    port = bed["layout"].https_port
    probes = [
        {"name": "served", "type": "tls", "host": "127.0.0.1", "port": port, "server_name": "localhost",
         "ca_file": str(root)},
        {"name": "too-soon", "type": "tls", "host": "127.0.0.1", "port": port, "server_name": "localhost",
         "ca_file": str(root), "min_days": 400},
        {"name": "untrusted", "type": "tls", "host": "127.0.0.1", "port": port, "server_name": "localhost"},
        {"name": "stopped", "type": "tls", "host": "127.0.0.1", "port": free_port(), "server_name": "localhost"},
    ]
    metrics = tmp_path / "metrics.prom"
    config = tmp_path / "healthcheck.json"
    config.write_text(json.dumps({"probes": probes, "metrics_file": str(metrics)}))
    done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "bin", "lifeboat"), "healthcheck",
                           "--config", str(config), "--state", str(tmp_path / "state.json")],
                          capture_output=True, text=True, check=False, timeout=60)
    lines = {line.split(":")[0].lstrip("<0123456789>"): line for line in done.stdout.splitlines()}
    print(done.stdout)
    assert "served: healthy: TLS localhost at 127.0.0.1" in lines["served"] and "days left (until" in lines["served"]
    assert "(< 400, critical)" in lines["too-soon"] and "failing" in lines["too-soon"]  # min_days: critical_days
    assert "certificate does not verify" in lines["untrusted"]
    assert "failing" in lines["stopped"] and "refused" in lines["stopped"].lower()
    text = metrics.read_text()
    expires = metric(text, "lifeboat_healthcheck_tls_certificate_expiry_timestamp_seconds", probe="served", type="tls")
    assert 80 < (expires - time.time()) / 86400 <= 90  # Pebble's default validity: 90 days
    assert metric(text, "lifeboat_healthcheck_up", probe="served", type="tls") == 1
    assert metric(text, "lifeboat_healthcheck_up", probe="stopped", type="tls") == 0


def module_args(bed: dict[str, t.Any], **extra: t.Any) -> dict[str, t.Any]:
    layout, control = bed["layout"], bed["nginx"].control()
    return {"sites_dir": layout.sites_dir, "include_dir": layout.include_dir, "tls_dir": layout.tls_dir,
            "webroot": layout.webroot, "listen_address": "127.0.0.1", "http_port": layout.http_port,
            "https_port": layout.https_port, "nginx_binary": control["binary"], "nginx_config": control["config"],
            "nginx_prefix": control["prefix"], "nginx_pid_file": control["pid_file"], **extra}


def test_modules_check_mode_diff_idempotence_and_no_secret(
        bed: dict[str, t.Any], run_module: t.Any, tmp_path: t.Any) -> None:
    acme = bed["acme"]
    sites: list[dict[str, t.Any]] = [
        {"name": "app", "server_names": ["localhost"], "upstreams": [bed["blue"].address], "tls": "acme",
         "rate_limit": {"rate": "50r/s", "burst": 50}, "basic_auth": {"users": [{"name": "ops", "password": HOSTILE}]}},
        {"name": "dev", "server_names": ["dev.localhost"], "upstreams": [bed["green"].address]}]
    args = module_args(bed, sites=sites, htpasswd_group="root", acme_directory_url=acme.directory_url,
                       acme_account_key=acme.account_key, acme_ca_bundle=acme.ca_bundle,
                       renewal_config=str(tmp_path / "renew.json"), _ansible_diff=True)
    before = {name: open(path, "rb").read() for name in ("app",)
              for path in [bed["layout"].site_file(name)] if os.path.exists(path)}
    check = run_module("reverse_proxy_sites", args, check_mode=True)
    assert check.rc == 0 and check.result["changed"], check.stdout + check.stderr
    assert bed["layout"].site_file("dev") in check.result["files"] and not os.path.exists(bed["layout"].site_file("dev"))
    assert {name: open(bed["layout"].site_file(name), "rb").read() for name in before} == before
    first = run_module("reverse_proxy_sites", args)
    assert first.rc == 0 and first.result["changed"], first.stdout + first.stderr
    assert "server_name dev.localhost;" in first.result["diff"]["after"]
    assert "(secret, not shown)" in first.result["diff"]["after"]
    for run in (check, first):
        assert HOSTILE not in run.stdout + run.stderr and "PRIVATE KEY" not in run.stdout
    assert first.result["probes"] == {"app": "HTTP 401", "dev": "HTTP 200"}
    assert served_names(bed, "dev.localhost") == ["dev.localhost"]  # SNI picks each site's own certificate
    assert served_names(bed, "localhost") == ["localhost"]
    assert "PRIVATE" not in (tmp_path / "renew.json").read_text()
    again = run_module("reverse_proxy_sites", args)
    assert again.rc == 0 and not again.result["changed"], again.result

    switch = {**module_args(bed), "site": "dev", "upstreams": [bed["blue"].address],
              "expect_status": [200], "expect_body": '"upstream": "blue"', "_ansible_diff": True}
    dry = run_module("nginx_upstream", switch, check_mode=True)
    assert dry.rc == 0 and dry.result["changed"] and bed["green"].address in dry.result["diff"]["before"]
    assert json.loads(request(bed, host="dev.localhost")[2])["upstream"] == "green"
    moved = run_module("nginx_upstream", switch)
    assert moved.rc == 0 and moved.result["changed"] and moved.result["probe"] == "HTTP 200", moved.stdout
    assert json.loads(request(bed, host="dev.localhost")[2])["upstream"] == "blue"
    assert not run_module("nginx_upstream", switch).result["changed"]

    bad = run_module("reverse_proxy_sites", {**args, "sites": [{**sites[1], "upstreams": ["no port"]}]})
    assert bad.rc != 0 and bad.result["msg"] == "site dev: upstream 'no port' is not host:port or unix:/path"
    missing = run_module("nginx_upstream", {**switch, "site": "nosuch"})
    assert missing.rc != 0 and "site nosuch does not exist" in missing.result["msg"]
