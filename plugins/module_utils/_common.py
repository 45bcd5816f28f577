# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pieces every engine shares: the error type, binary lookup and private files for secrets.

Plain Python on purpose: the modules, the host-side command and the tests all import it without Ansible.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import typing as t

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


# Every secret this process was given, in every spelling it may take (a tool may echo a connection string).
_SECRETS: set[str] = set()
REDACTED = "********"


def register_secret(*spellings: str | None) -> None:
    """Remember a password (and its encoded forms) so that no message of ours can repeat it.

    Values under four characters are not masked: blotting out every "p" would make messages unreadable.
    """
    _SECRETS.update(value for value in spellings if value and len(value) >= 4)


def registered_secrets() -> set[str]:
    return set(_SECRETS)


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class LifeboatError(Exception):
    """An error a person can act on: its message is one line that says what to fix, and no secret."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(" ".join(message.split())))


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
            except Exception as exc:  # noqa: BLE001 - only what describe() knows is translated
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


def find_binary(name: str, extra_dirs: t.Iterable[str] = ()) -> str:
    """Return the path of ``name``, looking in ``extra_dirs`` first, then in PATH."""
    for directory in extra_dirs:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if not found:
        raise LifeboatError(f"{name} was not found in PATH; install it on this host (or point the module at it)")
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


class PrivateDir:
    """A 0700 temporary directory for 0600 secret files, removed on exit whatever happens."""

    def __init__(self, parent: str | None = None) -> None:
        self.path = tempfile.mkdtemp(prefix=".lifeboat-", dir=parent)
        os.chmod(self.path, 0o700)

    def write_secret(self, name: str, content: str) -> str:
        path = os.path.join(self.path, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        return path

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

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
