# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""cloudflared's ingress rules, checked the way cloudflared checks them, and then a little further.

``validate()`` accepts and refuses exactly what ``cloudflared tunnel --config F ingress validate`` does, and
``Ingress.match()`` picks the rule that ``cloudflared tunnel --config F ingress rule URL`` picks (both held to
tests/unit/fixtures/cloudflared_ingress_verdicts.json, answers of the real cloudflared). ``check()`` adds what
cloudflared lets through and users get hurt by: a rule that an earlier rule shadows (a wildcard before a specific
hostname: the specific one never gets a request), and a service scheme cloudflared would treat as a raw TCP
origin because it does not know it (``htp://``). Every refusal is one line, and names the mistake where
cloudflared's own words would not (a misspelled key, a service without a scheme). What cloudflared accepts and then
ignores (an unknown key, an HTTP status outside 100-599) ``check()`` returns as warnings: the verdict stays cloudflared's.

Used by the cloudflared_ingress module (the cloudflare_tunnel role) before anything on a host changes, and free of
Ansible so that the host command and the deploy gate can use it too.
"""

from __future__ import annotations

import json
import re
import typing as t
import urllib.parse
from dataclasses import dataclass, replace
from difflib import get_close_matches

from ._common import LifeboatError

# Services cloudflared knows by name, and the URL schemes it proxies as themselves (anything else it treats as a
# raw TCP origin: a typo like htp:// validates there, and fails on the first request).
NAMED_SERVICES = ("hello_world", "hello-world", "bastion", "socks-proxy", "warp-routing")
PREFIX_SERVICES = ("unix:", "unix+tls:", "http_status:")
URL_SCHEMES = ("http", "https", "ws", "wss", "tcp", "ssh", "rdp", "smb")
# The keys cloudflared reads (config.UnvalidatedIngressRule, OriginRequestConfig, AccessConfig at the recorded commit);
# it skips any other, and `ingress validate` says no more than "unused keys detected".
RULE_KEYS = ("hostname", "path", "service", "originRequest")
ORIGIN_REQUEST_KEYS = ("connectTimeout", "tlsTimeout", "tcpKeepAlive", "noHappyEyeballs", "keepAliveConnections",
                       "keepAliveTimeout", "httpHostHeader", "originServerName", "matchSNItoHost", "caPool",
                       "noTLSVerify", "disableChunkedEncoding", "bastionMode", "proxyAddress", "proxyPort", "proxyType",
                       "ipRules", "http2Origin", "access")
ACCESS_KEYS = ("required", "teamName", "audTag", "environment")
# What a service without a scheme is told to start with (cloudflared's own words are Go's URL parser's).
SCHEME_HINT = "http://, https://, tcp://, ssh://, unix:, http_status:NNN ..."
# originRequest keys whose YAML types cloudflared's config parser enforces (a wrong one fails the whole file).
_DURATIONS = ("connectTimeout", "tlsTimeout", "tcpKeepAlive", "keepAliveTimeout", "proxyConnectTimeout")
_BOOLEANS = ("noTLSVerify", "disableChunkedEncoding", "bastionMode", "noHappyEyeballs", "http2Origin", "matchSNItoHost")
_INTEGERS = ("keepAliveConnections", "proxyPort")
_STRINGS = ("httpHostHeader", "originServerName", "caPool", "proxyAddress", "proxyType")
_GO_DURATION = re.compile(r"[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)")
# Python's re accepts what Go's RE2 refuses: lookaround and backreferences.
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]|\(\?P=")


class IngressError(LifeboatError):
    """An ingress configuration that cloudflared (or our stricter check) refuses, in one line."""


@dataclass(frozen=True)
class Rule:
    """One validated ingress rule, matched as cloudflared matches it."""

    index: int  # 0-based, as in the verdicts; messages say "rule #index+1" as cloudflared does
    hostname: str
    path: str
    service: str
    punycode: str  # the hostname as cloudflared's IDNA lookup writes it (lower case), when different
    regex: re.Pattern[str] | None

    @property
    def catch_all(self) -> bool:
        return self.hostname in ("", "*") and not self.path

    def label(self) -> str:
        where = self.hostname or "*"
        return f"rule #{self.index + 1} ({where}{f' path {self.path}' if self.path else ''} -> {self.service})"

    def matches(self, host: str, path: str) -> bool:
        host_ok = self.hostname in ("", "*") or _match_host(self.hostname, host)
        host_ok = host_ok or bool(self.punycode and _match_host(self.punycode, host))
        return host_ok and (self.regex is None or self.regex.search(path) is not None)


@dataclass(frozen=True)
class Ingress:
    rules: tuple[Rule, ...]
    warnings: tuple[str, ...] = ()  # what check() found that cloudflared accepts and ignores, one line each

    def match(self, url: str) -> int:
        """The index of the rule cloudflared sends ``url`` to (the last rule when none matches)."""
        host, path = request_target(url)
        for rule in self.rules:
            if rule.matches(host, path):
                return rule.index
        return len(self.rules) - 1

    def probe_urls(self) -> list[tuple[str, int]]:
        """For each rule with a plain hostname and no path: https://HOST/ and the rule it must select.

        These are the URLs to put to ``cloudflared ... ingress rule``; a wildcard is probed with a made-up label."""
        probes = []
        for rule in self.rules:
            if rule.catch_all or rule.path or not rule.hostname:
                continue
            host = "lifeboat-probe" + rule.hostname[1:] if rule.hostname.startswith("*.") else rule.hostname
            probes.append((f"https://{host}/", self.match(f"https://{host}/")))
        return probes


def _match_host(rule_host: str, request_host: str) -> bool:
    if rule_host == request_host:
        return True
    return rule_host.startswith("*.") and request_host.endswith(rule_host[1:])


def request_target(url: str) -> tuple[str, str]:
    """(hostname, path) of a request URL as Go's url.Parse gives them: the host's case kept, no port."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    host = netloc[1:].partition("]")[0] if netloc.startswith("[") else netloc.partition(":")[0]
    if not host:
        raise IngressError(f"{url} is malformed and doesn't have a hostname")
    return host, urllib.parse.unquote(parts.path)


def _has_port(hostname: str) -> bool:
    """Whether Go's net.SplitHostPort accepts ``hostname`` (cloudflared refuses a rule hostname it does)."""
    colon = hostname.rfind(":")
    if colon < 0:
        return False
    if hostname.startswith("["):
        end = hostname.find("]")
        if end < 0 or (end + 1 != colon):
            return False
        rest_open, rest_close = hostname[1:].find("["), hostname[end + 1:].find("]")
        return rest_open < 0 and rest_close < 0
    return ":" not in hostname[:colon] and "[" not in hostname and "]" not in hostname


def _punycode(hostname: str) -> str:
    """cloudflared's idna.Lookup.ToASCII of a rule hostname: lower case, non-ASCII labels as xn--."""
    try:
        labels = [label.encode("idna").decode("ascii") if label else label for label in hostname.lower().split(".")]
    except UnicodeError:
        return ""  # cloudflared ignores a hostname IDNA cannot write, and matches the hostname as given
    punycode = ".".join(labels)
    return punycode if punycode != hostname else ""


def _needs_scheme(service: t.Any) -> str:
    if service in ("", None):
        return f"service is missing; give one with a scheme ({SCHEME_HINT})"
    example = f"127.0.0.1:{service}" if str(service).isdigit() else service  # a port alone
    return f"service {service} needs a scheme ({SCHEME_HINT}), e.g. http://{example}"


def _service_problem(service: t.Any) -> str | None:
    """cloudflared's verdict on a rule's service (None when it accepts it), in our words when the scheme is missing."""
    if not isinstance(service, str):
        return _needs_scheme(service)  # a YAML number (service: 8080), which cloudflared reads as the text "8080"
    if service.startswith(("unix:", "unix+tls:")) or service in NAMED_SERVICES:
        return None
    if "://" not in service and not service.startswith("http_status:"):
        return _needs_scheme(service)  # cloudflared: "X is an invalid address", or Go's "first path segment" message
    if service.startswith("http_status:"):
        code = service[len("http_status:"):]
        if not re.fullmatch(r"[+-]?\d+", code):
            return f'invalid HTTP status code: strconv.Atoi: parsing "{code}": invalid syntax'
        if not 100 <= int(code) <= 999:
            return f"invalid HTTP status code: {int(code)}"
        return None
    scheme, colon, rest = service.partition(":")
    if not colon or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        if colon and ":" in service.partition("/")[0] and not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
            return f'parse "{service}": first path segment in URL cannot contain colon'
        return f"{service} is an invalid address, please make sure it has a scheme and a hostname"
    try:
        parts = urllib.parse.urlsplit(service)
        _port = parts.port
    except ValueError as exc:
        return f'parse "{service}": {exc}'
    if not rest.startswith("//") or not parts.hostname:
        return f"{service} is an invalid address, please make sure it has a scheme and a hostname"
    if parts.path:
        return (f"{service} is an invalid address, ingress rules don't support proxying to a different path on the "
                "origin service. The path will be the same as the eyeball request's path")
    return None


def _origin_request_problem(settings: t.Any, where: str) -> str | None:
    """What cloudflared's YAML decoding refuses in originRequest (a type it cannot take); unknown keys pass."""
    if settings is None:
        return None
    if not isinstance(settings, dict):
        return f"{where}: originRequest must be a mapping"
    for key, value in settings.items():
        if key in _DURATIONS and not (isinstance(value, str) and _GO_DURATION.fullmatch(value)):
            return f"{where}: originRequest.{key} {value!r} is not a duration (like 30s, 1m30s)"
        if key in _BOOLEANS and not isinstance(value, bool):
            return f"{where}: originRequest.{key} must be true or false, not {value!r}"
        if key in _INTEGERS and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{where}: originRequest.{key} must be a whole number, not {value!r}"
        if key in _STRINGS and not isinstance(value, str):
            return f"{where}: originRequest.{key} must be a string, not {value!r}"
    access = settings.get("access")
    if access is not None:
        if not isinstance(access, dict):
            return f"{where}: originRequest.access must be a mapping"
        if access.get("required") and (not access.get("teamName")) != (not access.get("audTag")):
            return f"{where}: originRequest.access needs both teamName and audTag, or neither"
    return None


def validate(config: t.Any) -> Ingress:
    """The ingress of a parsed config file, refused exactly where ``cloudflared ingress validate`` refuses it."""
    if not isinstance(config, dict):
        raise IngressError("the config file must be a mapping (tunnel, credentials-file, ingress)")
    problem = _origin_request_problem(config.get("originRequest"), "the top level")
    if problem:
        raise IngressError(problem)
    entries = config.get("ingress") or []
    if not isinstance(entries, list) or not entries:
        raise IngressError("the config file doesn't contain any ingress rules")
    rules = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise IngressError(f"rule #{index + 1} must be a mapping with service (and hostname, path)")
        try:
            rules.append(_validate_rule(index, entry, last=index == len(entries) - 1))
        except IngressError as refused:
            unknown = _unknown_keys(entry, RULE_KEYS)
            if not unknown:
                raise
            # cloudflared skipped the key and refused what was left: the key is the mistake to name.
            reason = str(refused).removeprefix(f"rule #{index + 1}: ")
            raise IngressError(f"rule #{index + 1} has {_unknown_key_text(unknown, RULE_KEYS, 'a rule')}, which "
                               f"cloudflared skips, and then refuses the rule: {reason}") from None  # reason says it all
    return Ingress(tuple(rules))


def _validate_rule(index: int, entry: dict[str, t.Any], last: bool) -> Rule:
    """One rule as cloudflared's ParseIngress reads it: IngressError where it refuses it."""
    problem = _origin_request_problem(entry.get("originRequest"), f"rule #{index + 1}")
    if problem:
        raise IngressError(problem)
    hostname, path, service = (entry.get(key) or "" for key in ("hostname", "path", "service"))
    if not isinstance(hostname, str) or not isinstance(path, str):
        raise IngressError(f"rule #{index + 1}: hostname and path must be strings")
    problem = _service_problem(service)
    if problem:
        raise IngressError(f"rule #{index + 1}: {problem}")
    if _has_port(hostname):
        raise IngressError(f"rule #{index + 1}: hostname {hostname!r} cannot contain a port")
    if hostname.rfind("*") > 0:
        raise IngressError(
            f"rule #{index + 1}: hostname {hostname!r}: hostname patterns can have at most one wildcard character "
            '("*") and it can only be used for subdomains, e.g. "*.example.com"')
    catch_all = hostname in ("", "*") and not path
    if last and not catch_all:
        raise IngressError(
            f"the last ingress rule (#{index + 1}) must match all URLs (no hostname and no path), "
            "e.g. {service: http_status:404}")
    if catch_all and not last:
        raise IngressError(
            f"rule #{index + 1} matches every hostname, so the rules after it would never be used: "
            "the catch-all must be the last rule")
    regex = None
    if path:
        if _NOT_RE2.search(path):
            raise IngressError(f"rule #{index + 1}: path {path!r} uses lookaround or a backreference, "
                               "which cloudflared's regular expressions (RE2) do not have")
        try:
            regex = re.compile(path)
        except re.error as exc:
            raise IngressError(f"rule #{index + 1} has an invalid regex {path!r}: {exc}") from exc
    return Rule(index, hostname, path, service, "" if catch_all else _punycode(hostname), regex)


def _unknown_keys(given: t.Any, known: tuple[str, ...]) -> list[str]:
    return [str(key) for key in given if key not in known] if isinstance(given, dict) else []


def _unknown_key_text(keys: list[str], known: tuple[str, ...], what: str) -> str:
    """E.g. "the unknown key 'hostnme' (did you mean hostname? a rule takes hostname, path, service, originRequest)"."""
    names = ", ".join(repr(key) for key in keys)
    guesses = [match for key in keys for match in get_close_matches(key, known, n=1, cutoff=0.6)]
    guess = f"did you mean {', '.join(guesses)}? " if guesses else ""
    return f"the unknown key{'s' if len(keys) > 1 else ''} {names} ({guess}{what} takes {', '.join(known)})"


def _ignored(config: dict[str, t.Any], ingress: Ingress) -> list[str]:
    """What cloudflared accepts without using it: unknown keys of rules, originRequest and access; HTTP statuses that
    are not HTTP's (cloudflared takes 100-999)."""
    found = []
    places = [("the top level", config.get("originRequest"))]
    for index, entry in enumerate(config.get("ingress") or []):
        unknown = _unknown_keys(entry, RULE_KEYS)
        if unknown:
            found.append(f"{ingress.rules[index].label()}: cloudflared ignores "
                         f"{_unknown_key_text(unknown, RULE_KEYS, 'a rule')}")
        places.append((f"rule #{index + 1}", entry.get("originRequest")))
    for where, settings in places:
        unknown = _unknown_keys(settings, ORIGIN_REQUEST_KEYS)
        if unknown:
            found.append(f"{where}: cloudflared ignores in originRequest "
                         f"{_unknown_key_text(unknown, ORIGIN_REQUEST_KEYS, 'originRequest')}")
        unknown = _unknown_keys(settings.get("access") if isinstance(settings, dict) else None, ACCESS_KEYS)
        if unknown:
            found.append(f"{where}: cloudflared ignores in originRequest.access "
                         f"{_unknown_key_text(unknown, ACCESS_KEYS, 'access')}")
    for rule in ingress.rules:
        if rule.service.startswith("http_status:") and not 100 <= int(rule.service[len("http_status:"):]) <= 599:
            found.append(f"{rule.label()}: {rule.service[len('http_status:'):]} is not an HTTP status (100-599), "
                         "though cloudflared takes up to 999; give e.g. http_status:404")
    return found


def _covers(earlier: Rule, later: Rule) -> bool:
    """Whether every request ``later`` matches is matched by ``earlier`` first."""
    if earlier.path and earlier.path != later.path:
        return False  # regular expressions: only an identical one is known to cover
    wide, narrow = (earlier.punycode or earlier.hostname).lower(), (later.punycode or later.hostname).lower()
    if wide in ("", "*"):
        return True
    if wide == narrow:
        return True
    return wide.startswith("*.") and narrow.endswith(wide[1:])


def check(config: t.Any) -> Ingress:
    """``validate()`` and then what cloudflared lets through: shadowed rules and service schemes it does not know
    refused, what it ignores (unknown keys, HTTP statuses past 599) in ``warnings``."""
    ingress = validate(config)
    for rule in ingress.rules:
        service = rule.service
        if not (service.startswith(PREFIX_SERVICES) or service in NAMED_SERVICES):
            scheme = service.partition(":")[0].lower()
            if scheme not in URL_SCHEMES:
                raise IngressError(
                    f"{rule.label()}: unknown service scheme {scheme!r}; use one of "
                    f"{', '.join(URL_SCHEMES)}, unix:, unix+tls:, http_status:, {', '.join(NAMED_SERVICES)}")
    for later in ingress.rules[:-1]:
        for earlier in ingress.rules[:later.index]:
            if _covers(earlier, later):
                raise IngressError(
                    f"{later.label()} is shadowed by {earlier.label()}: every request for it matches the earlier "
                    "rule first; put the more specific rule first or remove one")
    return replace(ingress, warnings=tuple(_ignored(config, ingress)))


def load_yaml(text: str) -> t.Any:
    """A config file's text as data; a YAML error in one line (needs PyYAML, which Ansible's controller has)."""
    import yaml  # pylint: disable=import-outside-toplevel  # only this helper needs it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise IngressError(f"the config file is not valid YAML: {' '.join(str(exc).split())}") from exc


def render_yaml(value: t.Any, indent: int = 0) -> str:
    """``value`` as block YAML whose scalars are JSON (a JSON scalar is valid YAML): no library needed."""
    pad = " " * indent
    if isinstance(value, dict) and value:
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:\n{render_yaml(item, indent + 2)}")
            else:
                lines.append(f"{pad}{key}: {render_yaml(item).strip()}\n")
        return "".join(lines)
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            body = render_yaml(item, indent + 2)
            lines.append(f"{pad}- {body[indent + 2:]}" if isinstance(item, (dict, list)) and item else f"{pad}- {body.strip()}\n")
        return "".join(lines)
    if isinstance(value, (dict, list)):
        return f"{pad}{json.dumps(value)}\n"
    return f"{pad}{json.dumps(value, ensure_ascii=False)}\n"
