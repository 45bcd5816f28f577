# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A client run inside a container, as a child process of this host: the pipeline's stage for ``container``.

``python -c BOOT lifeboat_module CONTAINER_ID --env NAME... -- ARGV...`` runs ARGV in the container through the
Docker Engine API (the docker SDK's exec, never the docker CLI) and behaves like the tool itself would on this
host: its stdin goes to the exec's stdin, the exec's stdout and stderr come out on ours, and its exit code is
ours. The variables named by ``--env`` are taken from this process's environment into the exec's environment:
that is how a password reaches the client without being on any command line, here or in the container (an
exec's environment is not part of ``docker inspect``). Being a process of its own, it is started, drained,
killed and judged by the pipeline exactly like a client on the host; a guard it forks stops the client in the
container when this process ends, even by SIGKILL (see ``_guard``).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import typing as t

EXIT_NOT_STARTED = 125  # like `docker exec`: the command could not be started in the container


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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def run(container: str, argv: list[str], env_names: list[str]) -> int:
    import docker  # pylint: disable=import-outside-toplevel
    from docker.utils.socket import frames_iter  # pylint: disable=import-outside-toplevel

    api = docker.APIClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), version="auto")
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
    try:
        for stream, data in frames_iter(sock, tty=False):
            _write_all(1 if stream == 1 else 2, data)
    except BrokenPipeError:
        stop(signal.SIGPIPE, None)  # our reader went away: so does the client, as it would on the host
        return 128 + signal.SIGPIPE
    finally:
        raw.close()
    code = api.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else EXIT_NOT_STARTED


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

    api = docker.APIClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), version="auto")

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
    env_names: list[str] = []
    while rest and rest[0] == "--env":
        env_names.append(rest[1])
        rest = rest[2:]
    if rest[:1] != ["--"] or len(rest) < 2:
        sys.stderr.write("usage: CONTAINER [--env NAME]... -- ARGV...\n")
        return 2
    return run(container, rest[1:], env_names)
