# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The reverse proxy's certificates: issued by ACME (HTTP-01 through the proxy itself), or self-signed for a dev host.

``ensure_certificate`` is the one entry point, used by the acme_certificate module at deploy time and by the
renewal timer's script on the host: it does nothing while the certificate covers the names and has more than
``renew_days`` left. Keys are written 0600 and atomically, the key before the chain that matches it; no key
material is ever returned or logged. The ACME protocol is the ``acme`` library's (certbot's own, python3-acme).
"""

from __future__ import annotations

import datetime
import os
import typing as t
from dataclasses import dataclass

from ._common import LifeboatError
from ._nginx import CHALLENGE_PREFIX, Planned, write

UTC = datetime.timezone.utc


@dataclass
class CertificateState:
    changed: bool
    reason: str  # why it was (or would be) issued, or why not
    not_after: str = ""  # ISO time of the served (new or kept) certificate, if any
    days_left: float | None = None


def load_chain(path: str) -> list[t.Any]:
    if not os.path.exists(path):  # before the import: check mode on a host without python3-cryptography yet
        return []
    from cryptography import x509  # pylint: disable=import-outside-toplevel

    try:
        with open(path, "rb") as handle:
            data = handle.read()
        # One PEM block at a time: load_pem_x509_certificates needs cryptography 39, Debian 12 has 38.
        end = b"-----END CERTIFICATE-----"
        return [x509.load_pem_x509_certificate(block + end) for block in data.split(end) if b"-----BEGIN" in block]
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise LifeboatError(f"cannot read the certificate {path}: {getattr(exc, 'strerror', None) or exc}") from exc


def names_of(certificate: t.Any) -> set[str]:
    from cryptography import x509  # pylint: disable=import-outside-toplevel

    try:
        return set(certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                   .get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        return set()


def why_issue(chain: list[t.Any], domains: list[str], renew_days: int, force: bool) -> str:
    """Why a new certificate is needed, or '' while the current one is good."""
    if force:
        return "renewal forced"
    if not chain:
        return "no certificate yet"
    missing = sorted(set(domains) - names_of(chain[0]))
    if missing:
        return f"the certificate does not cover {', '.join(missing)}"
    left = days_left(chain[0])
    if left <= renew_days:
        return f"{left:.1f} days left, renewal is due at {renew_days}"
    return ""


def not_after(certificate: t.Any) -> datetime.datetime:
    """The end of validity, aware (not_valid_after_utc is cryptography 42+; Debian 12 has 38, naive UTC)."""
    aware = getattr(certificate, "not_valid_after_utc", None)
    return aware if aware is not None else certificate.not_valid_after.replace(tzinfo=UTC)


def days_left(certificate: t.Any) -> float:
    return (not_after(certificate) - datetime.datetime.now(UTC)).total_seconds() / 86400


def state_of(chain_path: str, changed: bool, reason: str) -> CertificateState:
    chain = load_chain(chain_path)
    if not chain:
        return CertificateState(changed, reason)
    return CertificateState(changed, reason, not_after(chain[0]).isoformat(), round(days_left(chain[0]), 2))


def new_key_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=import-outside-toplevel

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def save(chain_path: str, key_path: str, chain_pem: bytes, key_pem: bytes) -> None:
    """The key first, then the chain (both 0600 for the key, 0644 for the chain): nginx reads them at its reload."""
    os.makedirs(os.path.dirname(key_path), mode=0o700, exist_ok=True)
    write(Planned(key_path, key_pem, mode=0o600, secret=True), key_pem)
    write(Planned(chain_path, chain_pem, mode=0o644), chain_pem)


def self_signed(domains: list[str], chain_path: str, key_path: str, days: int = 365,
                check_mode: bool = False) -> CertificateState:
    """A self-signed certificate for a dev host, made once and again only when the names change or it runs out."""
    reason = why_issue(load_chain(chain_path), domains, 30, False)
    if not reason or check_mode:
        return state_of(chain_path, bool(reason), reason or "the self-signed certificate is good")
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import hashes, serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=import-outside-toplevel
    from cryptography.x509.oid import NameOID  # pylint: disable=import-outside-toplevel

    key_pem = new_key_pem()
    key = t.cast(ec.EllipticCurvePrivateKey, serialization.load_pem_private_key(key_pem, None))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])])
    now = datetime.datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    save(chain_path, key_path, certificate.public_bytes(serialization.Encoding.PEM), key_pem)
    return state_of(chain_path, True, reason)


def is_self_signed(chain_path: str) -> bool:
    chain = load_chain(chain_path)
    return bool(chain) and chain[0].issuer == chain[0].subject


def ocsp_possible(chain_path: str) -> bool:
    """OCSP stapling only where the chain allows it: a leaf with an OCSP responder URL and its issuer in the file."""
    chain = load_chain(chain_path)
    if len(chain) < 2:
        return False
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.x509.oid import AuthorityInformationAccessOID  # pylint: disable=import-outside-toplevel

    try:
        access = chain[0].extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return False
    return any(item.access_method == AuthorityInformationAccessOID.OCSP for item in access)


def load_account_key(path: str, check_mode: bool) -> t.Any:
    """The ACME account key (a JWK), created 0600 on first use."""
    import josepy  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import rsa  # pylint: disable=import-outside-toplevel

    try:
        with open(path, "rb") as handle:
            return josepy.JWKRSA(key=serialization.load_pem_private_key(handle.read(), None))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise LifeboatError(f"cannot read the ACME account key {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if not check_mode:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        write(Planned(path, pem, mode=0o600, secret=True), pem)
    return josepy.JWKRSA(key=key)


def make_csr(key_pem: bytes, domains: list[str]) -> bytes:
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import hashes, serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=import-outside-toplevel

    key = t.cast(ec.EllipticCurvePrivateKey, serialization.load_pem_private_key(key_pem, None))
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def ensure_certificate(domains: list[str], chain_path: str, key_path: str, account_key_path: str, webroot: str,
                       directory_url: str, *, ca_bundle: str = "", email: str = "", renew_days: int = 30,
                       force: bool = False, check_mode: bool = False, timeout: float = 90) -> CertificateState:
    """Issue (or renew) the certificate through HTTP-01: the challenge files go into the webroot the proxy serves."""
    reason = why_issue(load_chain(chain_path), domains, renew_days, force)
    if not reason or check_mode:
        return state_of(chain_path, bool(reason), reason or "the certificate is good")
    try:
        from acme import challenges, client, errors, messages  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise LifeboatError(f"ACME issuance needs the Python package acme (python3-acme on Debian): {exc}") from exc
    account_key = load_account_key(account_key_path, check_mode)
    written: list[str] = []
    try:
        # verify_ssl goes to requests' verify=, which takes a CA file too (typed bool in acme).
        network = client.ClientNetwork(account_key, user_agent="lifeboat.ops",
                                       verify_ssl=ca_bundle or True)  # type: ignore[arg-type]
        acme = client.ClientV2(client.ClientV2.get_directory(directory_url, network), network)
        registration = messages.NewRegistration.from_data(email=email or None, terms_of_service_agreed=True)
        try:
            network.account = acme.new_account(registration)
        except errors.ConflictError as exc:  # the key has an account already: use it
            network.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
        key_pem = new_key_pem()
        order = acme.new_order(make_csr(key_pem, domains))
        for authorization in order.authorizations:
            if authorization.body.status == messages.STATUS_VALID:
                continue
            challenge = next((c for c in authorization.body.challenges if isinstance(c.chall, challenges.HTTP01)),
                             None)
            if challenge is None:
                raise LifeboatError(f"the ACME server offers no HTTP-01 challenge for "
                                    f"{authorization.body.identifier.value}")
            response, validation = challenge.response_and_validation(account_key)
            if not challenge.chall.path.startswith(CHALLENGE_PREFIX):  # the one place nginx serves them from
                raise LifeboatError(f"unexpected HTTP-01 path {challenge.chall.path}")
            token_path = os.path.join(webroot, challenge.chall.path.removeprefix("/"))
            os.makedirs(os.path.dirname(token_path), mode=0o755, exist_ok=True)
            write(Planned(token_path, validation.encode(), mode=0o644), validation.encode())
            written.append(token_path)
            acme.answer_challenge(challenge, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
        order = acme.poll_and_finalize(order, deadline=deadline)
    except LifeboatError:
        raise
    except Exception as exc:
        raise LifeboatError(f"ACME issuance for {', '.join(domains)} from {directory_url} failed: "
                            f"{type(exc).__name__}: {describe_acme_error(exc)}") from exc
    finally:
        for path in written:
            try:
                os.unlink(path)
            except OSError:
                pass
    save(chain_path, key_path, order.fullchain_pem.encode(), key_pem)
    return state_of(chain_path, True, reason)


def describe_acme_error(exc: Exception) -> str:
    """One line: a failed validation names the challenge's own error (e.g. the 404 the ACME server got)."""
    failed = getattr(exc, "failed_authzrs", None)
    if failed:
        details = []
        for authorization in failed:
            for challenge in authorization.body.challenges:
                if challenge.error is not None:
                    details.append(f"{authorization.body.identifier.value}: {challenge.error.detail}")
        if details:
            return "; ".join(details)
    return str(exc) or repr(exc)
