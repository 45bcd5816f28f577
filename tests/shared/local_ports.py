# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loopback ports for servers a test starts later (nginx, containers' published ports, haproxy, a down receiver).

Never from the kernel's ephemeral range (bind to port 0): a port found free there is the one the kernel hands next
to any client connection of the machine, and a test under load (wrk and a new-connection client at 200/s leave
thousands of sockets in TIME_WAIT) held the green color's port by the time the deploy listened on it ("port ... is
in use by another process"). These come from a block below that range and clear of the test bed's fixed ports
(scripts/testbed/lib.sh: 25432, 27517, ...), picked at random so that suites running at once rarely meet, and
never twice in one process."""

from __future__ import annotations

import random
import socket

BLOCK = (20000, 25000)  # below 32768, the kernel's lowest default; the test bed's fixed ports lie above 25000
_given: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on or is connected from now, outside the ephemeral range; never the same twice."""
    low, high = BLOCK[0], min(BLOCK[1], _ephemeral_low())
    if high <= low:
        raise RuntimeError(f"the ephemeral port range starts at {high}: no room below it for test ports {BLOCK}")
    for port in random.sample(range(low, high), high - low):
        if port in _given:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{high - 1} on {host}")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    return [free_port(host) for _index in range(count)]
