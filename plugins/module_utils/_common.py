# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Pieces every engine shares: the error type, binary lookup and private files for secrets.

Plain Python on purpose: the modules, the host-side command and the tests all import it without Ansible.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import typing as t
import urllib.parse

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


# Every secret this process was given, in every spelling it may take (a tool may echo a connection string).
_SECRETS: set[str] = set()
REDACTED = "********"


def register_secret(*values: str | None) -> None:
    """Remember a password so that no message of ours can repeat it, in any spelling a tool may echo it in.

    Values under four characters are not masked: blotting out every "p" would make messages unreadable.
    """
    _SECRETS.update(spelling for value in values if value for spelling in secret_spellings(value))


def secret_spellings(value: str) -> set[str]:
    """A secret as itself and as it appears inside a connection URL (percent- or plus-encoded) or a quoted
    JSON or YAML string (backslash-escaped): every form a tool's message may repeat, none under four characters."""
    spellings = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote(value), urllib.parse.quote_plus(value),
                 json.dumps(value)[1:-1]}
    return {spelling for spelling in spellings if len(spelling) >= 4}


def registered_secrets() -> set[str]:
    return set(_SECRETS)


def redact(text: str, secrets: t.Iterable[str | None] = ()) -> str:
    """``text`` with every registered secret, and every one of ``secrets``, in each of its spellings masked."""
    every = set(_SECRETS).union(*(secret_spellings(value) for value in secrets if value))
    for secret in sorted(every, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def one_line(problem: BaseException | str, secrets: t.Iterable[str | None] = ()) -> str:
    """The first line of an error (or of a tool's text) that says something, whitespace collapsed and without any
    secret: the registered ones and ``secrets``. The whole text is redacted before it is cut, so a secret that spans
    lines cannot leave a piece behind. A Docker error's ``explanation`` (the engine's own words) is preferred to its
    wrapper's; an exception without a message is named by its type."""
    text = str(getattr(problem, "explanation", None) or problem) if isinstance(problem, BaseException) else problem
    for line in redact(text, secrets).splitlines():
        if line.strip():
            return " ".join(line.split())
    return type(problem).__name__ if isinstance(problem, BaseException) else ""


class LifeboatError(Exception):
    """An error a person can act on: its message is one line that says what to fix, and no secret."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(" ".join(message.split())))


class CannotConnect(LifeboatError):
    """A database server could not be reached or refused the login; ``reason`` is why, without the "cannot connect
    to X at Y" that the message puts in front (a probe names the server its own way)."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"cannot connect to {server}: {reason}")
        self.reason = redact(reason)


class TargetHoldsData(LifeboatError):
    """A restore refused because its target already holds data: ``holding`` says what, ``overwrite_does`` what
    overwrite would do; a caller whose own option replaces the target words the fix its own way."""

    def __init__(self, holding: str, overwrite_does: str, replace_hint: str) -> None:
        super().__init__(f"{holding}; set overwrite=true to {overwrite_does} ({replace_hint})")
        self.holding = holding
        self.overwrite_does = overwrite_does


E = t.TypeVar("E", bound=BaseException)


def find_cause(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of ``kind`` in ``exc``'s chain (itself, then what it was raised from or while handling, as a
    traceback shows them): a typed failure keeps its meaning under the messages that wrap it on the way up."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return None


def friendly_errors(describe: t.Callable[[Exception], str | None]) -> t.Callable[[F], F]:
    """Decorate a library entry point so that driver and OS errors leave it as one-line LifeboatErrors.

    ``describe`` turns the exceptions it knows (a database driver's) into a message, or returns None.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
            try:
                return func(*args, **kwargs)
            except LifeboatError:
                raise
            except OSError as exc:
                where = f" ({exc.filename})" if exc.filename else ""
                raise LifeboatError(f"{exc.strerror or exc}{where}") from exc
            except Exception as exc:  # only what describe() knows is translated
                message = describe(exc)
                if message is None:
                    raise
                raise LifeboatError(message) from exc

        return t.cast(F, wrapper)

    return decorate


def on_termination(stop: t.Callable[[str], None]) -> None:
    """Call ``stop(signal name)`` on SIGTERM and SIGHUP (a task timeout, a lost ssh session).

    Without a handler the process dies on the spot and leaves temporary archives and private files
    behind; ``stop`` makes the work end through the same cleanup as any failure.
    """
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda number, _frame: stop(signal.Signals(number).name))


# What to install when a program is missing (Debian and Ubuntu package names), and the option that points to
# another place where there is one.
_INSTALL_HINTS = {
    "age": "install the age package (apt install age)",
    "zstd": "install the zstd package (apt install zstd)",
    "gzip": "install the gzip package (apt install gzip)",
    "tar": "install the tar package (apt install tar)",
    "dd": "install coreutils (apt install coreutils)",
    "ssh-keygen": "install the OpenSSH client, which signs and checks manifests (apt install openssh-client)",
    "mongodump": "install the MongoDB Database Tools (mongodb-database-tools) or set tools_dir to their directory",
    "mongorestore": "install the MongoDB Database Tools (mongodb-database-tools) or set tools_dir to their directory",
}


def find_binary(name: str, extra_dirs: t.Iterable[str] = ()) -> str:
    """Return the path of ``name``, looking in ``extra_dirs`` first, then in PATH."""
    searched = [directory for directory in extra_dirs if directory]
    for directory in searched:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if not found:
        where = f"{', '.join(searched)} or PATH" if searched else "PATH"
        hint = _INSTALL_HINTS.get(name, f"install {name} on this host")
        raise LifeboatError(f"{name} was not found in {where}; {hint}")
    return found


def tool_version(binary: str) -> str:
    """First line of ``binary --version`` (mongo tools print several lines)."""
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, env=child_env(), check=False
        )
    except OSError as exc:
        raise LifeboatError(f"cannot run {binary}: {exc.strerror}") from exc
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for child tools: the parent's minus secrets it may carry, C locale for parsable output."""
    env = {k: v for k, v in os.environ.items() if k not in {"PGPASSWORD", "PGPASSFILE", "AGE_PASSPHRASE"}}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    if extra:
        env.update(extra)
    return env


def pid_alive(pid: int | None) -> bool:
    """Whether a process of this PID runs on this host (unknown: assume it does, somebody may be writing)."""
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except OverflowError:
        return False  # more than any PID can be
    except OSError as exc:
        return exc.errno != errno.ESRCH  # EPERM: alive, owned by someone else
    return True


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), to tell a reused PID apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            # The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
            return handle.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def lock_owner_alive(path: str) -> bool | None:
    """Whether a writer still holds the flock on ``path`` (True), none does (False), or it cannot be told (None).

    Writers hold the lock as long as they live, and the kernel drops it when they die however they die, in
    whatever PID namespace they ran: a lock says more than a PID where containers share a directory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)
    return False


def hold_lock(fd: int) -> None:
    """Mark ``fd``'s file as in use for as long as this process keeps it open (see lock_owner_alive).

    Blocking: a sweeper testing the file holds its lock for an instant, and a writer that gave up then would go
    unlocked, hence unseen from another PID namespace, for the whole run.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:
        pass  # a filesystem without locks: the PID in the name still protects the file on this host


# PrivateDir names: .lifeboat-PID-RANDOM (older releases wrote .lifeboat-RANDOM, without the PID).
PRIVATE_DIR_NAME = re.compile(r"^\.lifeboat-(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+$")
# What is left of a writer that nothing tells alive or gone is removed only after this long without a change.
LEFTOVER_GRACE_SECONDS = 3600


def writer_alive(path: str, pid: int | None) -> bool | None:
    """Whether the writer of a private file or directory still runs: its PID lives on this host or it holds the
    lock (True), its PID is dead and the lock free (False), or nothing tells (None: no PID in the name, or a lock
    that cannot be tested, such as another user's file)."""
    if pid is not None and pid_alive(pid):
        return True
    held = lock_owner_alive(path)
    if held:
        return True
    return False if held is False and pid is not None else None


def leftover_removable(path: str, alive: bool | None) -> bool:
    """Whether a leftover may go, its writer being ``alive`` (writer_alive): once that writer is gone, or, when
    nothing tells, once it has not changed for an hour. Never while its writer may still be running."""
    if alive is not None:
        return not alive
    try:
        return time.time() - os.lstat(path).st_mtime >= LEFTOVER_GRACE_SECONDS
    except OSError:
        return False


def stale_private_dirs(parent: str) -> list[str]:
    """The private directories in ``parent`` whose owner is gone (see leftover_removable)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    stale = []
    for name in sorted(names):
        match = PRIVATE_DIR_NAME.match(name)
        path = os.path.join(parent, name)
        if match and os.path.isdir(path) and not os.path.islink(path):
            pid = int(match["pid"]) if match["pid"] else None
            if leftover_removable(path, writer_alive(path, pid)):
                stale.append(path)
    return stale


def sweep_private_dirs(parent: str) -> list[str]:
    """Remove the private directories in ``parent`` left by processes that are gone (a SIGKILL runs no cleanup)."""
    removed = []
    for path in stale_private_dirs(parent):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            removed.append(path)
    return removed


# Anonymous files holding secrets for child tools, by descriptor: a child whose argv names /dev/fd/N inherits N.
_SECRET_FDS: set[int] = set()


_FD_PATH = re.compile(r"/dev/fd/(\d+)(?!\d)")


def secret_fds_for(argv: t.Sequence[str]) -> tuple[int, ...]:
    """The secret descriptors ``argv`` names (as /dev/fd/N): the only ones its process inherits."""
    named = {int(number) for arg in argv for number in _FD_PATH.findall(arg)}
    return tuple(sorted(named & _SECRET_FDS))


class PrivateDir:
    """Private files for one piece of work: secrets in anonymous memory files, data in a 0700 temporary directory.

    The directory is removed on exit whatever happens; a SIGKILL runs no cleanup, so the directory carries its
    owner's PID and lock, and the next PrivateDir made in the same place removes it once that owner is gone.
    """

    def __init__(self, parent: str | None = None) -> None:
        sweep_private_dirs(parent or tempfile.gettempdir())
        self.path = tempfile.mkdtemp(prefix=f".lifeboat-{os.getpid()}-", dir=parent)
        os.chmod(self.path, 0o700)
        self._lock_fd = os.open(self.path, os.O_RDONLY)
        hold_lock(self._lock_fd)
        self._secret_fds: list[int] = []

    def write_secret(self, name: str, content: str) -> str:
        """A 0600 file in the directory, for tools that read a secret only from a named file."""
        path = os.path.join(self.path, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        return path

    def secret_file(self, name: str, content: str) -> str:
        """A path a child tool can read ``content`` from (/dev/fd/N): an anonymous file in memory, on no disk,
        gone with the last process holding it. Only a child run with that path in its argv inherits it.

        Without memfd (not Linux), a 0600 file in the directory, which the next start sweeps after a SIGKILL.
        """
        if not hasattr(os, "memfd_create") or not os.path.isdir("/dev/fd"):
            return self.write_secret(name, content)
        fd = os.memfd_create(f"lifeboat-{name}", os.MFD_CLOEXEC)
        try:
            data = memoryview(content.encode("utf-8"))
            while data:
                data = data[os.write(fd, data):]
        except BaseException:
            os.close(fd)
            raise
        self._secret_fds.append(fd)
        _SECRET_FDS.add(fd)
        return f"/dev/fd/{fd}"

    def cleanup(self) -> None:
        for fd in self._secret_fds:
            _SECRET_FDS.discard(fd)
            os.close(fd)
        self._secret_fds = []
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> PrivateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def read_secret_file(path: str, what: str) -> str:
    """Read a password file (first line, trailing newline removed), refusing group/world readable ones."""
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as handle:
            value = handle.readline().rstrip("\r\n")
    except OSError as exc:
        raise LifeboatError(f"cannot read {what} file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise LifeboatError(f"{what} file {path} is readable by others; chmod 600 it")
    if not value:
        raise LifeboatError(f"{what} file {path} is empty")
    return value


_TOOL_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+[+-]\d{4}\s+")
_FAILURE_WORDS = re.compile(r"\b(Failed|FATAL|ERROR|error|fatal)\b")


def first_few(items: t.Sequence[str], limit: int = 5, separator: str = "; ") -> str:
    """The first ``limit`` items joined, and how many more there are: messages stay one readable line."""
    more = f"{separator}and {len(items) - limit} more" if len(items) > limit else ""
    return separator.join(items[:limit]) + more


def last_line(text: str) -> str:
    """The line of a tool's stderr that says what went wrong: the last one naming a failure, else the last one."""
    lines = [_TOOL_TIMESTAMP.sub("", line).strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if _FAILURE_WORDS.search(line):
            return line
    return lines[-1] if lines else ""
