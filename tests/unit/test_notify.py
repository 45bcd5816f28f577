# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup_schedule role's notifier: the JSON alert reaches a loopback webhook, and a mailer when there is one.

The molecule scenario runs it for real under systemd (OnFailure=); here systemctl and journalctl may be absent,
which the notifier must survive, and the mailer is a script that keeps what it is given.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import threading

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "backup_schedule", "files", "notify.py")
_spec = importlib.util.spec_from_file_location("lifeboat_notify", SCRIPT)
assert _spec is not None and _spec.loader is not None  # the file exists: a module spec with a loader
notify = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notify)


def receiver(status: int = 204):
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server calls
            received.append((self.headers["Content-Type"], json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, received


def test_alert_names_host_job_and_error():
    alert = notify.build_alert("db1", "lifeboat-backup-journal.service", {"Result": "exit-code", "ExecMainStatus": "1"},
                               ["journal: dumping", "backup failed: password authentication failed"])
    assert (alert["host"], alert["job"], alert["state"], alert["result"]) == ("db1", "journal", "failed", "exit-code")
    assert alert["message"] == "backup failed: password authentication failed"
    assert alert["text"] == "lifeboat: backup job journal failed on db1: backup failed: password authentication failed"
    other = notify.build_alert("db1", "lifeboat-status.service", {}, [])
    assert other["job"] is None and other["message"] == "lifeboat-status.service failed (no result recorded)"


def test_main_posts_one_json_alert_and_mails_it(tmp_path, monkeypatch, capsys):
    httpd, received = receiver()
    mailbox = tmp_path / "mail.txt"
    sendmail = tmp_path / "sendmail"
    sendmail.write_text(f"#!/bin/sh\necho \"$@\" >{mailbox}.args\ncat >{mailbox}\n")
    sendmail.chmod(0o755)
    monkeypatch.setattr(notify, "SENDMAIL", str(sendmail))
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({"host": "db1", "webhook_url": f"http://127.0.0.1:{httpd.server_address[1]}/hook",
                                  "mail_to": ["ops@example.org"]}))
    try:
        assert notify.main(["--config", str(config), "lifeboat-backup-journal.service"]) == 0
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(received) == 1
    content_type, alert = received[0]
    assert content_type == "application/json"
    assert (alert["host"], alert["job"], alert["unit"]) == ("db1", "journal", "lifeboat-backup-journal.service")
    mail = mailbox.read_text()
    assert mail.startswith("To: ops@example.org\nSubject: lifeboat: backup job journal failed on db1\n")
    assert json.loads(mail.split("\n\n", 1)[1]) == alert
    assert (tmp_path / "mail.txt.args").read_text() == "-t -oi\n"
    assert "<6>alert sent: lifeboat: backup job journal failed on db1" in capsys.readouterr().err


def test_undelivered_alert_fails_without_showing_the_url(tmp_path, monkeypatch, capsys):
    httpd, received = receiver(status=403)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/hook?token=s3cret"
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({"host": "db1", "webhook_url": url, "mail_to": ["ops@example.org"]}))
    monkeypatch.setattr(notify, "SENDMAIL", str(tmp_path / "no-sendmail"))
    try:
        assert notify.main(["--config", str(config), "lifeboat-backup-journal.service"]) == 1
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(received) == 1  # a 4xx is not retried
    err = capsys.readouterr().err
    assert "<3>alert about lifeboat-backup-journal.service not delivered: webhook: HTTP 403" in err
    assert "no mail:" in err and "s3cret" not in err


def test_a_refusing_server_is_tried_again_with_growing_pauses(monkeypatch):
    httpd, received = receiver(status=503)
    pauses = []
    monkeypatch.setattr(notify.time, "sleep", pauses.append)
    try:
        problem = notify.post(f"http://127.0.0.1:{httpd.server_address[1]}/hook", {"text": "x"}, attempts=3)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert problem == "HTTP 503"
    assert [alert for _path, alert in received] == [{"text": "x"}] * 3
    assert pauses == [1, 2]  # no pause after the last try
