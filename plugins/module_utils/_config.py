# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The host command's configuration: one YAML file of backup jobs, checked as strictly as a module's arguments.

A job takes the same options as the dump module of its engine (``login_host``, ``database``, ``format``,
``destination``, ``encryption_recipients``...), checked against the very argument specs the modules use, plus
``engine`` and the sections ``verify``, ``retention``, ``status`` and ``schedule``. ``defaults`` holds options
every job inherits. Passwords come only from files (``login_password_file``), never from the config itself.
"""

from __future__ import annotations

import os
import re
import typing as t
from dataclasses import dataclass, field

from . import _codecs, _manifest, _offsite, _params, _retention, _signing, _sources, _status, _verify
from ._common import LifeboatError, read_secret_file

ENGINES = _sources.NAMES
SECTIONS = ("verify", "retention", "status", "schedule", "offsite")
TOP_LEVEL = ("defaults", "jobs", "metrics_file")

VERIFY_OPTIONS: dict[str, t.Any] = {
    "enabled": {"type": "bool", "default": True},
    "level": {"type": "str", "default": _verify.AUTO, "choices": [_verify.AUTO, *_verify.LEVELS]},
    "select": {"type": "str", "default": "newest", "choices": list(_verify.SELECTIONS)},
    **_params.decryption_options(),
}
RETENTION_OPTIONS: dict[str, t.Any] = {"enabled": {"type": "bool", "default": True}, **_retention.policy_options()}
STATUS_OPTIONS: dict[str, t.Any] = _status.status_options()
SCHEDULE_OPTIONS: dict[str, t.Any] = {  # read by the scheduling role; kept here so a typo is caught everywhere
    "on_calendar": {"type": "str", "default": "daily"},
    "randomized_delay": {"type": "str", "default": "15m"},
}
# The off-site copy of each verified archive (lifeboat copy, after verify and before prune), with the remote prune
# mirroring retention (remote_keep: a policy the bucket keeps in addition) and status's max delay.
OFFSITE_OPTIONS: dict[str, t.Any] = {
    "enabled": {"type": "bool", "default": False},
    **{key: {**item, "required": False} for key, item in _offsite.remote_options().items()},
    "remote_keep": {"type": "dict"},
    "max_delay_hours": {"type": "float", "default": 26.0},
}
_SECTION_OPTIONS = {"verify": VERIFY_OPTIONS, "retention": RETENTION_OPTIONS, "status": STATUS_OPTIONS,
                    "schedule": SCHEDULE_OPTIONS, "offsite": OFFSITE_OPTIONS}
_FORBIDDEN = {"login_password": "passwords do not belong in the config: put it in a 0600 file and give "
                                "login_password_file"}


def engine_options(engine: str) -> dict[str, t.Any]:
    """The options a job of ``engine`` takes: those of the engine's dump module."""
    return _sources.get(engine).job_options()


@dataclass
class Job:
    name: str
    engine: str
    params: dict[str, t.Any]  # module-shaped: what the dump module would receive
    verify: dict[str, t.Any] = field(default_factory=dict)
    retention: dict[str, t.Any] = field(default_factory=dict)
    status: dict[str, t.Any] = field(default_factory=dict)
    schedule: dict[str, t.Any] = field(default_factory=dict)
    offsite: dict[str, t.Any] = field(default_factory=dict)

    @property
    def source(self) -> _sources.Source:
        return _sources.get(self.engine)

    @property
    def destination(self) -> str:
        return self.params["destination"]

    @property
    def database(self) -> str | None:
        return self.params.get("database")

    @property
    def encrypted(self) -> bool:
        return bool(self.params.get("encryption_recipients") or self.params.get("encryption_recipients_files")
                    or self.params.get("encryption_passphrase_file"))

    def dump_request(self) -> t.Any:
        """What ``lifeboat backup`` hands the engine (validated): the module's own request."""
        request = self.source.dump_request(self.params)
        request.validate()
        return request

    def decryption(self) -> _codecs.Decryption:
        """What verification opens archives with: the verify section's, or the passphrase the job encrypts with."""
        return _params.decryption({
            **self.verify,
            "age_passphrase_file": self.verify.get("age_passphrase_file")
            or self.params.get("encryption_passphrase_file"),
        })

    def trust(self) -> _signing.Trust:
        """Whose signatures verification accepts: the verify section's trusted_signers and the public half of the
        key this job signs with (the job proves its own archives); _signing.resolve_trust decides."""
        return _signing.resolve_trust(self.verify.get("trusted_signers") or (), bool(self.verify.get("allow_unsigned")),
                                      self.params.get("signing_key_file"))

    def record_key(self) -> str | None:
        """The key verification signs its records with: the one this job signs its archives with."""
        return _params.record_key(self.params)

    def check_runnable(self, config_path: str) -> None:
        """Everything ``backup`` and ``verify`` read before they touch a server, read now: secret files, encryption,
        the dump request, what verification decrypts with. Raises the one-line error the run would give."""
        try:
            if self.retention["enabled"]:
                try:
                    _retention.Policy.from_options(self.retention)
                except LifeboatError as exc:
                    raise LifeboatError(f"retention: {exc} (or set retention: {{enabled: false}})") from None
            self.dump_request()
            self.trust()
            decryption = self.decryption()
            for path in decryption.identity_files:
                if not os.path.isfile(path):
                    raise LifeboatError(f"verify: age identity file {path} does not exist")
            if decryption.passphrase_file:
                read_secret_file(decryption.passphrase_file, "verify: passphrase")
            level = self.verify["level"]
            if self.verify["enabled"] and self.encrypted and level not in (_verify.AUTO, "checksum") and not (
                    decryption.identity_files or decryption.passphrase_file):
                raise LifeboatError(f"verify: level {level} reads the encrypted archives whole; give "
                                    "age_identity_files, or use level auto or checksum")
            if self.verify["enabled"] and level == "restore":
                self.source.connection(self.params)
        except LifeboatError as exc:
            raise LifeboatError(f"config {config_path}: job {self.name}: {exc}") from None


@dataclass
class Config:
    path: str
    jobs: dict[str, Job]
    metrics_file: str | None = None

    def job(self, name: str) -> Job:
        if name not in self.jobs:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise LifeboatError(f"{self.path} has no job '{name}' (jobs: {known})")
        return self.jobs[name]

    def selected(self, name: str | None) -> list[Job]:
        return [self.job(name)] if name else [self.jobs[key] for key in sorted(self.jobs)]


def load(path: str) -> Config:
    try:
        import yaml  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise LifeboatError("PyYAML is needed to read the config (python3-yaml on Debian and Ubuntu)") from exc
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise LifeboatError(f"config {path} does not exist") from None
    except OSError as exc:
        raise LifeboatError(f"cannot read config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise LifeboatError(f"config {path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict) or not data["jobs"]:
        raise LifeboatError(f"config {path} must be a mapping with a non-empty 'jobs' mapping")
    _unknown(path, "the top level", data, TOP_LEVEL)
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise LifeboatError(f"config {path}: defaults must be a mapping")
    jobs = {}
    for name, body in data["jobs"].items():
        if not isinstance(body, dict):
            raise LifeboatError(f"config {path}: job {name} must be a mapping")
        jobs[str(name)] = _job(path, str(name), {**defaults, **body}, defaults)
    metrics_file = data.get("metrics_file")
    if metrics_file is not None and (not isinstance(metrics_file, str) or not os.path.isabs(metrics_file)):
        raise LifeboatError(f"config {path}: metrics_file must be an absolute path")
    return Config(path=path, jobs=jobs, metrics_file=metrics_file)


def _unknown(path: str, where: str, data: dict[str, t.Any], known: t.Sequence[str]) -> None:
    for key in data:
        if key not in known:
            raise LifeboatError(f"config {path}: unknown key '{key}' in {where} (known: {', '.join(known)})")


def _job(path: str, name: str, body: dict[str, t.Any], defaults: dict[str, t.Any]) -> Job:
    where = f"job {name}"
    engine = body.get("engine")
    if engine not in ENGINES:
        raise LifeboatError(f"config {path}: {where} needs engine: {' or '.join(ENGINES)} (not {engine!r})")
    spec = engine_options(engine)
    options = {key: value for key, value in body.items() if key not in ("engine", *SECTIONS)}
    for key, reason in _FORBIDDEN.items():
        if key in options:
            raise LifeboatError(f"config {path}: {where}: {reason}")
    params = check_options(path, where, options, spec)
    params["job"] = params.get("job") or name
    if not params.get("destination"):
        raise LifeboatError(f"config {path}: {where} needs a destination (or one in defaults)")
    if params.get("login_uri") and uri_has_password(params["login_uri"]):
        raise LifeboatError(f"config {path}: {where}: login_uri holds a password, which does not belong in the "
                            "config: put it in a 0600 file, give login_password_file and leave it out of login_uri")
    sections = {}
    for section in SECTIONS:
        merged = {**(defaults.get(section) or {}), **(body.get(section) or {})}
        sections[section] = check_options(path, f"{where}: {section}", merged, _SECTION_OPTIONS[section])
    # What every run would refuse is refused here, once, for every command (``check`` included).
    try:
        _manifest.validate_destination(params["destination"])
        _manifest.validate_job_name(params["job"])
        _params.check_place(params)
    except LifeboatError as exc:
        raise LifeboatError(f"config {path}: {where}: {exc}") from None
    for section, validate in (("retention", _check_retention_values), ("status", _status.StatusOptions.from_options),
                              ("offsite", _check_offsite)):
        try:
            validate(sections[section])
        except LifeboatError as exc:
            raise LifeboatError(f"config {path}: {where}: {section}: {exc}") from None
    return Job(name=name, engine=engine, params=params, **sections)


def _check_offsite(offsite: dict[str, t.Any]) -> None:
    if offsite.get("enabled"):
        if not offsite.get("bucket"):
            raise LifeboatError("bucket is required when the off-site copy is enabled")
        _offsite.Remote.from_options(offsite)
        if offsite.get("remote_keep"):
            _retention.Policy.from_options(offsite["remote_keep"])


def _check_retention_values(retention: dict[str, t.Any]) -> None:
    """Wrong values (``keep_daily: -5``, ``keep_within: 3x``) are wrong for every command; an empty policy only
    stops prune, and ``check`` says so (Job.check_runnable)."""
    if any(retention.get(name) not in (None, "") for name in (*_retention.COUNT_OPTIONS, "keep_within")):
        _retention.Policy.from_options(retention)


def uri_has_password(uri: str) -> bool:
    """Whether a PostgreSQL or MongoDB connection string (URI or libpq keywords) carries a password."""
    _scheme, separator, rest = uri.partition("://")
    if not separator:  # libpq's keyword=value form
        return re.search(r"(^|\s)password\s*=", uri) is not None
    authority = re.split(r"[/?]", rest, maxsplit=1)[0]
    userinfo = authority.rpartition("@")[0]
    query = rest.partition("?")[2]
    return ":" in userinfo or re.search(r"(^|&)password=", query) is not None


def check_options(path: str, where: str, options: t.Any, spec: dict[str, t.Any]) -> dict[str, t.Any]:
    """Options checked against an Ansible-style argument spec (types, choices, aliases), defaults filled in."""
    if not isinstance(options, dict):
        raise LifeboatError(f"config {path}: {where} must be a mapping")
    aliases = {alias: key for key, item in spec.items() for alias in item.get("aliases", [])}
    result: dict[str, t.Any] = {}
    for raw_key, value in options.items():
        key = aliases.get(raw_key, raw_key)
        if key not in spec:
            raise LifeboatError(
                f"config {path}: {where}: unknown option '{raw_key}' (known: {', '.join(sorted(spec))})"
            )
        result[key] = _typed(path, f"{where}: {raw_key}", value, spec[key])
    for key, item in spec.items():
        if key not in result:
            default = item.get("default")
            result[key] = list(default) if isinstance(default, list) else default
    return result


def _typed(path: str, where: str, value: t.Any, item: dict[str, t.Any]) -> t.Any:
    kind = item.get("type", "str")
    if value is None:
        return None
    problem = None
    if kind == "list":
        if not isinstance(value, list):
            problem = "must be a list"
        else:
            return [_typed(path, where, element, {"type": item.get("elements", "str")}) for element in value]
    elif kind == "bool" and not isinstance(value, bool):
        problem = "must be true or false"
    elif kind == "int":
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            value = int(value)  # "5432", as Ansible's own argument checks take it and inventories often write it
        if isinstance(value, bool) or not isinstance(value, int):
            problem = "must be a whole number"
    elif kind == "float":
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)\s*", value):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problem = "must be a number"
        else:
            value = float(value)
    elif kind in ("str", "path"):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            problem = "must be a string"
        else:
            value = str(value)
            if kind == "path":
                value = os.path.expanduser(value)
    elif kind == "dict" and not isinstance(value, dict):
        problem = "must be a mapping"
    if problem is None and item.get("choices") and value not in item["choices"]:
        problem = f"must be one of {', '.join(map(str, item['choices']))}"
    if problem:
        raise LifeboatError(f"config {path}: {where} {problem} (got {value!r})")
    return value
