# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Records of restores that turned their target's connections off, kept beside the archive they restore.

A PostgreSQL merge restore makes its target refuse connections while it copies and swaps it. A SIGKILL (or a host
that stops) leaves the target refusing them, with its data intact but its app down, until something lets them in
again. The restore writes this record before it turns connections off and removes it once they are on again, so
that a record whose process is gone is a target that may still refuse connections: ``lifeboat status`` and the
``backup_status`` module report it (CRITICAL, naming the database), and the next restore into that target from this
directory lets connections in again even when the killed run left no side database behind.

Best effort, like the backup run records: a directory this process cannot write gets no record (the next restore
still repairs a target with a leftover side database, and says so).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import socket
import typing as t

from ._common import pid_alive, process_start
from ._files import write_file_atomic

RECORD_NAME = re.compile(r"^\.lifeboat-restore-[0-9a-f]{16}\.json$")


def record_path(directory: str, server: str, database: str) -> str:
    """One record per target (server and database): its name holds neither, so any database name fits."""
    digest = hashlib.sha256(f"{server}\0{database}".encode()).hexdigest()[:16]
    return os.path.join(directory, f".lifeboat-restore-{digest}.json")


def write(path: str, server: str, database: str, side: str, at: _dt.datetime) -> bool:
    """Say that this process turns the connections to ``database`` off; False when the record cannot be written."""
    pid = os.getpid()
    record = {"database": database, "server": server, "side": side, "pid": pid, "pid_start": process_start(pid),
              "host": socket.gethostname(), "at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    try:
        write_file_atomic(path, json.dumps(record).encode("utf-8"))
    except OSError:
        return False
    return True


def clear(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # never written (an unwritable directory), or already gone


def read(path: str) -> dict[str, t.Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("database"), str) or not isinstance(
            record.get("pid"), int):
        return None
    return record


def is_dead(record: dict[str, t.Any]) -> bool:
    """The process that wrote the record is gone (a reused PID is told apart by its start time). A record of another
    host cannot be judged from here: it counts as alive."""
    if record.get("host") not in (None, socket.gethostname()):
        return False
    pid = record["pid"]
    if not pid_alive(pid):
        return True
    recorded = record.get("pid_start")
    return recorded is not None and process_start(pid) not in (None, recorded)


def killed_restores(directory: str) -> list[tuple[str, dict[str, t.Any]]]:
    """The records in ``directory`` whose restore was killed while its target refused connections."""
    try:
        names = sorted(name for name in os.listdir(directory) if RECORD_NAME.match(name))
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(directory, name)
        record = read(path)
        if record is not None and is_dead(record):
            found.append((path, record))
    return found


def repair_hint(database: str) -> str:
    """The one statement that lets connections in again, as an operator would type it."""
    quoted = '"' + database.replace('"', '""') + '"'
    return f"ALTER DATABASE {quoted} WITH ALLOW_CONNECTIONS true"
