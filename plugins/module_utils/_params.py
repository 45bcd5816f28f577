# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Option pieces shared by the modules' argument specs (``*_options()``), and their translation into library
requests: the engine-free part.

Plain dicts and functions: connection options are declared once per engine (like community.postgresql's
postgres_common_argument_spec), never per module; each engine's own are in _postgres_module and _mongo_module, so
that a module packs and imports the code of its own engine only (Ansible sends every module_util a module imports).
"""

from __future__ import annotations

import os
import typing as t

from . import _catalog, _manifest, _signing
from ._archive import ArchiveOptions, resolve_archive
from ._clients import ContainerClient, HostClient, client_for
from ._codecs import COMPRESSIONS, Decryption, Encryption
from ._common import LifeboatError
from ._manifest import default_job
from ._module_frame import Outcome, Run


def login_options() -> dict[str, t.Any]:
    """What both engines take to connect and log in."""
    return {
        "login_uri": {"type": "str", "no_log": True},
        "login_host": {"type": "str", "aliases": ["host"]},
        "login_port": {"type": "int", "aliases": ["port"]},
        "login_user": {"type": "str", "aliases": ["user"]},
        "login_password": {"type": "str", "no_log": True},
        "login_password_file": {"type": "path", "no_log": False},
        "connect_timeout": {"type": "int", "default": 10},
    }


# How a restore module is told its archive (with restore_archive_options's options).
RESTORE_ARCHIVE_RULES: dict[str, t.Any] = {
    "mutually_exclusive": [["archive", "destination"]],
    "required_one_of": [["archive", "destination"]],
    "required_together": [["destination", "job"]],
}

CONNECTION_EXCLUSIVE = [
    ["login_uri", "login_host"],
    ["login_uri", "login_user"],
    ["login_password", "login_password_file"],
]


def dump_archive_options() -> dict[str, t.Any]:
    return {
        "destination": {"type": "path", "required": True},
        "job": {"type": "str"},
        "compression": {"type": "str", "default": "zstd", "choices": list(COMPRESSIONS)},
        "compression_level": {"type": "int"},
        "encryption_recipients": {"type": "list", "elements": "str", "default": []},
        "encryption_recipients_files": {"type": "list", "elements": "path", "default": []},
        "encryption_passphrase_file": {"type": "path", "no_log": False},
        "signing_key_file": {"type": "path", "no_log": False},
    }


def decryption_options() -> dict[str, t.Any]:
    """How archives are decrypted, and whose signature they must carry: the options :func:`decryption` and
    :func:`trust` read."""
    return {
        "age_identity_files": {"type": "list", "elements": "path", "default": [], "no_log": False},
        "age_passphrase_file": {"type": "path", "no_log": False},
        **trust_options(),
    }


def trust_options() -> dict[str, t.Any]:
    return {
        "trusted_signers": {"type": "list", "elements": "str", "default": []},
        "allow_unsigned": {"type": "bool", "default": False},
        # The key this host signs with: its public half is trusted when trusted_signers is empty.
        "signing_key_file": {"type": "path", "no_log": False},
    }


def restore_archive_options() -> dict[str, t.Any]:
    """The archive a restore reads: ``archive``, or the one :func:`restore_archive` chooses from a destination."""
    return {
        "archive": {"type": "path"},
        "destination": {"type": "path"},
        "job": {"type": "str"},
        "select": {"type": "str", "default": "newest_verified", "choices": list(_catalog.RESTORE_SELECTIONS)},
        **decryption_options(),
        "overwrite": {"type": "bool", "default": False},
        "safety_dump_dir": {"type": "path"},
    }


class ChosenArchive(t.NamedTuple):
    path: str
    note: str | None  # a warning: the path given was the archive's manifest, or verification records were ignored
    reason: str | None  # why this archive, when it was chosen from a destination


def restore_archive(params: dict[str, t.Any]) -> ChosenArchive:
    """The archive a restore module reads: the one given, or the one the catalog chooses from a destination."""
    if params.get("archive"):
        path, note = resolve_archive(params["archive"])
        return ChosenArchive(path, note, None)
    if not params.get("job"):  # a job given as null passes the module's required_together
        raise LifeboatError("give job with destination: the job whose archive to restore")
    archive, reason, ignored = _catalog.choose_for_restore(params["destination"], params["job"],
                                                           params.get("select") or "newest_verified", trust(params))
    return ChosenArchive(archive.path, "; ".join(ignored) or None, reason)


def option_or(params: dict[str, t.Any], name: str, default: t.Any) -> t.Any:
    """``params[name]``, or ``default`` only when it is missing or None: a given 0 or "" stays, for the request's own
    check to refuse (``params.get(name) or default`` turned jobs: 0 into 1, silently)."""
    value = params.get(name)
    return default if value is None else value


def check_place(params: dict[str, t.Any]) -> None:
    """A container's clients reach its server at the container's own address: a login_host beside it would send
    them (and this host's side) somewhere else, silently, so one of the two must go."""
    if params.get("container") and params.get("login_host"):
        raise LifeboatError(f"give either container ({params['container']}: its clients connect to the server at the "
                            f"container's own address) or login_host ({params['login_host']}), not both")


def place(params: dict[str, t.Any]) -> HostClient | ContainerClient:
    """Where the job's clients run: the container it names, or this host."""
    check_place(params)
    return client_for(params.get("container"))


def container_defaults(params: dict[str, t.Any], place: HostClient | ContainerClient,
                       names: dict[str, t.Any]) -> dict[str, t.Any]:
    """Login options a container defines for itself (the official images' variables), where none are given; a
    container without the engine's client (``names["tool"]``) is not that engine's server, said before anything
    connects (it was a bare "connection refused" at its address)."""
    if not isinstance(place, ContainerClient):
        return {}
    if not place.candidates(names["tool"]):
        raise LifeboatError(f"container {place.name} (image {place.image}) is not a {names['engine']} server's "
                            f"container: it has no {names['tool']}; give the container that runs {names['engine']}")
    if params.get("login_uri"):
        return {}
    environment = place.environment
    defaults: dict[str, t.Any] = {}
    if not params.get("login_host") and not params.get("login_unix_socket"):
        if place.address is None:
            raise LifeboatError(f"{place.where} has no network address this host can reach; give login_host")
        defaults["login_host"] = place.address
    # The server's own port, never the caller's: the host's side would otherwise take a PGPORT from this process's
    # environment (the client in the container sees none) while every message named the default port.
    if "default_port" in names and not params.get("login_port") and not params.get("login_unix_socket"):
        port = environment.get(names.get("port", ""), "")
        defaults["login_port"] = int(port) if port.isdigit() else names["default_port"]
    if not params.get("login_user"):
        defaults["login_user"] = environment.get(names["user"]) or names["default_user"]
    if not params.get("login_password") and not params.get("login_password_file") and environment.get(names["password"]):
        defaults["login_password"] = environment[names["password"]]
    return defaults


def archive_options(params: dict[str, t.Any], database: str | None) -> ArchiveOptions:
    return ArchiveOptions(
        destination=params["destination"],
        job=params.get("job") or default_job(database),
        compression=params.get("compression") or "zstd",
        compression_level=params.get("compression_level"),
        encryption=Encryption(
            recipients=tuple(params.get("encryption_recipients") or ()),
            recipients_files=tuple(params.get("encryption_recipients_files") or ()),
            passphrase_file=params.get("encryption_passphrase_file"),
        ),
        signing_key_file=params.get("signing_key_file"),
    )


def decryption(params: dict[str, t.Any]) -> Decryption:
    return Decryption(
        identity_files=tuple(params.get("age_identity_files") or ()),
        passphrase_file=params.get("age_passphrase_file"),
    )


def trust(params: dict[str, t.Any]) -> _signing.Trust:
    return _signing.resolve_trust(params.get("trusted_signers") or (), bool(params.get("allow_unsigned")),
                                  params.get("signing_key_file"))


def record_key(params: dict[str, t.Any]) -> str | None:
    """The key a verify signs its records with: ``signing_key_file``, or this host's default key when it exists."""
    if params.get("signing_key_file"):
        return str(params["signing_key_file"])
    default = _signing.default_key_file()
    return default if os.path.isfile(default) else None


def signature_status(archive_path: str, trust: _signing.Trust) -> str:
    """How the archive a restore read passed its signature check, for its result: V(ok), or with ``allow_unsigned``
    perhaps "unsigned (allowed)" or "untrusted (allowed)" (the restore already refused anything else)."""
    if not trust.allow_unsigned:
        return _signing.SIGNED
    manifest = _manifest.load(archive_path)
    return _signing.check(_manifest.manifest_path(archive_path), manifest, trust)


def signature_result(run: Run, archive_path: str, trust: _signing.Trust) -> dict[str, t.Any]:
    """What a restore's result says of the archive's signature (and a warning when allow_unsigned let it in)."""
    status = signature_status(archive_path, trust)
    if status != _signing.SIGNED:
        what = "carries no signature" if status == _signing.UNSIGNED_ALLOWED else "is signed by no trusted key"
        run.warn(f"{archive_path} {what}: restored only because allow_unsigned was given for this run")
    return {"signature": status, "allow_unsigned": trust.allow_unsigned}


def dump_result(result: dict[str, t.Any], run: Run) -> dict[str, t.Any]:
    """What a dump module returns, read from the manifest it wrote (the archive core's result), and who signed it: the
    public key (also written beside the archives as :data:`_signing.PUBLIC_KEY_NAME`), for other hosts'
    ``trusted_signers``."""
    manifest = result["manifest_data"]
    destination = os.path.dirname(result["archive"])
    if result["signing_key_created"]:
        run.warn(_signing.key_created_note(result["signing_key"], destination))
    return {
        "signer": manifest.get("signer"),
        "signer_file": os.path.join(destination, _signing.PUBLIC_KEY_NAME),
        "signing_key_file": result["signing_key"],
        "signing_key_created": result["signing_key_created"],
        "archive": result["archive"],
        "manifest": result["manifest"],
        "sha256": manifest["archive"]["sha256"],
        "size": manifest["archive"]["size"],
        "plain_size": manifest["archive"]["plain_size"],
        "counts": manifest["counts"],
        "duration_seconds": manifest["duration_seconds"],
        "restore_commands": manifest["restore_commands"],
    }


def safety_dump_options(params: dict[str, t.Any]) -> ArchiveOptions | None:
    """Where a restore first dumps what it is about to overwrite (named DATABASE-before-restore-...)."""
    if not params.get("safety_dump_dir"):
        return None
    return ArchiveOptions(destination=params["safety_dump_dir"], job="before-restore")


def restore_task(run: Run, engine: t.Any, build: t.Callable[[str], t.Any],
                 planned: t.Callable[[dict[str, t.Any]], dict[str, t.Any]],
                 restored: t.Callable[[dict[str, t.Any]], dict[str, t.Any]]) -> Outcome:
    """A restore module's work, the same for every engine: choose the archive, plan (all check mode does), restore.

    ``engine`` is ``_postgres_restore`` or ``_mongo_restore`` (passed in: this module imports neither); ``build(archive)`` its
    RestoreRequest; ``planned`` and ``restored`` pick what the module returns of the plan and of the restore (the
    restore's values win where both name a key).
    """
    archive, note, reason = restore_archive(run.params)
    if note:
        run.warn(note)
    request = build(archive)
    # Check mode reads the archive whole (all it can prove); a restore reads it once, checking while it restores.
    plan = engine.plan_restore(request, read_archive=run.check_mode)
    common = {"archive": archive, **({"archive_reason": reason} if reason else {}),
              **signature_result(run, archive, request.trust), **planned(plan)}
    if run.check_mode:
        return Outcome(changed=True, result=common)
    result = engine.restore(request, plan)
    for warning in result["warnings"]:
        run.warn(warning)
    return Outcome(changed=True, result={**common, **restored(result)})
