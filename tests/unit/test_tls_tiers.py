# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tls probe's two tiers against a real loopback TLS server serving a self-signed certificate: fewer than
warn_days (21) left is WARNING, fewer than critical_days (7) CRITICAL, in the library, the runner's exit code
(--nagios), its metrics and its alerts."""

from __future__ import annotations

import datetime
import http.server
import json
import os
import socket
import ssl
import threading
import typing as t

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.lifeboat.ops.plugins.module_utils import _cli, _tls_expiry
from prometheus_checks import promtool_check  # pylint: disable=import-error


def self_signed(directory: t.Any, days: float) -> tuple[str, str]:
    """(certificate file, key file) of a certificate for localhost that expires ``days`` from now."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = os.path.join(directory, f"cert-{days}.pem"), os.path.join(directory, f"key-{days}.pem")
    with open(cert_file, "wb") as handle:
        handle.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert_file, key_file


class TLSServer:
    """A loopback TLS server (a thread of the test's own) that completes handshakes with one certificate."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _peer = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(5)
                    tls.recv(1)  # until the client closes
            except OSError:
                conn.close()

    def stop(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread (close alone does not)
        self.listener.close()
        self.thread.join(5)


class Hook:
    """A loopback webhook receiver (the alerts)."""

    def __init__(self) -> None:
        received: list[t.Any] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(name="served")
def fixture_served(tmp_path: t.Any) -> t.Iterator[t.Callable[[float], tuple[int, str]]]:
    """served(days) -> (port, CA file) of a running server whose certificate has that many days left."""
    servers: list[TLSServer] = []

    def serve(days: float) -> tuple[int, str]:
        cert_file, key_file = self_signed(str(tmp_path), days)
        servers.append(TLSServer(cert_file, key_file))
        return servers[-1].port, cert_file

    yield serve
    for server in servers:
        server.stop()


@pytest.mark.parametrize(("days", "state"), [(40, "OK"), (10, "WARNING"), (3, "CRITICAL")])
def test_library_tiers_with_the_defaults(served: t.Callable[[float], tuple[int, str]], days: float,
                                         state: str) -> None:
    port, ca_file = served(days)
    found, detail, expiry = _tls_expiry.probe("127.0.0.1", port, "localhost", ca_file, timeout=5)
    assert (found, round(expiry.days_left) if expiry else None) == (state, days), detail
    assert detail.startswith(f"TLS localhost at 127.0.0.1:{port}: ")


RUNS = [(40, 0, "healthy", None), (10, 1, "warning", "warning"), (3, 2, "failing", "critical"),
        (40, 0, "healthy", "ok")]


def test_runner_exit_code_metrics_and_alerts(served: t.Callable[[float], tuple[int, str]], tmp_path: t.Any,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The timer's entry point (`lifeboat healthcheck`) with --nagios: one run per certificate, in this order."""
    hook = Hook()
    try:
        args = ["--config", str(tmp_path / "config.json"), "--state", str(tmp_path / "state.json"), "--nagios"]
        for days, exit_code, state, severity in RUNS:
            port, ca_file = served(days)
            config = {"host": "web1", "webhook_url": f"http://127.0.0.1:{hook.port}/alerts",
                      "metrics_file": str(tmp_path / "health.prom"), "timeout": 5,
                      "probes": [{"name": "site", "type": "tls", "host": "127.0.0.1", "port": port,
                                  "server_name": "localhost", "ca_file": ca_file}]}
            (tmp_path / "config.json").write_text(json.dumps(config))
            assert _cli.main(["healthcheck", *args]) == exit_code, capsys.readouterr().out
            metrics = (tmp_path / "health.prom").read_text()
            assert f'lifeboat_healthcheck_status{{probe="site",type="tls"}} {exit_code}\n' in metrics
            assert f'lifeboat_healthcheck_up{{probe="site",type="tls"}} {0 if exit_code == 2 else 1}\n' in metrics
            assert "lifeboat_healthcheck_tls_certificate_expiry_timestamp_seconds" in metrics
            promtool_check(metrics)
            if severity:
                alert = hook.received[-1]
                assert (alert["state"], alert["severity"]) == (state, severity)
            out = capsys.readouterr().out
            assert f"site: {state}: TLS localhost at 127.0.0.1:{port}: " in out
        assert [(a["state"], a["previous"]) for a in hook.received] == [
            ("warning", "healthy"), ("failing", "warning"), ("healthy", "failing")]
        assert hook.received[0]["text"].startswith("lifeboat: site on web1 has a warning: TLS localhost at ")
        assert "(< 21, warning)" in hook.received[0]["text"]
    finally:
        hook.stop()


def test_without_nagios_the_timer_exit_code_is_unchanged(served: t.Callable[[float], tuple[int, str]],
                                                         tmp_path: t.Any) -> None:
    """The timer's unit runs without --nagios: a warning or a failing probe is no failed run (alerts say it)."""
    args = ["--config", str(tmp_path / "config.json"), "--state", str(tmp_path / "state.json")]
    for days in (10, 3):
        port, ca_file = served(days)
        (tmp_path / "config.json").write_text(json.dumps({"probes": [
            {"name": "site", "type": "tls", "host": "127.0.0.1", "port": port, "server_name": "localhost",
             "ca_file": ca_file}]}))
        assert _cli.main(["healthcheck", *args]) == 0


def test_own_tiers_and_the_old_min_days(served: t.Callable[[float], tuple[int, str]], tmp_path: t.Any) -> None:
    port, ca_file = served(10)
    base = {"type": "tls", "host": "127.0.0.1", "port": port, "server_name": "localhost", "ca_file": ca_file}
    probes = [{"name": "relaxed", **base, "warn_days": 5, "critical_days": 2},
              {"name": "strict", **base, "warn_days": 60, "critical_days": 30},
              {"name": "old-name", **base, "min_days": 14}]  # min_days is critical_days: 10 < 14 is CRITICAL
    (tmp_path / "config.json").write_text(json.dumps({"probes": probes, "metrics_file": str(tmp_path / "m.prom")}))
    assert _cli.main(["healthcheck", "--config", str(tmp_path / "config.json"), "--state", str(tmp_path / "s.json"),
                      "--nagios"]) == 2
    metrics = (tmp_path / "m.prom").read_text()
    for name, status in (("relaxed", 0), ("strict", 2), ("old-name", 2)):
        assert f'lifeboat_healthcheck_status{{probe="{name}",type="tls"}} {status}\n' in metrics


@pytest.mark.parametrize(("settings", "message"), [
    ({"warn_days": 5}, "probe site: warn_days (5) must be at least critical_days (7): a certificate warns before it "
                       "is critical"),
    ({"warn_days": 10, "critical_days": 14}, "probe site: warn_days (10) must be at least critical_days (14): a "
                                             "certificate warns before it is critical"),
    ({"warn_days": 10, "min_days": 14}, "probe site: warn_days (10) must be at least critical_days (14): a "
                                        "certificate warns before it is critical"),
    ({"critical_days": 7, "min_days": 14}, "probe site: critical_days and min_days (its old name) are both set; "
                                           "keep critical_days"),
    ({"warn_days": "soon"}, "probe site: warn_days must be a number of days from 0 to 36500, not 'soon'"),
])
def test_bad_tiers_are_one_line(tmp_path: t.Any, capsys: pytest.CaptureFixture[str], settings: dict[str, t.Any],
                                message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"probes": [{"name": "site", "type": "tls", "host": "127.0.0.1", "port": 443,
                                           **settings}]}))
    assert _cli.main(["healthcheck", "--check-config", str(bad)]) == 2
    assert capsys.readouterr().err == f"<3>{message}\n"
    assert _cli.main(["healthcheck", "--config", str(bad), "--nagios", "--state", str(tmp_path / "s.json")]) == 3


def test_thresholds_defaults_and_the_old_name_alone() -> None:
    assert _tls_expiry.thresholds({}) == (21, 7)
    assert _tls_expiry.thresholds({"min_days": 14}) == (21, 14)
    assert _tls_expiry.thresholds({"min_days": 30}) == (30, 30)  # an old config stays valid
    assert _tls_expiry.thresholds({"warn_days": 7, "critical_days": 7}) == (7, 7)
