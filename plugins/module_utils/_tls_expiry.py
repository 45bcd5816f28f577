# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How many days the certificate a server serves has left: read from a real TLS handshake.

The probe runner (roles/healthcheck) calls ``probe``; standard library only, so that it runs on any host. With
verification on (the default), the chain must verify against the system's trust or ``ca_file`` and match the
name; the leaf's notAfter is read from the DER of the served certificate either way.
"""

from __future__ import annotations

import calendar
import socket
import ssl
import time
from dataclasses import dataclass


@dataclass
class Expiry:
    not_after: float  # Unix time
    days_left: float


def _der_items(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The (tag, content start, content end) of each DER item between start and end."""
    items = []
    while start < end:
        tag, length = data[start], data[start + 1]
        start += 2
        if length & 0x80:
            size = length & 0x7F
            length = int.from_bytes(data[start:start + size], "big")
            start += size
        items.append((tag, start, start + length))
        start += length
    return items


def not_after(der: bytes) -> float:
    """notAfter of a DER certificate (RFC 5280: Certificate > TBSCertificate > validity > notAfter)."""
    certificate = _der_items(der, 0, len(der))[0]
    tbs = _der_items(der, certificate[1], certificate[2])[0]
    fields = _der_items(der, tbs[1], tbs[2])
    if fields[0][0] == 0xA0:  # [0] version is present: skip it
        fields = fields[1:]
    validity = fields[3]  # serialNumber, signature, issuer, validity
    tag, start, end = _der_items(der, validity[1], validity[2])[1]
    text = der[start:end].decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSS
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    return float(calendar.timegm(time.strptime(text[:14], "%Y%m%d%H%M%S")))


def served_expiry(host: str, port: int, server_name: str = "", ca_file: str = "", verify: bool = True,
                  timeout: float = 10) -> Expiry:
    """The served leaf's expiry; raises OSError/ssl.SSLError when the handshake (or verification) fails."""
    if verify:
        context = ssl.create_default_context(cafile=ca_file or None)
    else:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as sock, context.wrap_socket(sock, server_hostname=server_name or host) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError(f"{host}:{port} served no certificate")
    expires = not_after(der)
    return Expiry(expires, (expires - time.time()) / 86400)


def probe(host: str, port: int, server_name: str = "", ca_file: str = "", verify: bool = True, min_days: float = 14,
          timeout: float = 10) -> tuple[bool, str, Expiry | None]:
    """(ok, one-line detail, the expiry or None): ok while the served certificate verifies and has min_days left."""
    where = f"TLS {server_name or host} at {host}:{port}"
    try:
        expiry = served_expiry(host, port, server_name, ca_file, verify, timeout)
    except ssl.SSLCertVerificationError as exc:
        return False, f"{where}: certificate does not verify: {exc.verify_message}", None
    except (OSError, ssl.SSLError, ValueError, IndexError) as exc:
        return False, f"{where}: {getattr(exc, 'strerror', None) or exc}", None
    until = time.strftime("%Y-%m-%d", time.gmtime(expiry.not_after))
    if expiry.days_left < min_days:
        return False, f"{where}: certificate expires {until}, {expiry.days_left:.1f} days left (< {min_days:g})", expiry
    return True, f"{where}: {expiry.days_left:.1f} days left (until {until})", expiry
