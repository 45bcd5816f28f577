# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""nginx sites for the reverse proxy: checked, rendered, and applied as one transaction.

A site (one app) becomes two files: ``lifeboat-NAME.conf`` in the sites directory (server blocks, rate-limit
zone, WebSocket map) and ``NAME.upstream`` in the include directory (the upstream block, the only thing the
blue-green switch rewrites). ``apply`` writes every changed file atomically, runs ``nginx -t`` on the whole new
configuration, reloads, waits for new worker processes (proof that nginx took the new configuration), asks the
proxy itself for the site, and puts every previous file back (and reloads again) if any of that fails: nginx keeps
serving the previous configuration.

Standard library only; bcrypt is imported for the basic-auth file when that file is written.
"""

from __future__ import annotations

import difflib
import http.client
import os
import re
import socket
import ssl
import subprocess
import time
import typing as t
from dataclasses import dataclass, field

from . import _http_probe
from ._common import LifeboatError, register_secret
from ._files import write_file_atomic

SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SERVER_NAME = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
UPSTREAM_SERVER = re.compile(r"^(unix:/[^\s;{}]+|\[[0-9A-Fa-f:.]+\]:\d{1,5}|[A-Za-z0-9.-]+:\d{1,5})$")
SIZE = re.compile(r"^\d+[kKmMgG]?$")
DURATION = re.compile(r"^\d+(ms|s|m|h)?$")
RATE = re.compile(r"^\d+r/[sm]$")
USER_NAME = re.compile(r"^[^:\s]{1,64}$")
HEADER_VALUE = re.compile(r'^[^"\\\n\r;{}$]*$')
TLS_MODES = ("none", "files", "self_signed", "acme")
CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
# The defaults a site gets for what it does not set (documented in the role's argument_specs).
SITE_DEFAULTS: dict[str, t.Any] = {
    "keepalive": 16,
    "websocket": False,
    "client_max_body_size": "10m",
    "proxy_connect_timeout": "5s",
    "proxy_read_timeout": "60s",
    "proxy_send_timeout": "60s",
    "hsts_max_age": 31536000,
    "frame_options": "DENY",
    "content_security_policy": "",
    "referrer_policy": "strict-origin-when-cross-origin",
    "rate_limit": None,
    "basic_auth": None,
    "tls": "self_signed",
    "certificate": "",
    "certificate_key": "",
}
SITE_KEYS = {"name", "server_names", "upstreams", *SITE_DEFAULTS}
MODERN_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                  "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")


@dataclass(frozen=True)
class Layout:
    """Where the proxy's files live on a host, and the ports and address it listens on."""

    sites_dir: str = "/etc/nginx/conf.d"
    include_dir: str = "/etc/nginx/lifeboat"
    tls_dir: str = "/etc/lifeboat-proxy/tls"
    webroot: str = "/var/lib/lifeboat-proxy/acme-challenge"
    listen_address: str = ""  # empty: every address
    http_port: int = 80
    https_port: int = 443

    def site_file(self, name: str) -> str:
        return os.path.join(self.sites_dir, f"lifeboat-{name}.conf")

    def upstream_file(self, name: str) -> str:
        return os.path.join(self.include_dir, f"{name}.upstream")

    def htpasswd_file(self, name: str) -> str:
        return os.path.join(self.include_dir, f"{name}.htpasswd")

    def certificate_paths(self, site: dict[str, t.Any]) -> tuple[str, str]:
        """The chain and key nginx serves: the given files, or the ones this collection issues or makes."""
        if site["tls"] == "files":
            return site["certificate"], site["certificate_key"]
        return (os.path.join(self.tls_dir, site["name"], "fullchain.pem"),
                os.path.join(self.tls_dir, site["name"], "privkey.pem"))

    def listen(self, port: int) -> str:
        return f"{self.listen_address}:{port}" if self.listen_address else str(port)


def check_site(raw: dict[str, t.Any]) -> dict[str, t.Any]:
    """A site from inventory with its defaults filled in; a mistake raises a one-line LifeboatError."""
    if not isinstance(raw, dict):
        raise LifeboatError(f"each site must be a mapping, not {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not SITE_NAME.match(name):
        raise LifeboatError(f"site name {name!r}: use lower-case letters, digits, '-' and '_' (at most 63)")
    where = f"site {name}"
    unknown = sorted(set(raw) - SITE_KEYS)
    if unknown:
        raise LifeboatError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(SITE_KEYS))}")
    site = {**SITE_DEFAULTS, **{key: value for key, value in raw.items() if value is not None}}
    names = site.get("server_names")
    if not names or not isinstance(names, list) or not all(isinstance(n, str) and SERVER_NAME.match(n) for n in names):
        raise LifeboatError(f"{where}: server_names must be a non-empty list of host names, not {names!r}")
    site["upstreams"] = check_upstreams(site.get("upstreams"), where)
    for key, pattern, example in (("client_max_body_size", SIZE, "10m"), ("proxy_connect_timeout", DURATION, "5s"),
                                  ("proxy_read_timeout", DURATION, "60s"), ("proxy_send_timeout", DURATION, "60s")):
        if not pattern.match(str(site[key])):
            raise LifeboatError(f"{where}: {key} {site[key]!r} is no nginx size/time such as {example}")
        site[key] = str(site[key])
    if site["tls"] not in TLS_MODES:
        raise LifeboatError(f"{where}: tls must be one of {', '.join(TLS_MODES)}, not {site['tls']!r}")
    if site["tls"] == "files" and not (site["certificate"] and site["certificate_key"]):
        raise LifeboatError(f"{where}: tls: files needs certificate and certificate_key (paths on the host)")
    if site["tls"] == "acme" and any(n.startswith("*.") for n in names):
        raise LifeboatError(f"{where}: a wildcard name cannot be issued through HTTP-01; give the certificate as files")
    if not isinstance(site["hsts_max_age"], int) or site["hsts_max_age"] < 0:
        raise LifeboatError(f"{where}: hsts_max_age must be a number of seconds >= 0 (0 sends no HSTS header)")
    if not isinstance(site["keepalive"], int) or site["keepalive"] < 0:
        raise LifeboatError(f"{where}: keepalive must be a number of idle upstream connections >= 0")
    if site["frame_options"] not in ("DENY", "SAMEORIGIN", ""):
        raise LifeboatError(f"{where}: frame_options must be DENY, SAMEORIGIN or '' (then set content_security_policy)")
    for key in ("content_security_policy", "referrer_policy"):
        if not isinstance(site[key], str) or not HEADER_VALUE.match(site[key]):
            raise LifeboatError(f"{where}: {key} must be a header value without quotes, '$', ';'-free braces or newlines")
    site["rate_limit"] = check_rate_limit(site["rate_limit"], where)
    site["basic_auth"] = check_basic_auth(site["basic_auth"], where)
    return site


def check_upstreams(upstreams: t.Any, where: str) -> list[str]:
    if isinstance(upstreams, str):
        upstreams = [upstreams]
    if not upstreams or not isinstance(upstreams, list):
        raise LifeboatError(f"{where}: upstreams must list at least one server as host:port or unix:/path")
    for server in upstreams:
        if not isinstance(server, str) or not UPSTREAM_SERVER.match(server):
            raise LifeboatError(f"{where}: upstream {server!r} is not host:port or unix:/path")
    return list(upstreams)


def check_rate_limit(rate_limit: t.Any, where: str) -> dict[str, t.Any] | None:
    if not rate_limit:
        return None
    if not isinstance(rate_limit, dict) or not RATE.match(str(rate_limit.get("rate", ""))):
        raise LifeboatError(f"{where}: rate_limit needs rate such as 10r/s or 300r/m (and optionally burst)")
    burst = rate_limit.get("burst", 0)
    if not isinstance(burst, int) or burst < 0 or set(rate_limit) - {"rate", "burst"}:
        raise LifeboatError(f"{where}: rate_limit takes rate and burst (a number >= 0), nothing else")
    return {"rate": rate_limit["rate"], "burst": burst}


def check_basic_auth(basic_auth: t.Any, where: str) -> dict[str, t.Any] | None:
    if not basic_auth:
        return None
    users = basic_auth.get("users") if isinstance(basic_auth, dict) else None
    if not users or not isinstance(users, list):
        raise LifeboatError(f"{where}: basic_auth needs users, a list of name and password")
    for user in users:
        if not isinstance(user, dict) or not USER_NAME.match(str(user.get("name", ""))) or not user.get("password"):
            raise LifeboatError(f"{where}: each basic_auth user needs a name (no ':' or spaces) and a password")
        register_secret(str(user["password"]))
    realm = str(basic_auth.get("realm") or "Restricted")
    if not HEADER_VALUE.match(realm):
        raise LifeboatError(f"{where}: basic_auth realm must not hold quotes, '$', braces, ';' or newlines")
    return {"realm": realm, "users": [{"name": str(u["name"]), "password": str(u["password"])} for u in users]}


def render_upstream(name: str, servers: list[str], keepalive: int) -> str:
    lines = [f"# lifeboat.ops reverse proxy: upstream of site {name} (switched by lifeboat.ops.nginx_upstream)",
             f"upstream lifeboat_{name} {{"]
    lines += [f"    server {server} max_fails=0;" for server in servers]
    if keepalive:
        lines.append(f"    keepalive {keepalive};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_site(site: dict[str, t.Any], layout: Layout, ocsp_stapling: bool = False) -> str:
    """The site's server blocks: HTTP (ACME challenges, redirect) and HTTPS (headers, limits, proxy)."""
    name, tls = site["name"], site["tls"] != "none"
    server_names = " ".join(site["server_names"])
    out = [f"# lifeboat.ops reverse proxy: site {name}. Managed by lifeboat.ops.reverse_proxy; edits are replaced.",
           f"include {layout.upstream_file(name)};"]
    if site["rate_limit"]:
        out.append(f"limit_req_zone $binary_remote_addr zone=lifeboat_{name}:10m rate={site['rate_limit']['rate']};")
    if site["websocket"]:
        # Upgrade only the requests that ask for it, so that the others keep their upstream keepalive connection.
        out += [f"map $http_upgrade $lifeboat_{name}_connection {{", "    default upgrade;", "    ''      '';", "}"]
    out += ["", "server {", f"    listen {layout.listen(layout.http_port)};", f"    server_name {server_names};",
            "    server_tokens off;",
            f"    location ^~ {CHALLENGE_PREFIX} {{",
            f"        root {layout.webroot};", "        default_type text/plain;", "        try_files $uri =404;",
            "    }"]
    if tls:
        out += ["    location / {", f"        return 301 https://$host{port_suffix(layout.https_port, 443)}$request_uri;",
                "    }", "}", "", "server {", f"    listen {layout.listen(layout.https_port)} ssl http2;",
                f"    server_name {server_names};", "    server_tokens off;"]
        certificate, key = layout.certificate_paths(site)
        out += [f"    ssl_certificate {certificate};", f"    ssl_certificate_key {key};",
                "    ssl_protocols TLSv1.2 TLSv1.3;", f"    ssl_ciphers {MODERN_CIPHERS};",
                "    ssl_prefer_server_ciphers off;", "    ssl_session_cache shared:lifeboat_ssl:10m;",
                "    ssl_session_timeout 1d;", "    ssl_session_tickets off;"]
        if ocsp_stapling:
            out += ["    ssl_stapling on;", "    ssl_stapling_verify on;"]
        if site["hsts_max_age"]:
            out.append(f'    add_header Strict-Transport-Security "max-age={site["hsts_max_age"]}" always;')
    out += ['    add_header X-Content-Type-Options "nosniff" always;',
            f'    add_header Referrer-Policy "{site["referrer_policy"]}" always;']
    if site["frame_options"]:
        out.append(f'    add_header X-Frame-Options "{site["frame_options"]}" always;')
    if site["content_security_policy"]:
        out.append(f'    add_header Content-Security-Policy "{site["content_security_policy"]}" always;')
    out.append(f"    client_max_body_size {site['client_max_body_size']};")
    if site["rate_limit"]:
        out += [f"    limit_req zone=lifeboat_{name} burst={site['rate_limit']['burst']} nodelay;",
                "    limit_req_status 429;"]
    if site["basic_auth"]:
        out += [f'    auth_basic "{site["basic_auth"]["realm"]}";',
                f"    auth_basic_user_file {layout.htpasswd_file(name)};"]
    out += ["    location / {", f"        proxy_pass http://lifeboat_{name};", "        proxy_http_version 1.1;",
            "        proxy_set_header Host $host;", "        proxy_set_header X-Real-IP $remote_addr;",
            "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "        proxy_set_header X-Forwarded-Proto $scheme;", "        proxy_set_header X-Forwarded-Host $host;",
            f"        proxy_connect_timeout {site['proxy_connect_timeout']};",
            f"        proxy_read_timeout {site['proxy_read_timeout']};",
            f"        proxy_send_timeout {site['proxy_send_timeout']};",
            "        proxy_next_upstream error timeout http_502 http_503;"]
    if site["websocket"]:
        out += ["        proxy_set_header Upgrade $http_upgrade;",
                f"        proxy_set_header Connection $lifeboat_{name}_connection;"]
    else:
        out.append('        proxy_set_header Connection "";')
    out += ["    }", "}"]
    return "\n".join(out) + "\n"


def port_suffix(port: int, default: int) -> str:
    return "" if port == default else f":{port}"


def htpasswd(users: list[dict[str, str]], current: bytes | None, check_mode: bool = False) -> bytes:
    """The basic-auth file (bcrypt); a user whose password still matches keeps its line, so a rerun changes nothing."""
    try:
        import bcrypt  # pylint: disable=import-outside-toplevel  # only hosts with basic auth need it
    except ImportError as exc:
        if check_mode:  # a host the role has not installed python3-bcrypt on yet: the file would be written
            return b"(would be written)\n"
        raise LifeboatError(f"basic_auth needs the Python package bcrypt (python3-bcrypt on Debian): {exc}") from exc

    kept: dict[str, bytes] = {}
    for line in (current or b"").splitlines():
        name, _colon, old_digest = line.partition(b":")
        kept[name.decode("utf-8", "replace")] = old_digest
    lines = []
    for user in users:
        password = user["password"].encode()
        digest = kept.get(user["name"])
        if not digest or not digest.startswith(b"$2") or not bcrypt.checkpw(password, digest):
            digest = bcrypt.hashpw(password, bcrypt.gensalt(rounds=10))
        lines.append(user["name"].encode() + b":" + digest)
    return b"\n".join(lines) + b"\n"


@dataclass
class Planned:
    """One file of the proxy's configuration as it should be: content None means absent."""

    path: str
    content: bytes | None
    mode: int = 0o644
    secret: bool = False  # never shown in a diff (keys, password hashes)
    group: str | None = None  # group owner (e.g. nginx's workers read the basic-auth file)


@dataclass
class Nginx:
    """How to test and reload one nginx: the host's (defaults), or a private one (tests) with its prefix."""

    binary: str = "nginx"
    config: str = "/etc/nginx/nginx.conf"
    prefix: str = ""
    pid_file: str = "/run/nginx.pid"
    reload_timeout: float = 10.0

    def argv(self, *args: str) -> list[str]:
        base = [self.binary] + (["-p", self.prefix] if self.prefix else []) + ["-c", self.config]
        return base + list(args)

    def test(self) -> None:
        """``nginx -t`` on the whole configuration; a failure (or an ignored duplicate server_name) in one line."""
        done = run(self.argv("-t", "-q"))
        # "2026/11/30 18:13:31 [emerg] 24106#24106: unknown directive ..." -> "[emerg] unknown directive ..."
        problems = [re.sub(r"^(nginx: )?(\d{4}/\d\d/\d\d [\d:]{8} )?(\[\w+\]) \d+#\d+: ", r"\3 ", line)
                    for line in done.stderr.splitlines()
                    if re.search(r"\[(emerg|crit|alert)\]|conflicting server name", line)]
        if done.returncode != 0 or problems:
            text = problems[0] if problems else (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise LifeboatError(f"nginx -t refused the new configuration: {text}")

    def master_pid(self) -> int | None:
        try:
            with open(self.pid_file, encoding="ascii") as handle:
                pid = int(handle.read().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def workers(self, master: int) -> set[int]:
        try:
            with open(f"/proc/{master}/task/{master}/children", encoding="ascii") as handle:
                return {int(pid) for pid in handle.read().split()}
        except OSError:
            return set()

    def reload(self) -> None:
        """Reload and wait for a new worker: the proof that the master loaded the new configuration."""
        master = self.master_pid()
        if master is None:
            raise LifeboatError(f"nginx is not running (no live process in {self.pid_file}); start it first")
        before = self.workers(master)
        os.kill(master, 1)  # SIGHUP: what `nginx -s reload` sends, without parsing the pid file twice
        deadline = time.monotonic() + self.reload_timeout
        while time.monotonic() < deadline:
            # Done when a new worker runs and every old one has left or stopped accepting ("is shutting down"):
            # until then an old worker may still answer a new connection with the old configuration.
            if self.workers(master) - before and all(not serving(pid) for pid in before):
                return
            time.sleep(0.02)
        raise LifeboatError(f"nginx did not start workers with the new configuration within {self.reload_timeout:g} s"
                            " (see nginx's error log)")


def serving(worker: int) -> bool:
    """A worker that still accepts connections (not gone, not in its graceful shutdown)."""
    try:
        with open(f"/proc/{worker}/cmdline", "rb") as handle:
            return b"shutting down" not in handle.read()
    except OSError:
        return False


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60,
                              env={**os.environ, "LC_ALL": "C"})
    except OSError as exc:
        raise LifeboatError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc


class SNIConnection(http.client.HTTPSConnection):
    """HTTPS to an address (the proxy on loopback) with a server name of its own for SNI and the certificate check."""

    def __init__(self, address: str, port: int, server_name: str, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=context)
        self.server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_name)  # type: ignore[attr-defined]


@dataclass
class Probe:
    """A request through the proxy itself after a reload: the site (Host header) must answer as expected."""

    host: str  # the Host header / SNI name
    port: int
    address: str = "127.0.0.1"
    tls: bool = True
    path: str = "/"
    expect_status: tuple[int, ...] = ()  # empty: any status below 500
    expect_body: str = ""  # a regular expression the body must match (e.g. the new upstream's version)
    timeout: float = 10.0

    def once(self) -> tuple[bool, str]:
        context = None
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # any chain: nginx's, not trust
        try:  # one answer within 5 s (or the probe's timeout when shorter), connect to the body's end
            answer = _http_probe.get(self.address, self.port, self.path, timeout=min(5.0, self.timeout),
                                     context=context, server_name=self.host,
                                     headers={"Host": self.host, "User-Agent": "lifeboat-proxy-probe"})
        except _http_probe.ProbeFailed as exc:
            return False, f"no answer ({exc})"
        body = answer.body.decode("utf-8", "replace")
        if (self.expect_status and answer.status not in self.expect_status) or \
                (not self.expect_status and answer.status >= 500):
            return False, f"HTTP {answer.status}"
        if self.expect_body and not re.search(self.expect_body, body):
            return False, f"HTTP {answer.status}, body does not match {self.expect_body!r}"
        return True, f"HTTP {answer.status}"

    def wait(self) -> str:
        deadline = time.monotonic() + self.timeout
        while True:
            ok, detail = self.once()
            if ok:
                return detail
            if time.monotonic() >= deadline:
                scheme = "https" if self.tls else "http"
                raise LifeboatError(f"the site does not answer through the proxy: GET {scheme}://{self.host}:"
                                    f"{self.port}{self.path}: {detail} after {self.timeout:g} s")
            time.sleep(0.1)


@dataclass
class Applied:
    changed: bool
    files: list[str] = field(default_factory=list)  # the paths that changed (or would)
    diff: list[dict[str, str]] = field(default_factory=list)
    probe: str = ""


def read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LifeboatError(f"cannot read {path}: {exc.strerror}") from exc


def diff_of(plan: Planned, before: bytes | None) -> dict[str, str]:
    if plan.secret:
        return {"before_header": plan.path, "after_header": plan.path,
                "before": "(secret, not shown)\n" if before is not None else "",
                "after": "(secret, not shown)\n" if plan.content is not None else ""}
    return {"before_header": plan.path, "after_header": plan.path,
            "before": (before or b"").decode("utf-8", "replace"),
            "after": (plan.content or b"").decode("utf-8", "replace")}


def unified(plan: Planned, before: bytes | None) -> str:
    if plan.secret:
        return f"{plan.path}: (secret, not shown)"
    return "".join(difflib.unified_diff((before or b"").decode().splitlines(True),
                                        (plan.content or b"").decode().splitlines(True), plan.path, plan.path))


def write(plan: Planned, content: bytes | None, mode: int | None = None) -> None:
    """Give the path its content atomically (temporary file, fsync, rename), or remove it (None)."""
    if content is None:
        try:
            os.unlink(plan.path)
        except FileNotFoundError:
            pass
        return
    os.makedirs(os.path.dirname(plan.path), exist_ok=True)
    write_file_atomic(plan.path, content, plan.mode if mode is None else mode, plan.group)


def file_mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None


def apply(plans: list[Planned], nginx: Nginx, probe: Probe | None = None, check_mode: bool = False,
          force: bool = False) -> Applied:
    """Write the changed files, ``nginx -t``, reload, probe; on any failure the previous files come back.

    ``force``: test, reload and probe even when the files on disk are already as planned (they may have been
    written by a run that was killed before its reload: the disk then says nothing of what nginx serves)."""
    previous = {plan.path: (read(plan.path), file_mode(plan.path)) for plan in plans}
    changed = [plan for plan in plans
               if force or previous[plan.path][0] != plan.content
               or (plan.content is not None and previous[plan.path][1] != plan.mode)]
    result = Applied(changed=bool(changed), files=[plan.path for plan in changed],
                     diff=[diff_of(plan, previous[plan.path][0]) for plan in changed])
    if not changed or check_mode:
        return result
    try:
        for plan in changed:
            write(plan, plan.content)
        nginx.test()
    except (LifeboatError, OSError) as exc:
        restore(changed, previous)
        raise LifeboatError(f"{exc}; the previous configuration is still in place and serving") from exc
    try:
        nginx.reload()
        if probe is not None:
            result.probe = probe.wait()
    except LifeboatError as exc:
        restore(changed, previous)
        try:
            nginx.reload()
            back = "the previous configuration was restored and reloaded"
        except LifeboatError as again:
            back = f"the previous files were restored, but the reload failed too: {again}"
        raise LifeboatError(f"{exc}; {back}") from exc
    return result


def restore(changed: list[Planned], previous: dict[str, tuple[bytes | None, int | None]]) -> None:
    for plan in changed:
        content, mode = previous[plan.path]
        write(plan, content, mode)


def site_plans(site: dict[str, t.Any], layout: Layout, ocsp_stapling: bool = False,
               htpasswd_group: str | None = None, check_mode: bool = False) -> list[Planned]:
    """The files of a present site (the certificate files are the ACME or self-signed step's, not these)."""
    name = site["name"]
    plans = [Planned(layout.upstream_file(name), render_upstream(name, site["upstreams"], site["keepalive"]).encode()),
             Planned(layout.site_file(name), render_site(site, layout, ocsp_stapling).encode())]
    htpasswd_path = layout.htpasswd_file(name)
    if site["basic_auth"]:
        plans.insert(0, Planned(htpasswd_path, htpasswd(site["basic_auth"]["users"], read(htpasswd_path), check_mode),
                                mode=0o640, secret=True, group=htpasswd_group))
    else:
        plans.append(Planned(htpasswd_path, None, secret=True))
    return plans


def absent_plans(name: str, layout: Layout) -> list[Planned]:
    return [Planned(layout.site_file(name), None), Planned(layout.upstream_file(name), None),
            Planned(layout.htpasswd_file(name), None, secret=True)]


def switch_upstream(name: str, upstreams: list[str], keepalive: int, layout: Layout, nginx: Nginx,
                    probe: Probe | None, check_mode: bool = False, force: bool = False) -> Applied:
    """The blue-green switch: rewrite only the site's upstream file, ``nginx -t``, reload, prove the new upstream.

    Requests in flight finish on the old workers; new requests go to the new upstream once the reload is done.
    A failure at any step puts the previous upstream file back and reloads it.
    """
    servers = check_upstreams(upstreams, f"site {name}")
    if not os.path.exists(layout.site_file(name)):
        raise LifeboatError(f"site {name} does not exist ({layout.site_file(name)}); create it with the reverse_proxy"
                            " role first")
    plan = Planned(layout.upstream_file(name), render_upstream(name, servers, keepalive).encode())
    return apply([plan], nginx, probe, check_mode, force)


def wait_port(address: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something listens on address:port (a test helper for a starting nginx)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise LifeboatError(f"nothing listens on {address}:{port} after {timeout:g} s")
