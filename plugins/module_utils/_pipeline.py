# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The streaming archive pipeline.

Writing: producer stdout -> (sha256 of the plain stream) -> compressor -> age -> (sha256 of the stored
bytes) -> a hidden temporary file, fsynced, and linked to its final name only by ``commit`` once every
stage exited cleanly. Reading is the mirror image, ending in a consumer's stdin (pg_restore, mongorestore)
or nowhere (verification).

Compression and encryption are the standard ``zstd``/``gzip``/``age`` programs, so an archive restores
with those tools alone, and they run on all cores outside the GIL. Python only pumps bytes between pipes
and hashes them (hashlib releases the GIL), with fixed buffers: memory stays flat whatever the size. When
writing, the compressor gets the plain stream through tee(2) (no copy by this process) and the last filter
writes the file itself, which is hashed as it grows: neither waits on this process's threads.
"""

from __future__ import annotations

import collections
import fcntl
import functools
import hashlib
import os
import re
import signal
import subprocess
import termios
import threading
import typing as t

from . import _termination
from ._codecs import (
    DECOMPRESS,
    Decryption,
    Encryption,
    Filter,
    StreamResult,
    compressor_argv,
    decompressor_argv,
    decryptor,
    encryptor,
    tester_argv,
)
from ._common import (
    LifeboatError,
    child_env,
    last_line,
    redact,
    secret_fds_for,
)
from ._files import write_all
from ._pipes import as_pipe, follow_file, grow_pipe, pump, pump_teed

# The variable that tells a producer which descriptor to report its output's "SHA256 BYTES" on (our exec helper,
# _docker_exec.PLAIN_DIGEST_FD: a module of its own that imports only _docker_engine).
PLAIN_DIGEST_FD = "LIFEBOAT_PLAIN_DIGEST_FD"
NO_ENCRYPTION, NO_DECRYPTION = Encryption(), Decryption()  # frozen: safe as defaults
# The last line of the exec helper (_docker_exec.killed_line) when the client in the container was killed by a signal.
KILLED_IN_CONTAINER = re.compile(r"^\S+ in container \S+ was killed \(signal \d+\)$")


class StageFailed(LifeboatError):
    """A process of a stream failed, could not start or stopped reading; ``stage`` is its name in the stream
    (``decrypt``, ``decompress`` or the name the caller gave its producer, consumer or tee): callers tell a damaged
    archive from a failed reader by it, never by the message. ``signal``: the number of the signal that killed it."""

    def __init__(self, stage: str, message: str, signal: int | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.signal = signal


class _Stage:
    """A child process of a stream; its stderr is drained by a thread that keeps the tail."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        stdin: t.Any,
        stdout: t.Any,
        env: dict[str, str] | None = None,
        on_stderr_line: t.Callable[[str], None] | None = None,
        tty_input: bytes | None = None,
        ok_codes: t.Collection[int] = (0,),
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.name = name
        self.ok_codes = ok_codes
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=60)
        self.killed = False
        self._on_line = on_stderr_line
        self._tty_input = tty_input
        self._tty_master = -1
        self._reader: threading.Thread | None = None
        # Secrets the tool reads from /dev/fd/N (PrivateDir.secret_file) reach this child only.
        extra: dict[str, t.Any] = {"pass_fds": (*secret_fds_for(argv), *pass_fds)}
        tty = -1
        if tty_input is not None:
            self._tty_master, tty = os.openpty()
            extra = {"start_new_session": True, "pass_fds": (tty, *extra["pass_fds"]),
                     "preexec_fn": lambda: _take_terminal(tty)}
        try:
            self.proc = subprocess.Popen(
                argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env or child_env(), close_fds=True,
                **extra,
            )
        except OSError as exc:
            self._close_tty()
            raise StageFailed(name, f"cannot start {name} ({argv[0]}): {exc.strerror}") from exc
        finally:
            if tty >= 0:
                os.close(tty)

    def begin(self) -> None:
        """Start feeding and draining; called once every stage of a run exists (preexec_fn and threads don't mix)."""
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:  # a closed one was handed to the next stage
                grow_pipe(pipe.fileno())
        if self._tty_input is not None:
            os.write(self._tty_master, self._tty_input)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for raw in t.cast(t.IO[bytes], self.proc.stderr):
            line = redact(raw.decode("utf-8", "replace").rstrip("\n"))
            self.stderr_tail.append(line)
            if self._on_line:
                try:
                    self._on_line(line)
                except Exception:  # noqa: BLE001 - a parsing callback must never break the stream
                    pass

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.killed = True
            self.proc.kill()

    def wait(self) -> int:
        code = self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        self._close_tty()  # only now: closing the pty earlier would hang up the child
        return code

    def _close_tty(self) -> None:
        if self._tty_master >= 0:
            os.close(self._tty_master)
            self._tty_master = -1

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_tail)

    @property
    def killed_by(self) -> int | None:
        """The signal that killed this process (not SIGPIPE: that one only says its reader went away)."""
        code = self.proc.returncode
        return -code if code is not None and code < 0 and code != -signal.SIGPIPE else None

    def outcome(self) -> tuple[str, str]:
        """``ok``, ``killed`` (by us, after another failure), ``pipe`` (its reader went away) or ``failed``."""
        code = self.proc.returncode
        if code in self.ok_codes:
            return "ok", ""
        if self.killed and code == -signal.SIGKILL:
            return "killed", f"{self.name} was stopped"
        if code < 0 and code != -signal.SIGPIPE:  # a signal says more than the tool's last progress line
            return "failed", f"{self.name} failed: killed by signal {-code}"
        tail = self.stderr_tail[-1] if self.stderr_tail else ""
        if code > 128 and KILLED_IN_CONTAINER.search(tail):  # the exec helper's word for a client killed in there
            return "failed", tail
        reason = f"{self.name} failed: {last_line(self.stderr) or f'exit code {code}'}"
        if code in (-signal.SIGPIPE, 128 + signal.SIGPIPE) or "broken pipe" in self.stderr.lower():
            return "pipe", reason
        return "failed", reason


def run_tool(
    name: str,
    argv: list[str],
    env: dict[str, str] | None = None,
    on_stderr_line: t.Callable[[str], None] | None = None,
    on_stdout: t.Callable[[bytes], None] | None = None,
) -> None:
    """Run a tool to its end (pg_dump -Fd, pg_restore -j): one-line error from its stderr, killed if we are."""
    with _Runner(name) as runner:
        stage = runner.start(name, argv, subprocess.DEVNULL, subprocess.PIPE if on_stdout else subprocess.DEVNULL,
                             env, on_stderr_line)
        runner.begin()
        if on_stdout is not None:
            runner.thread(functools.partial(pump, as_pipe(stage.proc.stdout).fileno(), on_stdout))
        runner.finish()


def _take_terminal(tty: int) -> None:
    """In the child, before exec: make the pty its controlling terminal, where age asks for the passphrase."""
    fcntl.ioctl(tty, termios.TIOCSCTTY, 0)


class _Runner:
    """Owns the stages and threads of one run; any failure stops every stage before one cause is reported."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.stages: list[_Stage] = []
        self.python_error: BaseException | None = None
        self.reader_quit: str | None = None
        self.workers: list[threading.Thread] = []

    def __enter__(self) -> _Runner:
        _termination.ABORTABLE.add(self)
        return self

    def __exit__(self, exc_type: t.Any, *exc: object) -> None:
        if exc_type is not None:
            self.cleanup()
        _termination.ABORTABLE.discard(self)

    def start(self, *args: t.Any, **kwargs: t.Any) -> _Stage:
        stage = _Stage(*args, **kwargs)
        self.stages.append(stage)
        return stage

    def chain(self, filters: t.Sequence[Filter], first_stdin: t.Any, last_stdout: t.Any = subprocess.PIPE
              ) -> tuple[t.Any, t.Any]:
        """Start filters piped one into the next; returns (stdin of the first, stdout of the last)."""
        head, previous = None, first_stdin
        for index, item in enumerate(filters):
            stdout = last_stdout if index == len(filters) - 1 else subprocess.PIPE
            stage = self.start(item.name, item.argv, previous, stdout, tty_input=item.tty_input)
            if head is None:
                head = stage.proc.stdin
            else:
                grow_pipe(previous.fileno())
                previous.close()  # the next filter owns it now
            previous = stage.proc.stdout
        return head, (previous if filters and last_stdout == subprocess.PIPE else None)

    def begin(self) -> None:
        for stage in self.stages:
            stage.begin()

    def abort(self) -> None:
        for stage in self.stages:
            stage.kill()

    def _let_exit(self, name: str, seconds: float = 2) -> None:
        """A reader that closed its input is usually exiting: its own exit status (a signal from elsewhere, say)
        must be what is reported, not our kill that would otherwise land first."""
        for stage in self.stages:
            if stage.name == name:
                try:
                    stage.proc.wait(timeout=seconds)
                except subprocess.TimeoutExpired:
                    pass

    def thread(self, target: t.Callable[[], None], reader: str = "") -> None:
        def guarded() -> None:
            try:
                target()
            except BrokenPipeError:
                # Whoever reads from this pump went away; stop the rest so nothing blocks on a full pipe.
                self.reader_quit = self.reader_quit or reader
                self._let_exit(reader)
                self.abort()
            except BaseException as exc:  # noqa: BLE001 - re-raised by finish()
                self.python_error = self.python_error or exc
                self.abort()

        worker = threading.Thread(target=guarded, daemon=True)
        worker.start()
        self.workers.append(worker)

    def finish(self) -> None:
        for worker in self.workers:
            worker.join()
        for stage in self.stages:
            stage.wait()
        if _termination.STOP_SIGNAL:
            raise LifeboatError(f"stopped by {_termination.STOP_SIGNAL[0]} before the work was done")
        if self.python_error is not None:
            raise _as_lifeboat_error(self.python_error, self.target)
        outcomes = [(stage, *stage.outcome()) for stage in self.stages]
        # The first real failure in stream order is the cause: upstream stages only saw their reader vanish.
        for stage, kind, reason in outcomes:
            if kind == "failed":
                raise StageFailed(stage.name, reason, stage.killed_by)
        broken = [(stage.name, reason) for stage, kind, reason in outcomes if kind == "pipe"]
        if broken:  # nothing downstream explains it: this stage's own words are the best we have
            raise StageFailed(*broken[-1])
        if self.reader_quit:
            raise StageFailed(self.reader_quit, f"{self.reader_quit} stopped reading before the end of the stream")
        for stage, kind, reason in outcomes:
            if kind != "ok":
                raise StageFailed(stage.name, f"{self.target} failed: {reason}")

    def cleanup(self) -> None:
        self.abort()
        for stage in self.stages:
            stage.wait()


def _as_lifeboat_error(exc: BaseException, target: str) -> BaseException:
    if isinstance(exc, LifeboatError) or not isinstance(exc, Exception):
        return exc  # KeyboardInterrupt and the like keep their meaning
    if isinstance(exc, OSError):
        return LifeboatError(f"{target} failed: {exc.strerror or exc}")
    return LifeboatError(f"{target} failed: {exc}")


def write_stream(
    producer_argv: list[str],
    temp_fd: int,
    *,
    temp_label: str = "the archive",
    producer_env: dict[str, str] | None = None,
    producer_name: str = "dump",
    compression: str = "zstd",
    compression_level: int | None = None,
    encryption: Encryption = NO_ENCRYPTION,
    on_producer_stderr: t.Callable[[str], None] | None = None,
    producer_ok_codes: t.Collection[int] = (0,),
    on_plain: t.Callable[[bytes], None] | None = None,
    producer_hashes: bool = False,
    hash_plain: bool = True,
) -> StreamResult:
    """Run producer | compress | encrypt into ``temp_fd`` (an open, empty file, readable too), hashing both ends.

    ``on_plain`` sees every plain chunk in order (a parser of ours), after the compressor got it (a parser's work
    must not hold up the stream); ``producer_ok_codes`` are the producer's exit codes that mean success (GNU tar's
    1: some file changed while it was read, which its stderr names).

    ``producer_hashes``: the producer (our exec helper) hashes its own output and reports it on the descriptor named
    by PLAIN_DIGEST_FD; its stdout then goes straight into the compressor, as a shell pipe would, and the plain
    stream never passes through this process (one copy and one hop less, bench/README.md). Ignored when there is
    nothing to compress or encrypt (the plain bytes are the stored ones, read here anyway).

    Without ``hash_plain`` the plain stream is counted but not hashed (``plain_sha256`` stays empty): for a files
    archive, whose per-file sha256 (``on_plain``) and stored sha256 already prove what the plain stream holds.

    The file is fsynced before returning. On any failure every process is stopped and LifeboatError is
    raised; the caller owns the file and removes it.
    """
    result = StreamResult()
    compress = compressor_argv(compression, compression_level)
    filters = [f for f in (Filter("compress", compress) if compress else None, encryptor(encryption)) if f]
    direct = producer_hashes and bool(filters) and on_plain is None
    digest_read, digest_write = os.pipe() if direct else (-1, -1)
    try:
        with _Runner(f"writing {temp_label}") as runner:
            if direct:
                producer_env = {**(producer_env or child_env()), PLAIN_DIGEST_FD: str(digest_write)}
            producer = runner.start(
                producer_name, producer_argv, subprocess.DEVNULL, subprocess.PIPE, producer_env, on_producer_stderr,
                ok_codes=producer_ok_codes, pass_fds=(digest_write,) if direct else (),
            )
            if direct:
                os.close(digest_write)  # the producer's now: its end is the end of the report
                digest_write = -1
                plain_out = as_pipe(producer.proc.stdout)
                grow_pipe(plain_out.fileno())
                head = runner.chain(filters, plain_out, temp_fd)[0]  # None: the producer feeds the compressor
                plain_out.close()  # the compressor's: a compressor that quits must break the producer's pipe
            else:
                head = runner.chain(filters, subprocess.PIPE, temp_fd)[0]
            # The last filter writes into the file itself; what it wrote is hashed from there (follow_file).
            _stream_stages(runner, producer, head, runner.stages[-1] if filters else None,
                           filters[0].name if filters else "", temp_fd, temp_label, result, on_plain, hash_plain)
        if direct:
            result.plain_sha256, result.plain_bytes = _reported_digest(digest_read, producer_name)
    finally:
        for fd in (digest_read, digest_write):
            if fd >= 0:
                os.close(fd)
    return result


def _reported_digest(fd: int, producer_name: str) -> tuple[str, int]:
    """The producer's "SHA256 BYTES" line, read once it has ended."""
    report = b""
    while chunk := os.read(fd, 4096):
        report += chunk
    fields = report.decode("ascii", "replace").split()
    if len(fields) != 2 or len(fields[0]) != 64 or not fields[1].isdigit():
        raise LifeboatError(f"{producer_name} ended without reporting the checksum of its output; nothing was kept")
    return fields[0], int(fields[1])


def _stream_stages(runner: _Runner, producer: _Stage, head: t.Any, writer: _Stage | None, first_filter: str,
                   temp_fd: int, temp_label: str, result: StreamResult, on_plain: t.Callable[[bytes], None] | None,
                   hash_plain: bool = True) -> None:
    """Run the started stages and fsync ``temp_fd``, hashing into ``result``: the stored side from the file that
    ``writer`` (the last filter) writes, or as this process writes the plain stream into it (no filter); the plain
    side only when the producer's output comes to this process (``head``: the first filter's stdin, or None)."""
    plain_hash, stored_hash = hashlib.sha256(), hashlib.sha256()
    plain_to_us = producer.proc.stdout is not None and not producer.proc.stdout.closed
    runner.begin()

    def store(chunk: bytes) -> None:
        stored_hash.update(chunk)
        result.stored_bytes += len(chunk)
        write_all(temp_fd, chunk)

    def take_plain(chunk: bytes) -> None:
        if hash_plain:
            plain_hash.update(chunk)
        result.plain_bytes += len(chunk)
        if on_plain is not None:
            on_plain(chunk)

    def store_plain(chunk: bytes) -> None:  # nothing to compress or encrypt: the plain bytes are the stored ones
        store(chunk)
        take_plain(chunk)

    def pump_plain() -> None:
        source = as_pipe(producer.proc.stdout).fileno()
        if head is None:
            pump(source, store_plain)
        else:
            pump_teed(source, head.fileno(), take_plain)  # the compressor is fed before this thread hashes
            head.close()

    if plain_to_us:
        runner.thread(pump_plain, reader=first_filter)
    if writer is not None:
        def hash_stored(chunk: memoryview) -> None:
            stored_hash.update(chunk)
            result.stored_bytes += len(chunk)

        runner.thread(functools.partial(follow_file, temp_fd, writer, hash_stored))
    runner.finish()
    try:
        os.fsync(temp_fd)
    except OSError as exc:
        raise LifeboatError(f"writing {temp_label} failed: {exc.strerror}") from exc
    if plain_to_us and hash_plain:
        result.plain_sha256 = plain_hash.hexdigest()
    result.stored_sha256 = stored_hash.hexdigest()


def read_stream(
    path: str,
    *,
    compression: str,
    decryption: Decryption = NO_DECRYPTION,
    encrypted: bool = False,
    consumer_argv: list[str] | None = None,
    consumer_env: dict[str, str] | None = None,
    consumer_name: str = "restore",
    on_consumer_output: t.Callable[[str], None] | None = None,
    on_consumer_stdout: t.Callable[[bytes], None] | None = None,
    on_plain: t.Callable[[bytes], None] | None = None,
    hash_plain: bool = True,
    tee_argv: list[str] | None = None,
    tee_env: dict[str, str] | None = None,
    tee_name: str = "reader",
    on_tee_stdout: t.Callable[[bytes], None] | None = None,
) -> StreamResult:
    """Stream ``path`` through age -d and the decompressor into a consumer (or nowhere), hashing both ends.

    ``on_plain`` sees every plain chunk in order (a parser of ours); ``on_consumer_stdout`` gets what the
    consumer writes (``pg_restore -f -``), read in a thread of its own so neither side can block the other.
    ``tee_argv`` is a second consumer fed the same plain chunks (a restore and ``pg_restore -f -`` reading one
    stream), its output going to ``on_tee_stdout``.

    Without ``hash_plain`` the plain stream is not hashed and ``plain_sha256`` stays empty; without a consumer or
    a parser too, it never reaches Python: the decompressor only tests it (its own content checksum) and age only
    authenticates it.
    """
    result = StreamResult()
    plain_hash, stored_hash = hashlib.sha256(), hashlib.sha256()
    discard = not hash_plain and not consumer_argv and not tee_argv and on_plain is None
    decompress = tester_argv(compression) if discard else decompressor_argv(compression)
    filters = [f for f in (decryptor(decryption) if encrypted else None,
                           Filter(DECOMPRESS, decompress) if decompress else None) if f]
    try:
        source = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise LifeboatError(f"cannot read archive {path}: {exc.strerror}") from exc
    try:
        with _Runner(f"reading {path}") as runner:
            head, tail = runner.chain(filters, subprocess.PIPE, subprocess.DEVNULL if discard else subprocess.PIPE)
            consumer = None
            if consumer_argv:
                consumer = runner.start(
                    consumer_name, consumer_argv, subprocess.PIPE,
                    subprocess.PIPE if on_consumer_stdout else subprocess.DEVNULL, consumer_env, on_consumer_output
                )
            tee = None
            if tee_argv:
                tee = runner.start(tee_name, tee_argv, subprocess.PIPE,
                                   subprocess.PIPE if on_tee_stdout else subprocess.DEVNULL, tee_env)
            runner.begin()

            def take_plain(chunk: bytes) -> None:
                if hash_plain:
                    plain_hash.update(chunk)
                result.plain_bytes += len(chunk)
                if on_plain is not None:
                    on_plain(chunk)
                if consumer is not None:
                    write_all(as_pipe(consumer.proc.stdin).fileno(), chunk)
                if tee is not None:
                    write_all(as_pipe(tee.proc.stdin).fileno(), chunk)

            def take_stored(chunk: bytes) -> None:
                stored_hash.update(chunk)
                result.stored_bytes += len(chunk)
                if head is None:
                    if not discard:
                        take_plain(chunk)
                else:
                    write_all(head.fileno(), chunk)

            def close_consumer() -> None:
                for reader in (consumer, tee):
                    if reader is not None:
                        as_pipe(reader.proc.stdin).close()

            def pump_file() -> None:
                pump(source, take_stored)
                if head is not None:
                    head.close()
                else:
                    close_consumer()

            def pump_plain() -> None:
                pump(tail.fileno(), take_plain)
                close_consumer()

            runner.thread(pump_file, reader=filters[0].name if filters else consumer_name)
            if tail is not None:
                runner.thread(pump_plain, reader=consumer_name)
            if consumer is not None and on_consumer_stdout is not None:
                runner.thread(functools.partial(pump, as_pipe(consumer.proc.stdout).fileno(), on_consumer_stdout))
            if tee is not None and on_tee_stdout is not None:
                runner.thread(functools.partial(pump, as_pipe(tee.proc.stdout).fileno(), on_tee_stdout))
            runner.finish()
    finally:
        os.close(source)
    result.stored_sha256 = stored_hash.hexdigest()
    result.plain_sha256 = plain_hash.hexdigest() if hash_plain else ""
    if discard and not filters:  # neither compressed nor encrypted: the stored bytes are the plain ones
        result.plain_sha256, result.plain_bytes = result.stored_sha256, result.stored_bytes
    return result
