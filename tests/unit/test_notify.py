# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``lifeboat notify``, the backup_schedule role's notifier: the JSON alert reaches a loopback webhook, and a mailer
when there is one.

The molecule scenario runs it for real under systemd (OnFailure=); here systemctl and journalctl may be absent,
which the notifier must survive, and the mailer is a script that keeps what it is given. The poster's retries are
tests/unit/test_webhook.py's.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading

from ansible_collections.lifeboat.ops.plugins.module_utils import _cli
from ansible_collections.lifeboat.ops.plugins.module_utils import _notify as notify

REPO = os.path.join(os.path.dirname(__file__), "..", "..")


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
        assert _cli.main(["notify", "--config", str(config), "lifeboat-backup-journal.service"]) == 0
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
        assert _cli.main(["notify", "--config", str(config), "lifeboat-backup-journal.service"]) == 1
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(received) == 1  # a 4xx is not retried
    err = capsys.readouterr().err
    assert "<3>alert about lifeboat-backup-journal.service not delivered: webhook: HTTP 403" in err
    assert "no mail:" in err and "s3cret" not in err


def test_a_bad_webhook_url_is_one_line_without_its_token(tmp_path, monkeypatch, capsys):
    """Before the shared poster, a URL without its scheme made the notifier die with a traceback quoting it."""
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({"host": "db1", "webhook_url": "hooks.example.org/services/T0/B0/s3cretTOKEN"}))
    assert _cli.main(["notify", "--config", str(config), "lifeboat-backup-journal.service"]) == 1
    err = capsys.readouterr().err
    assert err == ("<3>alert about lifeboat-backup-journal.service not delivered: webhook: the webhook URL is no "
                   "http:// or https:// URL\n")


def test_the_lifeboat_command_runs_it_with_the_units_arguments(tmp_path):
    """What lifeboat-notify@.service runs: bin/lifeboat notify --config FILE UNIT."""
    httpd, received = receiver()
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({"host": "db1", "webhook_url": f"http://127.0.0.1:{httpd.server_address[1]}/hook"}))
    try:
        done = subprocess.run([sys.executable, os.path.join(REPO, "bin", "lifeboat"), "notify", "--config",
                               str(config), "lifeboat-backup-journal.service"], capture_output=True, text=True,
                              check=False, env={**os.environ, "LIFEBOAT_LIB": str(tmp_path / "no-library")})
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr.startswith("<6>alert sent: lifeboat: backup job journal failed on db1: ")
    assert [(alert["host"], alert["unit"]) for _type, alert in received] == [("db1", "lifeboat-backup-journal.service")]
    missing = tmp_path / "missing.json"
    done = subprocess.run([sys.executable, os.path.join(REPO, "bin", "lifeboat"), "notify", "--config", str(missing),
                           "lifeboat-backup-journal.service"], capture_output=True, text=True, check=False,
                          env={**os.environ, "LIFEBOAT_LIB": str(tmp_path / "no-library")})
    assert done.returncode == 1
    assert done.stderr == f"<3>cannot read {missing}: [Errno 2] No such file or directory: '{missing}'\n"
    usage = subprocess.run([sys.executable, os.path.join(REPO, "bin", "lifeboat"), "notify", "some.service"],
                           capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "the following arguments are required: --config" in usage.stderr


def test_the_unit_runs_lifeboat_notify_and_the_role_ships_no_script():
    with open(os.path.join(REPO, "roles", "backup_schedule", "templates", "lifeboat-notify@.service.j2"),
              encoding="utf-8") as handle:
        unit = handle.read()
    assert "ExecStart={{ __host_program_bin }} notify --config {{ __backup_schedule_notify_config }} %i" in unit
    assert not os.path.exists(os.path.join(REPO, "roles", "backup_schedule", "files", "notify.py"))
