# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""``lifeboat proxy-renew``: renew the reverse proxy's ACME certificates that are due, then test and reload nginx.

    lifeboat proxy-renew --config /etc/lifeboat-proxy/renew.json [--force]

The reverse_proxy role's renewal timer runs it. The configuration is written by lifeboat.ops.reverse_proxy_sites;
the work is ``_reverse_proxy.renew``, the module's own. Exit code 0, or 1 when a certificate could not be renewed
(one line saying why). ``LIFEBOAT_PROXY_RENEW_FORCE=1`` in its environment (e.g. a drop-in of the timer's service)
renews everything now, as ``--force`` does.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import _reverse_proxy
from ._common import LifeboatError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the renewal configuration (JSON)")
    parser.add_argument("--force", action="store_true", help="renew every certificate now")


def run(args: argparse.Namespace) -> int:
    try:
        force = args.force or os.environ.get("LIFEBOAT_PROXY_RENEW_FORCE") == "1"
        for line in _reverse_proxy.renew(args.config, force=force):
            sys.stdout.write(f"<6>{line}\n")
    except LifeboatError as exc:
        sys.stdout.write(f"<3>{exc}\n")
        return 1
    return 0
