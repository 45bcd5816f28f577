# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""``lifeboat notify``: alert about a failed lifeboat unit, by webhook (JSON) and by mail when the host has a mailer.

Started by systemd as ``lifeboat-notify@UNIT.service`` (``OnFailure=`` of each backup job's service):

    lifeboat notify --config /etc/lifeboat/notify.json lifeboat-backup-journal.service

The config is JSON: ``{"host": "db1", "webhook_url": "https://...", "mail_to": ["ops@example.org"]}``. The message
names the host, the job and the unit, with the error lines the failed run wrote to the journal. The webhook
poster and its retry policy are ``_webhook``'s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

from . import _webhook

SENDMAIL = "/usr/sbin/sendmail"
UNIT_PREFIX = "lifeboat-backup-"


def command_output(argv: list[str]) -> str:
    """What a command printed, or nothing when it is missing or failed (a host without journal still alerts)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def unit_facts(unit: str) -> dict[str, str]:
    text = command_output(["systemctl", "show", "--property=InvocationID,Result,ExecMainStatus,Description", unit])
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def error_lines(unit: str, invocation: str, limit: int = 5) -> list[str]:
    """The error lines of the unit's last run (priority err and worse), oldest first."""
    match = [f"_SYSTEMD_INVOCATION_ID={invocation}"] if invocation else [f"--unit={unit}", "--since=-1d"]
    text = command_output(["journalctl", "--no-pager", "--output=cat", "--priority=err", f"--lines={limit}", *match])
    return [line for line in text.splitlines() if line.strip()]


def build_alert(host: str, unit: str, facts: dict[str, str], lines: list[str]) -> dict[str, object]:
    name = unit[:-len(".service")] if unit.endswith(".service") else unit
    job = name[len(UNIT_PREFIX):] if name.startswith(UNIT_PREFIX) else None
    message = lines[-1] if lines else f"{unit} failed ({facts.get('Result') or 'no result recorded'})"
    subject = f"lifeboat: backup job {job} failed on {host}" if job else f"lifeboat: {unit} failed on {host}"
    return {
        "source": "lifeboat",
        "host": host,
        "job": job,
        "unit": unit,
        "state": "failed",
        "result": facts.get("Result") or None,
        "exit_status": facts.get("ExecMainStatus") or None,
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "message": message,
        "errors": lines,
        "subject": subject,
        "text": f"{subject}: {message}",  # what Slack, Mattermost and similar webhooks show
    }


def post(url: str, alert: dict[str, object]) -> str | None:
    """POST the alert as JSON; None when delivered, else why not (never the URL: it may hold a token)."""
    return _webhook.post_json(url, alert, user_agent="lifeboat-notify")


def mail(addresses: list[str], alert: dict[str, object]) -> str | None:
    if not os.access(SENDMAIL, os.X_OK):
        return f"no mail: {SENDMAIL} is missing"
    text = (f"To: {', '.join(addresses)}\nSubject: {alert['subject']}\n"
            "Content-Type: text/plain; charset=utf-8\n\n" + json.dumps(alert, indent=2) + "\n")
    try:
        done = subprocess.run([SENDMAIL, "-t", "-oi"], input=text, text=True, capture_output=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sendmail failed: {exc}"
    return None if done.returncode == 0 else f"sendmail exited {done.returncode}: {done.stderr.strip()[:200]}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="JSON file with host, webhook_url and mail_to")
    parser.add_argument("unit", help="the unit that failed (systemd's %%i)")


def run(config_path: str, unit: str) -> int:
    """Alert about ``unit``; 0 when every configured channel took the alert, else 1 (each failure on stderr)."""
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"<3>cannot read {config_path}: {exc}\n")
        return 1
    facts = unit_facts(unit)
    alert = build_alert(config.get("host") or os.uname().nodename, unit, facts,
                        error_lines(unit, facts.get("InvocationID", "")))
    problems = []
    if config.get("webhook_url"):
        problem = post(config["webhook_url"], alert)
        if problem:
            problems.append(f"webhook: {problem}")
    if config.get("mail_to"):
        problem = mail(list(config["mail_to"]), alert)
        if problem:
            problems.append(problem)
    for problem in problems:
        sys.stderr.write(f"<3>alert about {unit} not delivered: {problem}\n")
    if not problems:
        sys.stderr.write(f"<6>alert sent: {alert['text']}\n")
    return 1 if problems else 0
