# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""A client run inside a container, as a child process of this host: the pipeline's stage for ``container``.

``python -c BOOT ROOT lifeboat_module CONTAINER_ID [--name NAME] --env NAME... -- ARGV...`` runs ARGV in the
container through the Docker Engine API (the docker SDK's exec, never the docker CLI) and behaves like the tool
itself would on this host: its stdin goes to the exec's stdin, the exec's stdout and stderr come out on ours, and
its exit code is ours (a client killed by a signal says so last on stderr: ``killed_line``). The variables named by
``--env`` are taken from this process's environment into the exec's environment: that is how a password reaches the
client without being on any command line, here or in the container (an exec's environment is not part of ``docker
inspect``). Being a process of its own, it is started, drained, killed and judged by the pipeline exactly like a
client on the host; a guard it forks stops the client in the container when this process ends, even by SIGKILL (see
``_guard``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import socket
import struct
import sys
import threading
import time
import typing as t

from ._docker_engine import engine_client

EXIT_NOT_STARTED = 125  # like `docker exec`: the command could not be started in the container
CHUNK = 1 << 20
# The Engine API's multiplexed stream: frames of an 8-byte header (stream 1 or 2, three zero bytes, big-endian
# payload length) and the payload. A client's stdio writes (4-8 KiB for pg_dump) each become one frame.
_FRAME_HEADER = struct.Struct(">BxxxL")
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# A read returns once this much has come (or the wait below is over, or the stream ended): a frame a read woke us
# 18,000-30,000 times for 136 MB of pg_dump. Well below what the engine's socket buffer holds (up to ~800 KiB
# seen queued), so the engine never waits for us to reach it.
RECV_LOW_WATER = 64 << 10
RECV_WAIT_SECONDS = 0.02  # the longest a little output (a progress line) waits for more
# Set by the pipeline (_pipeline.PLAIN_DIGEST_FD, the same name): the descriptor on which to report the sha256 and
# byte count of what we wrote on stdout, once it all went out. The pipeline then connects our stdout straight to
# the compressor: the dump's bytes pass through one process less, and are hashed here, where they pass anyway.
PLAIN_DIGEST_FD = "LIFEBOAT_PLAIN_DIGEST_FD"


def _forward_stdin(raw: socket.socket) -> None:
    """Our stdin into the exec's, then close its write side so the client sees the end of its input."""
    try:
        while True:
            chunk = os.read(0, 1 << 20)
            if not chunk:
                break
            raw.sendall(chunk)
    except OSError:
        pass  # the exec ended or went away; its exit code says what happened
    finally:
        try:
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Tally:
    """sha256 and size of our stdout, when the pipeline asked for them (PLAIN_DIGEST_FD)."""

    def __init__(self) -> None:
        fd = os.environ.pop(PLAIN_DIGEST_FD, "")
        self.fd = int(fd) if fd.isdigit() else -1
        self.digest = hashlib.sha256()
        self.size = 0

    def add(self, data: bytearray) -> None:
        if self.fd >= 0:
            self.digest.update(data)
            self.size += len(data)

    def report(self) -> None:
        if self.fd >= 0:
            _write_all(self.fd, f"{self.digest.hexdigest()} {self.size}\n".encode())
            os.close(self.fd)


def _copy_frames(raw: socket.socket, tally: _Tally) -> None:
    """The exec's frames onto our stdout (stream 1) and stderr (stream 2).

    One read takes many frames at once (see RECV_LOW_WATER), and their payloads go out in one write per stream. A
    frame at a time (the docker SDK's frames_iter: poll, recv of the header, poll, recv of the payload, a write)
    cost twice the CPU: 0.4 against 0.2 s for 136 MB of pg_dump, CPU the client, the server and the compressor
    share with us (bench/bench_container.py)."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    outputs = {1: bytearray(), 2: bytearray()}
    kept, stream, left = 0, 1, 0  # kept: the start of a header carried over from the last read
    _batch_reads(raw)
    while True:
        try:
            got = raw.recv_into(view[kept:])
        except BlockingIOError:
            continue  # RECV_WAIT_SECONDS passed without a byte: wait again
        if not got:
            return  # the end of the stream (a header cut short is dropped, as frames_iter drops it)
        end, position = kept + got, 0
        while position < end:
            if left == 0:
                if end - position < _FRAME_HEADER.size:
                    break
                stream, left = _FRAME_HEADER.unpack_from(buffer, position)
                position += _FRAME_HEADER.size
                continue
            take = min(left, end - position)
            outputs[1 if stream == 1 else 2] += view[position:position + take]
            position += take
            left -= take
        kept = end - position
        view[:kept] = bytes(view[position:end])
        if outputs[1]:
            tally.add(outputs[1])
        for fd, output in outputs.items():
            if output:
                _write_all(fd, output)
                del output[:]


def _batch_reads(raw: socket.socket) -> None:
    """Reads that wait for RECV_LOW_WATER bytes, or RECV_WAIT_SECONDS with less (SO_RCVTIMEO: then a read returns
    what has come, or fails with EAGAIN when nothing has)."""
    try:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, RECV_LOW_WATER)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, int(RECV_WAIT_SECONDS * 1e6)))
    except (OSError, AttributeError, struct.error):
        pass  # a read a frame at a time still works


def _grow_pipe(fd: int) -> None:
    """A larger pipe to our reader: fewer, larger writes and reads on both sides."""
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, CHUNK)
    except OSError:
        pass  # not a pipe, or over the system's pipe-max-size: the pipe as it is still works


def run(container: str, argv: list[str], env_names: list[str], name: str | None = None) -> int:
    import docker  # pylint: disable=import-outside-toplevel

    tally = _Tally()
    api = engine_client(docker)
    environment = {name: os.environ[name] for name in env_names if name in os.environ}
    # stdin only when something feeds it: an exec with an open stdin nobody closes never sees its end.
    with_stdin = not _is_devnull(0)
    try:
        exec_id = api.exec_create(container, argv, stdin=with_stdin, stdout=True, stderr=True,
                                  environment=environment)["Id"]
        _guard(exec_id)  # before the start: from then on, however we end, the client ends too
        sock = api.exec_start(exec_id, socket=True)
    except docker.errors.APIError as exc:
        sys.stderr.write(f"cannot run {argv[0]} in container {container}: {exc.explanation or exc}\n")
        return EXIT_NOT_STARTED
    raw: socket.socket = getattr(sock, "_sock", sock)
    # The API client's timeout (60 s) is for requests, not for the exec's stream: with it, a client that read no
    # stdin for 60 s (a lock wait) had its input cut short (sendall timed out, then SHUT_WR: of 10 MB sent to
    # `sleep 70; wc -c`, 438,528 bytes arrived, exit code 0).
    raw.settimeout(None)

    def stop(signum: int, _frame: t.Any) -> None:
        # The client in the container is no child of ours: pass the stop on to it (its host PID).
        pid = api.exec_inspect(exec_id).get("Pid")
        if pid:
            try:
                os.kill(pid, signum)
            except OSError:
                pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    if with_stdin:
        threading.Thread(target=_forward_stdin, args=(raw,), daemon=True).start()
    _grow_pipe(1)
    try:
        _copy_frames(raw, tally)
        tally.report()
    except BrokenPipeError:
        stop(signal.SIGPIPE, None)  # our reader went away: so does the client, as it would on the host
        return 128 + signal.SIGPIPE
    finally:
        raw.close()
    code = api.exec_inspect(exec_id).get("ExitCode")
    if code is None:
        return EXIT_NOT_STARTED
    _say_if_killed(int(code), argv[0], name or container)
    return int(code)


def killed_by(code: int) -> int | None:
    """The signal that ended a process whose exit code (an exec's, as the engine reports it) is ``code``: 128 + N."""
    number = code - 128
    return number if 0 < number < signal.NSIG else None


def killed_line(tool: str, container: str, number: int) -> str:
    return f"{os.path.basename(tool)} in container {container} was killed (signal {number})"


def _say_if_killed(code: int, tool: str, container: str) -> None:
    """A client killed in the container leaves its last progress line as its last word; the signal says more, so it
    goes last on stderr. A reader that went away (SIGPIPE) is the pipeline's to report."""
    number = killed_by(code)
    if number is not None and number != signal.SIGPIPE:
        sys.stderr.write(killed_line(tool, container, number) + "\n")
        sys.stderr.flush()


def _guard(exec_id: str) -> None:
    """Fork a guard that stops the exec's process once this process has ended, however it ended.

    A SIGKILL (the pipeline's way to stop a stage) cannot be passed on by ``stop``, and the Docker engine does not
    end an exec whose client went away: it closes the exec's stdin (a reader such as pg_restore sees its end) but
    keeps draining its output, so a writer such as pg_dump runs on to its end, or waits on a lock for ever. The guard
    holds the read end of a pipe whose write end only this process holds: the kernel closes that end when we end.
    """
    read_end, _write_end = os.pipe()  # the write end stays open in this process until it ends
    if os.fork():
        os.close(read_end)
        return
    try:
        os.setsid()  # a kill of our process group must not take the guard with it
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)  # holding no pipe of the stream: its readers see their end when we end
        os.closerange(3, read_end)
        os.closerange(read_end + 1, os.sysconf("SC_OPEN_MAX"))
        while os.read(read_end, 1 << 12):
            pass
        _stop_exec(exec_id)
    finally:
        os._exit(0)  # the guard never returns into the helper's code


def _stop_exec(exec_id: str, grace: float = 5.0) -> None:
    """SIGTERM to the exec's process (its host PID) if it still runs; SIGKILL if it has not ended after ``grace`` s."""
    import docker  # pylint: disable=import-outside-toplevel

    api = engine_client(docker)

    def running_pid() -> int | None:
        info = api.exec_inspect(exec_id)
        return info.get("Pid") if info.get("Running") else None

    pid = running_pid()
    if not pid:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if not running_pid():
            return
    os.kill(pid, signal.SIGKILL)


def _is_devnull(fd: int) -> bool:
    try:
        return os.path.samefile(f"/proc/self/fd/{fd}", os.devnull)
    except OSError:
        return False


def main(args: list[str]) -> int:
    container, rest = args[0], args[1:]
    name = None
    if rest[:1] == ["--name"] and len(rest) > 1:
        name, rest = rest[1], rest[2:]
    env_names: list[str] = []
    while rest and rest[0] == "--env":
        env_names.append(rest[1])
        rest = rest[2:]
    if rest[:1] != ["--"] or len(rest) < 2:
        sys.stderr.write("usage: CONTAINER [--name NAME] [--env NAME]... -- ARGV...\n")
        return 2
    return run(container, rest[1:], env_names, name)
