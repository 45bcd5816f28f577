# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reverse proxy's library without nginx: site checks (one-line errors), rendering, htpasswd, DER expiry."""

from __future__ import annotations

import datetime
import time

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.lifeboat.ops.plugins.module_utils import _healthcheck as healthcheck
from ansible_collections.lifeboat.ops.plugins.module_utils import _nginx, _tls_expiry
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError
from prometheus_checks import promtool_check  # pylint: disable=import-error

HOSTILE = "p@ss:w/rd?#&%'\"{{x}}"
GOOD = {"name": "app", "server_names": ["app.example.org"], "upstreams": ["127.0.0.1:8000"]}


@pytest.mark.parametrize(("change", "message"), [
    ({"name": "App!"}, "site name 'App!': use lower-case letters, digits, '-' and '_' (at most 63)"),
    ({"server_names": []}, "site app: server_names must be a non-empty list of host names, not []"),
    ({"server_names": ["bad name"]}, "site app: server_names must be a non-empty list of host names, not ['bad name']"),
    ({"upstreams": ["8000"]}, "site app: upstream '8000' is not host:port or unix:/path"),
    ({"upstreams": []}, "site app: upstreams must list at least one server as host:port or unix:/path"),
    ({"colour": "blue"}, "site app: unknown key(s) colour; known: "),
    ({"tls": "letsencrypt"}, "site app: tls must be one of none, files, self_signed, acme, not 'letsencrypt'"),
    ({"tls": "files"}, "site app: tls: files needs certificate and certificate_key (paths on the host)"),
    ({"tls": "acme", "server_names": ["*.example.org"]}, "site app: a wildcard name cannot be issued through HTTP-01"),
    ({"client_max_body_size": "10 MB"}, "site app: client_max_body_size '10 MB' is no nginx size/time such as 10m"),
    ({"rate_limit": {"rate": "fast"}}, "site app: rate_limit needs rate such as 10r/s or 300r/m"),
    ({"frame_options": "ALLOW"}, "site app: frame_options must be DENY, SAMEORIGIN or ''"),
    ({"referrer_policy": 'x"; evil'}, "site app: referrer_policy must be a header value"),
    ({"basic_auth": {"users": [{"name": "ops"}]}}, "site app: each basic_auth user needs a name (no ':' or spaces)"),
])
def test_a_bad_site_is_one_line_that_says_what_to_fix(change, message):
    with pytest.raises(LifeboatError) as failure:
        _nginx.check_site({**GOOD, **change})
    assert str(failure.value).startswith(message) and "\n" not in str(failure.value)


def test_rendered_site_has_the_security_settings():
    layout = _nginx.Layout(http_port=80, https_port=443)
    site = _nginx.check_site({**GOOD, "tls": "acme", "websocket": True, "rate_limit": {"rate": "10r/s", "burst": 5},
                              "basic_auth": {"users": [{"name": "ops", "password": HOSTILE}]}})
    text = _nginx.render_site(site, layout, ocsp_stapling=True)
    for line in ("return 301 https://$host$request_uri;", "ssl_protocols TLSv1.2 TLSv1.3;", "server_tokens off;",
                 "ssl_stapling on;", 'add_header Strict-Transport-Security "max-age=31536000" always;',
                 "limit_req zone=lifeboat_app burst=5 nodelay;", "limit_req_status 429;",
                 "proxy_set_header Connection $lifeboat_app_connection;", "location ^~ /.well-known/acme-challenge/ {",
                 "auth_basic_user_file /etc/nginx/lifeboat/app.htpasswd;", "include /etc/nginx/lifeboat/app.upstream;"):
        assert line in text, line
    assert HOSTILE not in text
    plain = _nginx.render_site(_nginx.check_site({**GOOD, "tls": "none"}), layout)
    assert "ssl" not in plain and "return 301" not in plain and 'proxy_set_header Connection "";' in plain


def test_htpasswd_is_bcrypt_and_kept_while_the_password_matches():
    users = [{"name": "ops", "password": HOSTILE}]
    first = _nginx.htpasswd(users, None)
    user, digest = first.strip().split(b":", 1)
    assert user == b"ops" and bcrypt.checkpw(HOSTILE.encode(), digest) and HOSTILE.encode() not in first
    assert _nginx.htpasswd(users, first) == first
    assert _nginx.htpasswd([{"name": "ops", "password": "other"}], first) != first


def certificate_until(not_after: datetime.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
            .not_valid_after(not_after).sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


@pytest.mark.parametrize("until", [datetime.datetime(2027, 2, 28, 18, 12, 38, tzinfo=datetime.UTC),
                                   datetime.datetime(2051, 6, 1, 0, 0, 1, tzinfo=datetime.UTC)])
def test_not_after_read_from_der_matches_cryptography(until):
    # 2027: UTCTime; 2051: GeneralizedTime (RFC 5280 switches at 2050).
    assert _tls_expiry.not_after(certificate_until(until)) == until.timestamp()


def test_tls_days_left_metric_is_valid_prometheus_text():
    config = {"probes": [{"name": "site", "type": "tls", "host": "127.0.0.1", "port": 1},
                         {"name": "port", "type": "tcp", "host": "127.0.0.1", "port": 1}]}
    now = time.time()
    results = {"site": {"ok": True, "detail": "", "duration": 0.1, "tls_not_after": 1803838358.0},
               "port": {"ok": False, "detail": "", "duration": 0.1}}
    states = {name: healthcheck.advance(None, results[name]["ok"], 1, now) for name in results}
    text = healthcheck.metrics_text(config, results, states, now)
    assert 'lifeboat_healthcheck_tls_certificate_expiry_timestamp_seconds{probe="site",type="tls"} 1803838358' in text
    assert 'expiry_timestamp_seconds{probe="port"' not in text
    promtool_check(text)


def test_proxy_renew_says_in_one_journal_line_why_it_cannot_run(tmp_path, capsys, monkeypatch):
    """`lifeboat proxy-renew` (the renewal timer's command): an unreadable configuration is exit 1 and one error line;
    a configuration without ACME certificates renews nothing and reloads nothing, forced or not."""
    from ansible_collections.lifeboat.ops.plugins.module_utils import _cli  # pylint: disable=import-outside-toplevel

    assert _cli.main(["proxy-renew", "--config", str(tmp_path / "missing.json")]) == 1
    assert capsys.readouterr().out.startswith(f"<3>cannot read {tmp_path / 'missing.json'}: ")
    config = tmp_path / "renew.json"
    config.write_text('{"acme": {"directory_url": "https://acme.invalid/directory", "account_key": "/nonexistent"},'
                      ' "nginx": {}, "webroot": "/nonexistent", "certificates": []}')
    monkeypatch.setenv("LIFEBOAT_PROXY_RENEW_FORCE", "1")
    assert _cli.main(["proxy-renew", "--config", str(config)]) == 0
    assert capsys.readouterr().out == ""
