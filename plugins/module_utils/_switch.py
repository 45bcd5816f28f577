# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The blue-green switch of one app: an HAProxy between the site's nginx and the two colors, switched in place.

Why not an nginx reload: a reload makes the old workers close every idle keep-alive client connection, and a
client that sent its next request at that moment sees a read error (wrk counted 12-16 per reload). HAProxy's runtime
API changes which server takes new requests without closing any connection: the site's nginx keeps its connections
to the switch, clients keep theirs to nginx, and open WebSockets stay on the color they were opened on until that
color is drained and stopped (the app closes them then, with 1001). kamal-proxy does the same in-process; it cannot
be had here, HAProxy 2.6 is in Debian.

The layout, under STATE_DIR/APP/switch/: ``haproxy.cfg`` (both colors as servers, the live one enabled, so that a
restarted HAProxy comes back routing to the live color), ``haproxy.pid``, ``loaded`` (the PID and the configuration
shape it runs). In ``switch_socket_dir``: ``APP.sock``, the frontend nginx reaches the switch by (the site's upstream
file names it), and ``APP.admin.sock``, the runtime API (root only).

Every answer to a request that asks (header ``X-Lifeboat-Probe``) carries ``X-Lifeboat-Color``, the color that
answered: how a deploy proves through the front door where traffic goes before it stops anything.

Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import time
import typing as t
from dataclasses import dataclass

from ._common import LifeboatError, one_line
from ._files import write_file_atomic

COLORS = ("blue", "green")
BACKEND = "colors"
PROBE_HEADER = "X-Lifeboat-Probe"  # a probe that asks which color answered sends this header
COLOR_HEADER = "X-Lifeboat-Color"  # ... and gets this one back (only then: clients never see it)
# srv_admin_state bits of `show servers state` (HAProxy's SRV_ADMF_*): forced, inherited and resolution maintenance,
# forced and inherited drain. The configuration's own "disabled" (0x04) stays set after "state ready" and is ignored.
_MAINT_BITS = 0x01 | 0x02 | 0x20
_DRAIN_BITS = 0x08 | 0x10
_SERVER_LINE = re.compile(rf"^\d+ {BACKEND} \d+ (?P<name>\w+) \S+ (?P<op>\d+) (?P<admin>\d+) ")


@dataclass(frozen=True)
class Switch:
    """One app's switch: where its files live, the socket nginx reaches it by, and the colors' addresses."""

    app: str
    directory: str  # STATE_DIR/APP/switch
    socket_path: str  # the frontend nginx connects to
    servers: tuple[tuple[str, str], ...]  # (color, "address:port"), blue first
    binary: str = "haproxy"
    timeout: float = 10.0  # how long starting HAProxy or a runtime command may take
    # The niceness HAProxy is started at (None: this process's). A deploy lowers its own priority; the switch it
    # starts serves all the site's traffic long after it, so it must not run at the deploy's niceness.
    niceness: int | None = None

    @property
    def config_path(self) -> str:
        return os.path.join(self.directory, "haproxy.cfg")

    @property
    def admin_socket(self) -> str:  # beside the frontend: a unix socket's path must stay under 108 bytes
        return self.socket_path[:-len(".sock")] + ".admin.sock"

    @property
    def pid_file(self) -> str:
        return os.path.join(self.directory, "haproxy.pid")

    @property
    def upstream(self) -> str:
        """The site's upstream server, as nginx writes it."""
        return f"unix:{self.socket_path}"

    # ----------------------------------------------------------------------------------------------- the config
    def render(self, live: str | None) -> str:
        """The whole configuration; ``live`` names the color that takes requests after a restart (None: neither)."""
        lines = [f"# lifeboat.ops deploy switch of app {self.app}: managed by lifeboat.ops.app_deploy; edits are "
                 "replaced.",
                 "global",
                 f"    stats socket {self.admin_socket} mode 600 level admin",
                 "    stats timeout 30s",
                 "defaults",
                 "    mode http",
                 "    option redispatch",  # a connection the live color refuses is retried there, never elsewhere
                 "    retries 3",
                 "    timeout connect 5s",
                 # Longer than any front proxy keeps an idle connection to us (nginx: 60 s), so that nginx, not the
                 # switch, closes an idle one: a request nginx sends on a connection we just closed would fail.
                 "    timeout http-keep-alive 300s",
                 "    timeout client 300s",
                 "    timeout server 300s",
                 "    timeout tunnel 1h",  # WebSockets
                 "    timeout client-fin 10s",
                 "    timeout server-fin 10s",
                 f"frontend {self.app}",
                 f"    bind unix@{self.socket_path} mode 666",
                 f"    default_backend {BACKEND}",
                 f"backend {BACKEND}",
                 "    balance roundrobin",
                 f"    http-request set-var(txn.lifeboat_probe) req.hdr({PROBE_HEADER})",
                 f"    http-response set-header {COLOR_HEADER} %[srv_name] if {{ var(txn.lifeboat_probe) -m found }}"]
        for color, address in self.servers:
            lines.append(f"    server {color} {address}" + ("" if color == live else " disabled"))
        return "\n".join(lines) + "\n"

    def shape(self) -> str:
        """What a running HAProxy must have loaded to be this switch: the configuration whatever color is live."""
        return shape_of(self.render(None))

    def _write_config(self, live: str | None) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        os.makedirs(os.path.dirname(self.socket_path), mode=0o755, exist_ok=True)
        text = self.render(live)
        current = None
        try:
            with open(self.config_path, encoding="utf-8") as handle:
                current = handle.read()
        except FileNotFoundError:
            pass
        if current != text:
            write_file_atomic(self.config_path, text.encode(), 0o600)

    # ------------------------------------------------------------------------------------------------ the process
    def running_pid(self) -> int | None:
        """The PID of this switch's HAProxy when it runs (the pid file names a live haproxy process)."""
        try:
            with open(self.pid_file, encoding="ascii") as handle:
                pid = int(handle.read().split()[0])
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            return None
        return pid if command and os.path.basename(command[0].decode(errors="replace")).startswith("haproxy") else None

    def _loaded_shape(self) -> str | None:
        """The shape the running HAProxy loaded: as recorded when this library started it, or, for one started by
        its systemd unit at boot (lifeboat-switch@APP), the configuration file's if that was written before."""
        pid = self.running_pid()
        if pid is None:
            return None
        try:
            with open(os.path.join(self.directory, "loaded"), encoding="ascii") as handle:
                recorded, shape = handle.read().split()
            if int(recorded) == pid:
                return shape
        except (OSError, ValueError):
            pass
        started = process_started_at(pid)
        try:
            written = os.stat(self.config_path).st_mtime
            with open(self.config_path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError:
            return None
        return shape_of(text) if started is not None and started >= written else None

    def _run(self, *args: str, niceness: int | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([self.binary, *args], capture_output=True, text=True, check=False,
                                  timeout=self.timeout * 3, env={**os.environ, "LC_ALL": "C"},
                                  preexec_fn=None if niceness is None else lambda: _try_niceness(niceness))
        except OSError as exc:
            raise LifeboatError(f"cannot run {self.binary} (the deploy switch needs HAProxy; install the haproxy "
                                f"package): {exc.strerror or exc}") from None

    def ensure(self, live: str | None) -> dict[str, t.Any]:
        """The switch runs with this configuration, routing to ``live`` if it was just started.

        A running HAProxy that loaded the same shape is left alone (its routing is the runtime API's business:
        see route()); one with another shape is replaced by a soft reload (-sf: the old process finishes its
        connections); none is started. Returns what was done."""
        self._write_config(live)
        checked = self._run("-c", "-q", "-f", self.config_path)
        if checked.returncode != 0:
            text = (checked.stderr.strip() or checked.stdout.strip() or "no message").splitlines()
            raise LifeboatError(f"haproxy -c refused the switch's configuration {self.config_path}: "
                                f"{next((line for line in text if 'ALERT' in line), text[-1])}")
        pid = self.running_pid()
        if pid is not None and self._loaded_shape() == self.shape():
            return {"started": False, "pid": pid}
        args = ["-D", "-f", self.config_path, "-p", self.pid_file]
        if pid is not None:
            args += ["-sf", str(pid)]
        started = self._run(*args, niceness=self.niceness)
        if started.returncode != 0:
            text = (started.stderr.strip() or "no message").splitlines()
            raise LifeboatError(f"the switch (HAProxy) of {self.app} did not start: "
                                f"{next((line for line in text if 'ALERT' in line), text[-1])}")
        deadline = time.monotonic() + self.timeout
        while True:
            new = self.running_pid()
            if new is not None and new != pid and self._answers():
                break
            if time.monotonic() >= deadline:
                raise LifeboatError(f"the switch (HAProxy) of {self.app} did not answer on {self.admin_socket} "
                                    f"within {self.timeout:g} s")
            time.sleep(0.02)
        write_file_atomic(os.path.join(self.directory, "loaded"), f"{new} {self.shape()}\n".encode(), 0o600)
        return {"started": True, "pid": new, "replaced": pid, **self._niceness_of(new)}

    def _niceness_of(self, pid: int) -> dict[str, t.Any]:
        """The started HAProxy's niceness, and a note when it is not the one asked for (raising a priority back
        needs CAP_SYS_NICE: without it the switch runs at the deploy's niceness, which is said, not a failure)."""
        try:
            niceness = os.getpriority(os.PRIO_PROCESS, pid)
        except OSError:
            return {}
        if self.niceness is None or niceness == self.niceness:
            return {"niceness": niceness}
        return {"niceness": niceness,
                "note": f"HAProxy runs at nice {niceness}, not {self.niceness}: this process may not raise a "
                        "priority back (no CAP_SYS_NICE), so the switch shares the CPU with the deploy's work"}

    def _answers(self) -> bool:
        try:
            self.command("show info")
        except LifeboatError:
            return False
        return True

    def stop(self) -> None:
        """Stop this switch's HAProxy (tests, and an app that is removed)."""
        pid = self.running_pid()
        if pid is not None:
            os.kill(pid, 15)

    # ------------------------------------------------------------------------------------------- the runtime API
    def command(self, text: str) -> str:
        """One runtime API command; its answer (HAProxy answers errors in words: they raise)."""
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.admin_socket)
                sock.sendall(text.encode() + b"\n")
                chunks = []
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError as exc:
            raise LifeboatError(f"the switch (HAProxy) of {self.app} does not answer on {self.admin_socket}: "
                                f"{exc.strerror or exc}") from None
        answer = b"".join(chunks).decode("utf-8", "replace")
        if re.search(r"^(No such|Unknown command|Require|Permission denied|.*(invalid|expects))", answer,
                     re.MULTILINE | re.IGNORECASE):
            raise LifeboatError(f"the switch of {self.app} refused '{text}': {one_line(answer)}")
        return answer

    def states(self) -> dict[str, str]:
        """Each color's routing now: ``ready`` (takes new requests), ``drain`` (keeps its connections, takes no new
        request) or ``maint``."""
        found = {}
        for line in self.command(f"show servers state {BACKEND}").splitlines():
            match = _SERVER_LINE.match(line)
            if match:
                admin, op = int(match["admin"]), int(match["op"])
                found[match["name"]] = ("maint" if admin & _MAINT_BITS or op == 0 else
                                        "drain" if admin & _DRAIN_BITS else "ready")
        return found

    def serving(self) -> str | None:
        """The one color that takes new requests, or None (none or both)."""
        ready = [color for color, state in self.states().items() if state == "ready"]
        return ready[0] if len(ready) == 1 else None

    def route(self, color: str) -> dict[str, t.Any]:
        """New requests go to ``color`` only; the other color drains (its open connections go on). Idempotent.

        The new color is made ready before the old one drains, so that at no moment no server takes requests."""
        before = self.states()
        others = [other for other, _address in self.servers if other != color]
        self.command(f"set server {BACKEND}/{color} state ready")
        for other in others:
            if before.get(other) == "ready":
                self.command(f"set server {BACKEND}/{other} state drain")
        self._write_config(color)
        after = self.states()
        if after.get(color) != "ready" or any(after.get(other) == "ready" for other in others):
            raise LifeboatError(f"the switch of {self.app} did not take the change: {after}")
        return {"before": before, "after": after, "changed": before != after}

    def sessions(self, color: str) -> int:
        """Connections the color carries now (requests in flight and open WebSockets)."""
        for line in self.command("show stat").splitlines():
            fields = line.split(",")
            if len(fields) > 4 and fields[0] == BACKEND and fields[1] == color:
                return int(fields[4] or 0)
        raise LifeboatError(f"the switch of {self.app} has no server {color}")

    def drain(self, color: str, seconds: float) -> dict[str, t.Any]:
        """Wait up to ``seconds`` for the color's connections to end, then take it out (maint). What is still open
        then (long WebSockets) is the app's to close when it stops: a stopped app sends them 1001."""
        started = time.monotonic()
        left = self.sessions(color)
        while left and time.monotonic() - started < seconds:
            time.sleep(0.1)
            left = self.sessions(color)
        self.command(f"set server {BACKEND}/{color} state maint")
        return {"color": color, "seconds": round(time.monotonic() - started, 3), "open_after_drain": left}


def _try_niceness(niceness: int) -> None:
    """In the child before exec: take ``niceness`` if the OS allows it (ensure() reports what the process got)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except OSError:
        pass


def shape_of(text: str) -> str:
    """A configuration's shape: its text with the servers' ``disabled`` flags left out (which color is live is the
    runtime API's business, not a reason to replace the process)."""
    lines = [line.removesuffix(" disabled") for line in text.splitlines()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def process_started_at(pid: int) -> float | None:
    """When a process started, in seconds since the epoch (its start in clock ticks after boot, plus boot time)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            ticks = int(handle.read().rpartition(")")[2].split()[19])
        with open("/proc/stat", encoding="ascii") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def switch_of(app: str, state_dir: str, socket_dir: str, bind_address: str, ports: dict[str, int],
              binary: str = "haproxy", niceness: int | None = None) -> Switch:
    host = f"[{bind_address}]" if ":" in bind_address else bind_address
    return Switch(app=app, directory=os.path.join(state_dir, app, "switch"),
                  socket_path=os.path.join(socket_dir, f"{app}.sock"),
                  servers=tuple((color, f"{host}:{ports[color]}") for color in COLORS), binary=binary,
                  niceness=niceness)
