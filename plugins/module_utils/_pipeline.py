# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The streaming archive pipeline.

Writing: producer stdout -> (sha256 of the plain stream) -> compressor -> age -> (sha256 of the stored
bytes) -> a hidden temporary file, fsynced, and linked to its final name only by ``commit`` once every
stage exited cleanly. Reading is the mirror image, ending in a consumer's stdin (pg_restore, mongorestore)
or nowhere (verification).

Compression and encryption are the standard ``zstd``/``gzip``/``age`` programs, so an archive restores
with those tools alone, and they run on all cores outside the GIL. Python only pumps bytes between pipes
and hashes them (hashlib releases the GIL), with fixed buffers: memory stays flat whatever the size.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import termios
import threading
import typing as t
from dataclasses import dataclass, field

from ._common import LifeboatError, child_env, find_binary, last_line, read_secret_file

CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031  # Linux: bigger pipes mean fewer, larger reads.
COMPRESSIONS = ("zstd", "gzip", "none")
SUFFIXES = {"zstd": ".zst", "gzip": ".gz", "none": ""}
DEFAULT_LEVELS = {"zstd": 3, "gzip": 6}


@dataclass(frozen=True)
class Encryption:
    """age encryption to public recipients (the host that writes backups cannot read them), or a passphrase."""

    recipients: tuple[str, ...] = ()
    recipients_files: tuple[str, ...] = ()
    passphrase_file: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.recipients or self.recipients_files or self.passphrase_file)

    @property
    def method(self) -> str:
        return "age-passphrase" if self.passphrase_file else "age"


@dataclass(frozen=True)
class Decryption:
    """What opens an encrypted archive: age identity files, or the passphrase file it was made with."""

    identity_files: tuple[str, ...] = ()
    passphrase_file: str | None = None


class _Filter(t.NamedTuple):
    name: str
    argv: list[str]
    tty_input: bytes | None = None


def validate_compression(compression: str, level: int | None) -> None:
    if compression not in COMPRESSIONS:
        raise LifeboatError(f"unknown compression '{compression}'; use one of: {', '.join(COMPRESSIONS)}")
    if level is not None:
        low, high = (1, 19) if compression == "zstd" else (1, 9)
        if compression == "none" or not low <= level <= high:
            raise LifeboatError(f"compression_level {level} does not fit {compression}; use {low} to {high}")


def validate_recipients(encryption: Encryption) -> None:
    if encryption.passphrase_file:
        if encryption.recipients or encryption.recipients_files:
            raise LifeboatError("give either encryption recipients or a passphrase file, not both (age takes one)")
        read_secret_file(encryption.passphrase_file, "passphrase")
    for recipient in encryption.recipients:
        if not recipient.startswith(("age1", "ssh-ed25519 ", "ssh-rsa ")):
            raise LifeboatError(
                f"'{recipient[:12]}...' is not an age recipient; give public keys (age1... or ssh-ed25519 ...)"
            )
        if recipient.startswith("AGE-SECRET-KEY"):
            raise LifeboatError("an age secret key was given as a recipient; give its public key (age-keygen -y)")
    for path in encryption.recipients_files:
        if not os.path.isfile(path):
            raise LifeboatError(f"age recipients file {path} does not exist")


def compressor_argv(compression: str, level: int | None = None) -> list[str] | None:
    if compression == "none":
        return None
    level = level or DEFAULT_LEVELS[compression]
    if compression == "zstd":
        return [find_binary("zstd"), "-q", "-c", "-T0", f"-{level}"]
    return [_gzip_binary(), "-c", f"-{level}"]


def decompressor_argv(compression: str) -> list[str] | None:
    if compression == "none":
        return None
    if compression == "zstd":
        return [find_binary("zstd"), "-q", "-d", "-c"]
    return [_gzip_binary(), "-d", "-c"]


def _gzip_binary() -> str:
    # pigz writes the same gzip format on every core; plain gzip is the fallback everywhere.
    return shutil.which("pigz") or find_binary("gzip")


def _passphrase_input(path: str, times: int) -> bytes:
    # age reads a passphrase only from a terminal: it gets one of its own (a pty) with the answer typed in.
    return (read_secret_file(path, "passphrase") + "\n").encode() * times


def encryptor(encryption: Encryption) -> _Filter | None:
    if not encryption.enabled:
        return None
    if encryption.passphrase_file:
        return _Filter("encrypt", [find_binary("age"), "-e", "-p"], _passphrase_input(encryption.passphrase_file, 2))
    argv = [find_binary("age"), "-e"]
    for recipient in encryption.recipients:
        argv += ["-r", recipient]
    for path in encryption.recipients_files:
        argv += ["-R", path]
    return _Filter("encrypt", argv)


def decryptor(decryption: Decryption) -> _Filter:
    if decryption.passphrase_file:
        return _Filter("decrypt", [find_binary("age"), "-d"], _passphrase_input(decryption.passphrase_file, 1))
    if not decryption.identity_files:
        raise LifeboatError("the archive is encrypted; give the age identity file that can decrypt it")
    for path in decryption.identity_files:
        if not os.path.isfile(path):
            raise LifeboatError(f"age identity file {path} does not exist")
    argv = [find_binary("age"), "-d"]
    for path in decryption.identity_files:
        argv += ["-i", path]
    return _Filter("decrypt", argv)


class _Stage:
    """A child process whose stderr is drained by a thread (keeping the tail, feeding a line callback)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        stdin: t.Any,
        stdout: t.Any,
        env: dict[str, str] | None = None,
        on_stderr_line: t.Callable[[str], None] | None = None,
        tty_input: bytes | None = None,
    ) -> None:
        self.name = name
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=60)
        self.killed = False
        self._tty_master = -1
        extra: dict[str, t.Any] = {}
        if tty_input is not None:
            self._tty_master, tty = os.openpty()
            extra = {"start_new_session": True, "pass_fds": (tty,), "preexec_fn": lambda: _take_terminal(tty)}
        try:
            self.proc = subprocess.Popen(
                argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env or child_env(), close_fds=True,
                **extra,
            )
        except OSError as exc:
            raise LifeboatError(f"cannot start {name} ({argv[0]}): {exc.strerror}") from exc
        finally:
            if tty_input is not None:
                os.close(tty)
        if tty_input is not None:
            os.write(self._tty_master, tty_input)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                _grow_pipe(pipe.fileno())
        self._on_line = on_stderr_line
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for raw in t.cast(t.IO[bytes], self.proc.stderr):
            line = raw.decode("utf-8", "replace").rstrip("\n")
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
        self._reader.join(timeout=10)
        if self._tty_master >= 0:  # closed only now: closing it earlier would hang up the child
            os.close(self._tty_master)
            self._tty_master = -1
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_tail)

    def failure(self) -> str | None:
        """Why this stage failed, or None when it succeeded or only died of a broken pipe we caused."""
        code = self.proc.returncode
        if code == 0 or self.killed:
            return None
        if code == -signal.SIGPIPE or "broken pipe" in self.stderr.lower():
            return None
        if code < 0:  # a signal says more than the tool's last progress line
            return f"{self.name} failed: killed by signal {-code}"
        reason = last_line(self.stderr) or f"exit code {code}"
        return f"{self.name} failed: {reason}"


def _take_terminal(tty: int) -> None:
    """In the child, before exec: make the pty its controlling terminal, where age asks for the passphrase."""
    fcntl.ioctl(tty, termios.TIOCSCTTY, 0)


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, CHUNK)
    except OSError:
        pass  # not Linux or over pipe-max-size: the default pipe still works


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


@dataclass
class StreamResult:
    """What a pipeline run measured."""

    plain_sha256: str = ""
    plain_bytes: int = 0
    stored_sha256: str = ""
    stored_bytes: int = 0
    stderr: dict[str, str] = field(default_factory=dict)
    consumer_stdout: str = ""


class _Runner:
    """Owns the stages and threads of one run; any failure kills every stage before it is reported."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.stages: list[_Stage] = []
        self.errors: list[str] = []
        self.python_error: BaseException | None = None

    def start(self, *args: t.Any, **kwargs: t.Any) -> _Stage:
        stage = _Stage(*args, **kwargs)
        self.stages.append(stage)
        return stage

    def abort(self) -> None:
        for stage in self.stages:
            stage.kill()

    def thread(self, target: t.Callable[[], None]) -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except BrokenPipeError:
                # The reader died; its own exit status says why. Stop the rest so nothing blocks on a full pipe.
                self.abort()
            except BaseException as exc:  # noqa: BLE001 - re-raised by finish()
                self.python_error = self.python_error or exc
                self.abort()

        worker = threading.Thread(target=guarded, daemon=True)
        worker.start()
        return worker

    def finish(self, workers: t.Sequence[threading.Thread], result: StreamResult) -> None:
        for worker in workers:
            worker.join()
        for stage in self.stages:
            stage.wait()
            result.stderr[stage.name] = stage.stderr
        if self.python_error is not None and not isinstance(self.python_error, BrokenPipeError):
            raise _as_lifeboat_error(self.python_error, self.target)
        # The first failure in stream order is the cause; later stages only saw a cut stream.
        for stage in self.stages:
            reason = stage.failure()
            if reason:
                raise LifeboatError(reason, stderr=stage.stderr)
        for stage in self.stages:
            if stage.proc.returncode != 0 and not stage.killed:
                raise LifeboatError(f"{stage.name} failed: the stream was cut (exit code {stage.proc.returncode})")


def _as_lifeboat_error(exc: BaseException, target: str) -> LifeboatError:
    if isinstance(exc, LifeboatError):
        return exc
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
    encryption: Encryption = Encryption(),
    on_producer_stderr: t.Callable[[str], None] | None = None,
) -> StreamResult:
    """Run producer | compress | encrypt into ``temp_fd`` (an open, empty file), hashing both ends.

    The file is fsynced before returning. On any failure every process is killed and LifeboatError is
    raised; the caller owns the file and removes it.
    """
    result = StreamResult()
    runner = _Runner(f"writing {temp_label}")
    plain_hash, stored_hash = hashlib.sha256(), hashlib.sha256()
    compress = compressor_argv(compression, compression_level)
    filters = [f for f in (_Filter("compress", compress) if compress else None, encryptor(encryption)) if f]
    try:
        producer = runner.start(
            producer_name, producer_argv, subprocess.DEVNULL, subprocess.PIPE, producer_env, on_producer_stderr
        )
        previous: t.Any = subprocess.PIPE
        for index, item in enumerate(filters):
            stage = runner.start(item.name, item.argv, previous, subprocess.PIPE, tty_input=item.tty_input)
            if index == 0:
                first_filter_stdin = stage.proc.stdin
            else:
                runner.stages[-2].proc.stdout.close()  # the filter owns it now
            previous = stage.proc.stdout
        plain_out = t.cast(t.IO[bytes], producer.proc.stdout)

        def pump_plain() -> None:
            sink = first_filter_stdin.fileno() if filters else temp_fd
            while True:
                chunk = os.read(plain_out.fileno(), CHUNK)
                if not chunk:
                    break
                plain_hash.update(chunk)
                result.plain_bytes += len(chunk)
                if not filters:
                    stored_hash.update(chunk)
                    result.stored_bytes += len(chunk)
                _write_all(sink, chunk)
            if filters:
                first_filter_stdin.close()

        workers = [runner.thread(pump_plain)]
        if filters:
            tail = runner.stages[-1].proc.stdout

            def pump_stored() -> None:
                while True:
                    chunk = os.read(tail.fileno(), CHUNK)
                    if not chunk:
                        break
                    stored_hash.update(chunk)
                    result.stored_bytes += len(chunk)
                    _write_all(temp_fd, chunk)

            workers.append(runner.thread(pump_stored))
        runner.finish(workers, result)
        os.fsync(temp_fd)
    except BaseException:
        runner.abort()
        for stage in runner.stages:
            stage.wait()
        raise
    result.plain_sha256 = plain_hash.hexdigest()
    result.stored_sha256 = stored_hash.hexdigest()
    return result


def read_stream(
    path: str,
    *,
    compression: str,
    decryption: Decryption = Decryption(),
    encrypted: bool = False,
    consumer_argv: list[str] | None = None,
    consumer_env: dict[str, str] | None = None,
    consumer_name: str = "restore",
    on_consumer_output: t.Callable[[str], None] | None = None,
) -> StreamResult:
    """Stream ``path`` through age -d and the decompressor into a consumer (or nowhere), hashing both ends."""
    result = StreamResult()
    runner = _Runner(f"reading {path}")
    plain_hash, stored_hash = hashlib.sha256(), hashlib.sha256()
    decompress = decompressor_argv(compression)
    filters = [f for f in (decryptor(decryption) if encrypted else None,
                           _Filter("decompress", decompress) if decompress else None) if f]
    try:
        source = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in finally
    except OSError as exc:
        raise LifeboatError(f"cannot read archive {path}: {exc.strerror}") from exc
    try:
        previous: t.Any = subprocess.PIPE
        first_stdin = None
        for index, item in enumerate(filters):
            stage = runner.start(item.name, item.argv, previous, subprocess.PIPE, tty_input=item.tty_input)
            if index == 0:
                first_stdin = stage.proc.stdin
            else:
                runner.stages[-2].proc.stdout.close()
            previous = stage.proc.stdout
        consumer = None
        if consumer_argv:
            consumer = runner.start(
                consumer_name, consumer_argv, subprocess.PIPE, subprocess.PIPE, consumer_env, on_consumer_output
            )

        def deliver_plain(chunk: bytes) -> None:
            plain_hash.update(chunk)
            result.plain_bytes += len(chunk)
            if consumer is not None:
                _write_all(consumer.proc.stdin.fileno(), chunk)

        def pump_file() -> None:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                stored_hash.update(chunk)
                result.stored_bytes += len(chunk)
                if first_stdin is not None:
                    _write_all(first_stdin.fileno(), chunk)
                else:
                    deliver_plain(chunk)
            if first_stdin is not None:
                first_stdin.close()
            elif consumer is not None:
                consumer.proc.stdin.close()

        workers = [runner.thread(pump_file)]
        if filters:
            tail = previous

            def pump_plain() -> None:
                while True:
                    chunk = os.read(tail.fileno(), CHUNK)
                    if not chunk:
                        break
                    deliver_plain(chunk)
                if consumer is not None:
                    consumer.proc.stdin.close()

            workers.append(runner.thread(pump_plain))
        if consumer is not None:
            out_reader = threading.Thread(target=lambda: _collect(consumer, result), daemon=True)
            out_reader.start()
            workers.append(out_reader)
        runner.finish(workers, result)
    except BaseException:
        runner.abort()
        for stage in runner.stages:
            stage.wait()
        raise
    finally:
        source.close()
    result.plain_sha256 = plain_hash.hexdigest()
    result.stored_sha256 = stored_hash.hexdigest()
    return result


def _collect(stage: _Stage, result: StreamResult) -> None:
    result.consumer_stdout = t.cast(t.IO[bytes], stage.proc.stdout).read().decode("utf-8", "replace")


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise LifeboatError(f"cannot read archive {path}: {exc.strerror}") from exc
    return digest.hexdigest()


class ArchiveFile:
    """A hidden temporary file beside the final name; ``commit`` gives it that name, never over another file."""

    def __init__(self, final_path: str) -> None:
        self.final_path = final_path
        directory, name = os.path.split(final_path)
        self.directory = directory
        self.temp_path = os.path.join(directory, f".{name}.partial-{os.getpid()}")
        try:
            self.fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise LifeboatError(f"cannot create a file in {directory}: {exc.strerror}") from exc
        self.committed = False

    def commit(self) -> None:
        os.close(self.fd)
        self.fd = -1
        try:
            # link() refuses to replace an existing file, so an older archive is never overwritten.
            os.link(self.temp_path, self.final_path)
        except FileExistsError as exc:
            raise LifeboatError(f"{self.final_path} already exists; refusing to overwrite an archive") from exc
        os.unlink(self.temp_path)
        self.committed = True
        fsync_directory(self.directory)

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.committed:
            try:
                os.unlink(self.temp_path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> ArchiveFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write a small file (a manifest) under a temporary name, fsync it, rename it into place."""
    temp = f"{path}.partial-{os.getpid()}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temp)
        raise
    os.close(fd)
    os.replace(temp, path)
    fsync_directory(os.path.dirname(path) or ".")
