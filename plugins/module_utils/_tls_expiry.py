# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""How many days the certificate a server serves has left: read from a real TLS handshake.

The probe runner (roles/healthcheck) calls ``probe``; standard library only, so that it runs on any host. With
verification on (the default), the chain must verify against the system's trust or ``ca_file`` and match the
name; the leaf's notAfter is read from the DER of the served certificate either way. Two tiers: fewer than
``warn_days`` left (default 21) is WARNING, fewer than ``critical_days`` (default 7; ``min_days`` is its old name)
CRITICAL, as is a certificate that does not verify or no handshake within the timeout (connect and handshake
together).
"""

from __future__ import annotations

import calendar
import socket
import ssl
import time
import typing as t
from dataclasses import dataclass

from . import _http_probe

# The tiers of days left: fewer than WARN_DAYS is WARNING, fewer than CRITICAL_DAYS is CRITICAL (the probes' defaults).
WARN_DAYS, CRITICAL_DAYS = 21.0, 7.0
OK, WARNING, CRITICAL = "OK", "WARNING", "CRITICAL"  # the names _catalog gives these states


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
    """The served leaf's expiry; raises OSError/ssl.SSLError when the handshake (or verification) fails, TimeoutError
    when connect and handshake together take more than ``timeout`` s."""
    if verify:
        context = ssl.create_default_context(cafile=ca_file or None)
    else:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with _http_probe.connect(host, port, _http_probe.Deadline(timeout), context, server_name or host) as tls:
        der = tls.getpeercert(binary_form=True)  # type: ignore[attr-defined]  # connect() with a context: an SSLSocket
    if not der:
        raise ssl.SSLError(f"{host}:{port} served no certificate")
    expires = not_after(der)
    return Expiry(expires, (expires - time.time()) / 86400)


def thresholds(settings: t.Mapping[str, t.Any]) -> tuple[float, float]:
    """(warn_days, critical_days) of a tls probe's settings; ValueError (one line) for a value it cannot take.

    ``min_days``, the single threshold of old, is a name of critical_days. Without warn_days, the warning tier
    starts at WARN_DAYS, or at critical_days when that is higher (a min_days of 30 alone stays valid)."""
    if settings.get("critical_days") is not None and settings.get("min_days") is not None:
        raise ValueError("critical_days and min_days (its old name) are both set; keep critical_days")
    values = {}
    for name in ("warn_days", "critical_days", "min_days"):
        value = settings.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 36500:
            raise ValueError(f"{name} must be a number of days from 0 to 36500, not {value!r}")
        values[name] = float(value)
    critical = values.get("critical_days", values.get("min_days", CRITICAL_DAYS))
    if "warn_days" not in values:
        return max(WARN_DAYS, critical), critical
    if values["warn_days"] < critical:
        raise ValueError(f"warn_days ({values['warn_days']:g}) must be at least critical_days ({critical:g}): "
                         "a certificate warns before it is critical")
    return values["warn_days"], critical


def probe(host: str, port: int, server_name: str = "", ca_file: str = "", verify: bool = True,
          warn_days: float = WARN_DAYS, critical_days: float = CRITICAL_DAYS,
          timeout: float = 10) -> tuple[str, str, Expiry | None]:
    """(state, one-line detail, the expiry or None). The state is CRITICAL when there is no verified certificate or
    it has fewer than critical_days left, WARNING when it has fewer than warn_days left, else OK."""
    where = f"TLS {server_name or host} at {host}:{port}"
    try:
        expiry = served_expiry(host, port, server_name, ca_file, verify, timeout)
    except ssl.SSLCertVerificationError as exc:
        return CRITICAL, f"{where}: certificate does not verify: {exc.verify_message}", None
    except TimeoutError:
        return CRITICAL, f"{where}: no handshake within {timeout:g} s", None
    except (OSError, ssl.SSLError, ValueError, IndexError) as exc:
        if isinstance(exc, socket.timeout):  # Python 3.9: socket.timeout is no TimeoutError yet
            return CRITICAL, f"{where}: no handshake within {timeout:g} s", None
        return CRITICAL, f"{where}: {getattr(exc, 'strerror', None) or exc}", None
    until = time.strftime("%Y-%m-%d", time.gmtime(expiry.not_after))
    if expiry.days_left < critical_days:
        return (CRITICAL, f"{where}: certificate expires {until}, {expiry.days_left:.1f} days left "
                          f"(< {critical_days:g}, critical)", expiry)
    if expiry.days_left < warn_days:
        return (WARNING, f"{where}: certificate expires {until}, {expiry.days_left:.1f} days left "
                         f"(< {warn_days:g}, warning)", expiry)
    return OK, f"{where}: {expiry.days_left:.1f} days left (until {until})", expiry
