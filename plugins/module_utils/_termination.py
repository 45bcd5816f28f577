# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""A stop request (SIGTERM, SIGHUP) turned into a clean end: the streams running now abort, no new work starts.

Apart from the pipeline so that every module and the host program install the handler without carrying the
pipeline's code; the pipeline registers its running streams here.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import typing as t

from ._common import LifeboatError, on_termination


class Abortable(t.Protocol):
    def abort(self) -> None: ...


# Streams running now, and the signal that asked this process to stop, if one did.
ABORTABLE: set[Abortable] = set()
STOP_SIGNAL: list[str] = []


def _stop(signal_name: str) -> None:
    STOP_SIGNAL.append(signal_name)
    if not ABORTABLE:
        raise LifeboatError(f"stopped by {signal_name} before the work was done")
    # Inside a stream, raising here could land in the middle of starting a thread; stopping the children
    # instead makes the stream end, and finish() reports the signal.
    for stream in list(ABORTABLE):
        stream.abort()


def stop_requested() -> bool:
    """Whether SIGTERM or SIGHUP asked this process to stop (no new work should start)."""
    return bool(STOP_SIGNAL)


def stop_cleanly_on_termination() -> None:
    """On SIGTERM or SIGHUP, end the work through the usual cleanup: no partial archive, no private file left."""
    on_termination(_stop)


@contextlib.contextmanager
def termination_deferred() -> t.Iterator[list[str]]:
    """SIGTERM and SIGHUP only noted while the block runs: a swap or a cleanup must never stop halfway.

    Yields the list of signals that arrived; the caller decides what they mean once the block is done.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []  # signal handlers belong to the main thread; nothing to defer elsewhere
        return
    arrived: list[str] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    on_termination(arrived.append)
    try:
        yield arrived
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
