# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's ingress check against what the real cloudflared answered (tests/unit/fixtures/README.md): the
verdicts are cloudflared's; the messages name the mistake; what cloudflared ignores comes back as warnings."""

from __future__ import annotations

import json
import os
import re

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _ingress

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
with open(os.path.join(FIXTURES, "cloudflared_ingress_verdicts.json"), encoding="utf-8") as _handle:
    CASES = json.load(_handle)["cases"]
# Mistakes a new user makes (misspelled keys, a service without a scheme, odd statuses), put to the same cloudflared.
with open(os.path.join(FIXTURES, "cloudflared_ingress_verdicts_mistakes.json"), encoding="utf-8") as _handle:
    MISTAKES = json.load(_handle)["cases"]
ALL_CASES = CASES + MISTAKES
# The one valid config that our stricter check refuses on purpose (cloudflared does not look for shadowing).
SHADOWED = {"shadowed_by_wildcard"}


def test_the_recording_is_complete():
    assert len(CASES) == 33
    assert sum(1 for case in CASES if case["validate"]["ok"]) == 19
    assert sum(len(case.get("rules", [])) for case in CASES) == 209


def test_the_recording_of_mistakes_is_complete():
    assert len(MISTAKES) == 16
    assert sum(1 for case in MISTAKES if case["validate"]["ok"]) == 7
    assert sum(1 for case in MISTAKES if "unused keys" in case["validate"]["output"]) == 4


@pytest.mark.parametrize("case", ALL_CASES, ids=[case["name"] for case in ALL_CASES])
def test_validate_and_match_agree_with_cloudflared(case):
    try:
        ingress = _ingress.validate(_ingress.load_yaml(case["config"]))
    except _ingress.IngressError as exc:
        assert not case["validate"]["ok"], f"cloudflared accepts it, we refused: {exc}"
        assert "\n" not in str(exc) and str(exc)
        return
    assert case["validate"]["ok"], f"cloudflared refuses it ({case['validate']['output']}), we accepted"
    for probe in case["rules"]:
        assert ingress.match(probe["url"]) == probe["matched_rule"], probe["url"]


@pytest.mark.parametrize("case", [c for c in ALL_CASES if c["validate"]["ok"]], ids=lambda case: case["name"])
def test_the_stricter_check_refuses_only_the_shadowed_config(case):
    config = _ingress.load_yaml(case["config"])
    if case["name"] in SHADOWED:
        with pytest.raises(_ingress.IngressError) as raised:
            _ingress.check(config)
        assert str(raised.value) == (
            "rule #2 (ns.example.com -> http://127.0.0.1:1337) is shadowed by rule #1 (*.example.com -> "
            "http://127.0.0.1:8080): every request for it matches the earlier rule first; put the more specific "
            "rule first or remove one")
    else:
        ingress = _ingress.check(config)
        # The URL probes put to cloudflared select the rule that declares the hostname.
        for url, index in ingress.probe_urls():
            host = _ingress.request_target(url)[0].lower()
            assert ingress.rules[index].hostname.lower() in (host, host.replace("lifeboat-probe", "*", 1))


@pytest.mark.parametrize("case", [c for c in ALL_CASES if c["validate"]["ok"] and c["name"] not in SHADOWED],
                         ids=lambda case: case["name"])
def test_the_stricter_check_warns_of_the_keys_cloudflared_ignores(case):
    """A warning names each key cloudflared reports unused ("field X not found"), and only those."""
    unused = re.findall(r"field (\S+) not found", case["validate"]["output"])
    warnings = _ingress.check(_ingress.load_yaml(case["config"])).warnings
    key_warnings = [warning for warning in warnings if "cloudflared ignores" in warning]
    assert len(key_warnings) == len(unused)
    for key, warning in zip(unused, key_warnings, strict=True):
        assert f"the unknown key '{key}' (" in warning and "\n" not in warning


@pytest.mark.parametrize(("name", "warning"), [
    ("rule_key_misspelled_in_last_rule",
     "rule #2 (* -> http://127.0.0.1:8080): cloudflared ignores the unknown key 'hostnme' (did you mean hostname? a "
     "rule takes hostname, path, service, originRequest)"),
    ("origin_request_unknown_key",
     "rule #1: cloudflared ignores in originRequest the unknown key 'conectTimeout' (did you mean connectTimeout? "
     "originRequest takes connectTimeout, tlsTimeout, tcpKeepAlive, noHappyEyeballs, keepAliveConnections, "
     "keepAliveTimeout, httpHostHeader, originServerName, matchSNItoHost, caPool, noTLSVerify, disableChunkedEncoding, "
     "bastionMode, proxyAddress, proxyPort, proxyType, ipRules, http2Origin, access)"),
    ("access_unknown_key",
     "rule #1: cloudflared ignores in originRequest.access the unknown key 'team' (did you mean teamName? access takes "
     "required, teamName, audTag, environment)"),
    ("http_status_700",
     "rule #2 (* -> http_status:700): 700 is not an HTTP status (100-599), though cloudflared takes up to 999; give "
     "e.g. http_status:404"),
])
def test_what_cloudflared_accepts_and_ignores_is_a_warning(name, warning):
    case = next(case for case in MISTAKES if case["name"] == name)
    assert case["validate"]["ok"]
    assert _ingress.check(_ingress.load_yaml(case["config"])).warnings == (warning,)


@pytest.mark.parametrize(("name", "message"), [
    ("rule_key_misspelled",
     "rule #1 has the unknown key 'hostnme' (did you mean hostname? a rule takes hostname, path, service, "
     "originRequest), which cloudflared skips, and then refuses the rule: rule #1 matches every hostname, so the rules "
     "after it would never be used: the catch-all must be the last rule"),
    ("rule_service_misspelled",
     "rule #1 has the unknown key 'servce' (did you mean service? a rule takes hostname, path, service, originRequest), "
     "which cloudflared skips, and then refuses the rule: service is missing; give one with a scheme (http://, "
     "https://, tcp://, ssh://, unix:, http_status:NNN ...)"),
    ("service_no_scheme_name_port",
     "rule #1: service localhost:8080 needs a scheme (http://, https://, tcp://, ssh://, unix:, http_status:NNN ...), "
     "e.g. http://localhost:8080"),
    ("service_no_scheme_hostname",
     "rule #1: service localhost needs a scheme (http://, https://, tcp://, ssh://, unix:, http_status:NNN ...), e.g. "
     "http://localhost"),
    ("service_a_number",
     "rule #1: service 8080 needs a scheme (http://, https://, tcp://, ssh://, unix:, http_status:NNN ...), e.g. "
     "http://127.0.0.1:8080"),
])
def test_refusals_name_the_mistake(name, message):
    """cloudflared refuses these with a catch-all complaint, "is an invalid address", or Go's URL parser's words."""
    case = next(case for case in ALL_CASES if case["name"] == name)
    assert not case["validate"]["ok"]
    with pytest.raises(_ingress.IngressError) as raised:
        _ingress.validate(_ingress.load_yaml(case["config"]))
    assert str(raised.value) == message


def test_a_service_with_a_port_and_no_scheme_is_named_where_go_speaks_of_path_segments():
    case = next(case for case in CASES if case["name"] == "service_no_scheme")
    assert case["validate"]["output"] == 'Validation failed: parse "127.0.0.1:8080": first path segment in URL cannot contain colon'
    with pytest.raises(_ingress.IngressError, match=r"^rule #1: service 127\.0\.0\.1:8080 needs a scheme \(http://, "):
        _ingress.validate(_ingress.load_yaml(case["config"]))


def rules(*entries):
    return {"tunnel": "6ff42ae2-765d-4adf-8112-31c55c1551ef", "credentials-file": "/etc/cloudflared/t.json",
            "ingress": [*entries]}


CATCH_ALL = {"service": "http_status:404"}


@pytest.mark.parametrize(("config", "message"), [
    (rules({"hostname": "ns.example.com", "service": "http://127.0.0.1:1337"}),
     "the last ingress rule (#1) must match all URLs (no hostname and no path), e.g. {service: http_status:404}"),
    (rules({"hostname": "ns.example.com", "service": "htp://127.0.0.1:1337"}, CATCH_ALL),
     "rule #1 (ns.example.com -> htp://127.0.0.1:1337): unknown service scheme 'htp'; use one of http, https, ws, "
     "wss, tcp, ssh, rdp, smb, unix:, unix+tls:, http_status:, hello_world, hello-world, bastion, socks-proxy, "
     "warp-routing"),
    (rules({"hostname": "ns.example.com", "service": "http://a:1"}, {"hostname": "NS.example.com", "service": "http://b:1"},
           CATCH_ALL),
     "rule #2 (NS.example.com -> http://b:1) is shadowed by rule #1 (ns.example.com -> http://a:1): every request for "
     "it matches the earlier rule first; put the more specific rule first or remove one"),
    (rules({"hostname": "*.example.com", "service": "http://a:1"}, {"hostname": "*.live.example.com", "service": "http://b:1"},
           CATCH_ALL),
     "rule #2 (*.live.example.com -> http://b:1) is shadowed by rule #1 (*.example.com -> http://a:1): every request "
     "for it matches the earlier rule first; put the more specific rule first or remove one"),
    (rules({"hostname": "a.example.com", "path": "^/api", "service": "http://a:1"},
           {"hostname": "a.example.com", "path": "^/api", "service": "http://b:1"}, CATCH_ALL),
     "rule #2 (a.example.com path ^/api -> http://b:1) is shadowed by rule #1 (a.example.com path ^/api -> http://a:1): "
     "every request for it matches the earlier rule first; put the more specific rule first or remove one"),
    (rules({"hostname": "a.example.com", "path": "^/(?=x)", "service": "http://a:1"}, CATCH_ALL),
     "rule #1: path '^/(?=x)' uses lookaround or a backreference, which cloudflared's regular expressions (RE2) do "
     "not have"),
])
def test_refusals_are_one_line_and_name_the_rules(config, message):
    with pytest.raises(_ingress.IngressError) as raised:
        _ingress.check(config)
    assert str(raised.value) == message


def test_what_is_not_shadowed():
    ingress = _ingress.check(rules(
        {"hostname": "ns.example.com", "path": "^/api/", "service": "http://a:1"},
        {"hostname": "ns.example.com", "service": "http://b:1"},
        {"hostname": "live.example.com", "service": "http://c:1"},
        {"hostname": "bücher.example.com", "service": "http://e:1"},
        {"hostname": "*.example.com", "service": "http://d:1"},
        CATCH_ALL))
    assert ingress.match("https://ns.example.com/api/v1") == 0
    assert ingress.match("https://ns.example.com/") == 1
    assert ingress.match("https://x.example.com:8443/") == 4
    assert ingress.match("https://xn--bcher-kva.example.com/") == 3  # cloudflared matches the punycode too
    assert ingress.match("https://example.com/") == 5
    assert ingress.probe_urls() == [
        ("https://ns.example.com/", 1), ("https://live.example.com/", 2), ("https://bücher.example.com/", 3),
        ("https://lifeboat-probe.example.com/", 4)]


def test_render_yaml_reads_back_as_the_same_data():
    config = {"tunnel": "6ff4", "credentials-file": "/etc/cloudflared/t.json", "metrics": "127.0.0.1:20241",
              "originRequest": {"connectTimeout": "10s", "keepAliveConnections": 50, "noTLSVerify": False},
              "ingress": [{"hostname": "a.example.com", "path": "^/x: #y", "service": "http://127.0.0.1:1",
                           "originRequest": {"access": {"required": True, "teamName": "t", "audTag": ["a", "b"]},
                                             "empty": {}, "none": []}},
                          {"service": "http_status:404"}]}
    assert _ingress.load_yaml(_ingress.render_yaml(config)) == config


def test_the_host_command_checks_a_config_file(tmp_path):
    import io  # pylint: disable=import-outside-toplevel

    from ansible_collections.lifeboat.ops.plugins.module_utils import _cli  # pylint: disable=import-outside-toplevel

    case = next(case for case in CASES if case["name"] == "websocket_app")
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text(case["config"])
    bad.write_text(next(case for case in CASES if case["name"] == "shadowed_by_wildcard")["config"])
    stream = io.StringIO()
    assert _cli.main(["ingress-check", str(good), "--url", "https://live.example.com/socket.io/?EIO=4"],
                     output=_cli.Output(stream)) == 0
    assert stream.getvalue().splitlines() == [
        "rule #1 (live.example.com path ^/socket\\.io/ -> http://127.0.0.1:3000)",
        "rule #2 (live.example.com -> http://127.0.0.1:8080)",
        "rule #3 (* -> http_status:404)",
        "https://live.example.com/socket.io/?EIO=4 -> rule #1 (live.example.com path ^/socket\\.io/ -> http://127.0.0.1:3000)",
    ]
    stream = io.StringIO()
    assert _cli.main(["ingress-check", str(bad)], output=_cli.Output(stream)) == 1
    assert stream.getvalue() == (f"error: ingress-check failed: {bad}: rule #2 (ns.example.com -> http://127.0.0.1:1337) "
                                 "is shadowed by rule #1 (*.example.com -> http://127.0.0.1:8080): every request for it "
                                 "matches the earlier rule first; put the more specific rule first or remove one\n")
    stream = io.StringIO()
    assert _cli.main(["ingress-check", str(tmp_path / "missing.yml")], output=_cli.Output(stream)) == 1
    assert stream.getvalue() == f"error: ingress-check failed: cannot read {tmp_path / 'missing.yml'}: No such file or directory\n"


def test_the_host_command_prints_the_warnings(tmp_path):
    import io  # pylint: disable=import-outside-toplevel

    from ansible_collections.lifeboat.ops.plugins.module_utils import _cli  # pylint: disable=import-outside-toplevel

    path = tmp_path / "config.yml"
    path.write_text(next(case for case in MISTAKES if case["name"] == "http_status_700")["config"])
    stream = io.StringIO()
    assert _cli.main(["ingress-check", str(path)], output=_cli.Output(stream)) == 0
    assert stream.getvalue().splitlines() == [
        "warning: rule #2 (* -> http_status:700): 700 is not an HTTP status (100-599), though cloudflared takes up to "
        "999; give e.g. http_status:404",
        "rule #1 (ns.example.com -> http://127.0.0.1:1337)",
        "rule #2 (* -> http_status:700)",
    ]
