# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Renew the reverse proxy's ACME certificates that are due, then test and reload nginx (the systemd timer's job).

    lifeboat-proxy-renew.py --config /etc/lifeboat-proxy/renew.json [--force]

The configuration is written by lifeboat.ops.reverse_proxy_sites; the work is the collection's library
(_reverse_proxy.renew), installed beside this file as the package lifeboat_ops.
"""

from __future__ import annotations

import argparse
import os
import sys

_here = os.path.dirname(os.path.realpath(__file__))
if os.path.isdir(os.path.join(_here, "lifeboat_ops")):  # installed by the role
    sys.path.insert(0, _here)
    from lifeboat_ops import _reverse_proxy
    from lifeboat_ops._common import LifeboatError
else:  # a checkout: roles/reverse_proxy/files/ -> the collection's root
    sys.path.insert(0, os.path.join(_here, "..", "..", ".."))
    from plugins.module_utils import _reverse_proxy
    from plugins.module_utils._common import LifeboatError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Renew the ACME certificates that are due.")
    parser.add_argument("--config", required=True, help="the renewal configuration (JSON)")
    parser.add_argument("--force", action="store_true", help="renew every certificate now")
    args = parser.parse_args(argv)
    try:
        # LIFEBOAT_PROXY_RENEW_FORCE=1 (e.g. a drop-in of the timer's service) renews everything now, like --force.
        force = args.force or os.environ.get("LIFEBOAT_PROXY_RENEW_FORCE") == "1"
        for line in _reverse_proxy.renew(args.config, force=force):
            sys.stdout.write(f"<6>{line}\n")
    except LifeboatError as exc:
        sys.stdout.write(f"<3>{exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
