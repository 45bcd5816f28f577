# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The reverse proxy's operations: all sites in one transaction, the ACME issuance after it, and the renewal.

``apply_sites`` is what the reverse_proxy_sites module runs, ``renew`` what the renewal timer runs on the host
(``lifeboat proxy-renew``, _proxy_renew.py). Both go through _nginx.apply (write, ``nginx -t``, reload, probe,
restore on failure) and _certificates.ensure_certificate.
"""

from __future__ import annotations

import glob
import json
import os
import typing as t
from dataclasses import asdict, dataclass, field

from . import _certificates, _nginx
from ._common import LifeboatError


@dataclass
class Acme:
    directory_url: str = ""
    account_key: str = "/etc/lifeboat-proxy/acme/account.key"
    email: str = ""
    ca_bundle: str = ""  # the ACME server's TLS trust (a test server's own CA); empty: the system's
    renew_days: int = 30


@dataclass
class SitesResult:
    changed: bool = False
    files: list[str] = field(default_factory=list)
    certificates: dict[str, dict[str, t.Any]] = field(default_factory=dict)
    diff: list[dict[str, str]] = field(default_factory=list)
    probes: dict[str, str] = field(default_factory=dict)


def probe_for(site: dict[str, t.Any], layout: _nginx.Layout, address: str) -> _nginx.Probe:
    tls = site["tls"] != "none"
    return _nginx.Probe(host=site["server_names"][0], port=layout.https_port if tls else layout.http_port,
                        address=address, tls=tls, expect_status=())


def managed_names(layout: _nginx.Layout) -> set[str]:
    """The sites this collection wrote before (for removing the ones no longer listed)."""
    names = set()
    for path in glob.glob(os.path.join(layout.sites_dir, "lifeboat-*.conf")):
        names.add(os.path.basename(path)[len("lifeboat-"):-len(".conf")])
    return names


def apply_sites(raw_sites: list[dict[str, t.Any]], layout: _nginx.Layout, nginx: _nginx.Nginx, acme: Acme,
                *, purge: bool = True, probe_address: str = "127.0.0.1", htpasswd_group: str | None = None,
                check_mode: bool = False) -> SitesResult:
    sites = [_nginx.check_site(raw) for raw in raw_sites]
    names = [site["name"] for site in sites]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise LifeboatError(f"two sites are named {', '.join(duplicates)}")
    if any(site["tls"] == "acme" for site in sites) and not acme.directory_url:
        raise LifeboatError("a site with tls: acme needs the ACME directory URL (acme_directory_url)")
    result = SitesResult()
    # Certificates nginx needs before its test can pass: self-signed ones, and a stand-in for an ACME one not yet
    # issued (the HTTP-01 challenge is answered by this very nginx, so it must run with the site first).
    for site in sites:
        chain, key = layout.certificate_paths(site)
        if site["tls"] in ("self_signed", "acme") and (site["tls"] == "self_signed" or not os.path.exists(chain)):
            state = _certificates.self_signed(site["server_names"], chain, key, check_mode=check_mode)
            result.certificates[site["name"]] = asdict(state)
            if state.changed:
                result.changed = True
                result.files.append(chain)
    plans: list[_nginx.Planned] = []
    for site in sites:
        ocsp = site["tls"] != "none" and _certificates.ocsp_possible(layout.certificate_paths(site)[0])
        plans += _nginx.site_plans(site, layout, ocsp, htpasswd_group, check_mode)
    if purge:
        for name in sorted(managed_names(layout) - set(names)):
            plans += _nginx.absent_plans(name, layout)
    applied = _nginx.apply(plans, nginx, None, check_mode)
    result.changed |= applied.changed
    result.files += applied.files
    result.diff += applied.diff
    if not check_mode and (applied.changed or result.changed):
        if not applied.changed:  # only certificates changed: nginx must load them
            nginx.test()
            nginx.reload()
        for site in sites:
            result.probes[site["name"]] = probe_for(site, layout, probe_address).wait()
    for site in sites:
        if site["tls"] != "acme":
            continue
        chain, key = layout.certificate_paths(site)
        stand_in = _certificates.is_self_signed(chain)  # the stand-in (or a failed run's): issue now
        state = _certificates.ensure_certificate(
            site["server_names"], chain, key, acme.account_key, layout.webroot, acme.directory_url,
            ca_bundle=acme.ca_bundle, email=acme.email, renew_days=acme.renew_days, force=stand_in,
            check_mode=check_mode)
        result.certificates[site["name"]] = {**asdict(state), "issuer": "acme"}
        if state.changed and not check_mode:
            result.changed = True
            result.files.append(chain)
            nginx.test()
            nginx.reload()
    return result


def renewal_config(sites: list[dict[str, t.Any]], layout: _nginx.Layout, nginx: _nginx.Nginx, acme: Acme) -> str:
    """What the renewal timer needs (no secret: the keys stay in their 0600 files), as JSON."""
    certificates = []
    for raw in sites:
        site = _nginx.check_site(raw)
        if site["tls"] == "acme":
            chain, key = layout.certificate_paths(site)
            certificates.append({"name": site["name"], "domains": site["server_names"], "chain": chain, "key": key})
    return json.dumps({"acme": asdict(acme), "webroot": layout.webroot, "nginx": asdict(nginx),
                       "certificates": certificates}, indent=1, sort_keys=True) + "\n"


def renew(config_path: str, force: bool = False) -> list[str]:
    """The timer's run: renew what is due (or everything, forced), then test and reload nginx once."""
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise LifeboatError(f"cannot read {config_path}: {exc}") from exc
    acme = Acme(**config["acme"])
    nginx = _nginx.Nginx(**config["nginx"])
    lines, renewed = [], 0
    for item in config["certificates"]:
        state = _certificates.ensure_certificate(
            item["domains"], item["chain"], item["key"], acme.account_key, config["webroot"], acme.directory_url,
            ca_bundle=acme.ca_bundle, email=acme.email, renew_days=acme.renew_days, force=force)
        renewed += state.changed
        lines.append(f"{item['name']}: {'renewed' if state.changed else 'kept'} ({state.reason}); "
                     f"valid until {state.not_after}")
    if renewed:
        nginx.test()
        nginx.reload()
        lines.append(f"nginx reloaded with {renewed} new certificate(s)")
    return lines


# The options every reverse-proxy module shares (documented once in the doc fragment lifeboat.ops.reverse_proxy).
# The nginx layout's defaults are _nginx.Layout's own, forwarded by the modules and the deploy role (generated from
# this spec); tests/unit/test_nginx_layout.py holds every written copy (doc fragment, roles) to them.
_LAYOUT = _nginx.Layout()
PROXY_OPTIONS: dict[str, dict[str, t.Any]] = {
    "sites_dir": {"type": "path", "default": _LAYOUT.sites_dir},
    "include_dir": {"type": "path", "default": _LAYOUT.include_dir},
    "tls_dir": {"type": "path", "default": _LAYOUT.tls_dir},
    "webroot": {"type": "path", "default": _LAYOUT.webroot},
    "listen_address": {"type": "str", "default": _LAYOUT.listen_address},
    "http_port": {"type": "int", "default": _LAYOUT.http_port},
    "https_port": {"type": "int", "default": _LAYOUT.https_port},
    "probe_address": {"type": "str", "default": "127.0.0.1"},
    "nginx_binary": {"type": "path", "default": "/usr/sbin/nginx"},
    "nginx_config": {"type": "path", "default": "/etc/nginx/nginx.conf"},
    "nginx_prefix": {"type": "path", "default": ""},
    "nginx_pid_file": {"type": "path", "default": "/run/nginx.pid"},
    "reload_timeout": {"type": "int", "default": 10},
}

# What one site takes (the reverse_proxy role's reverse_proxy_sites entries are these, checked by
# tests/unit/test_role_forwarding.py); omitted keys get _nginx.check_site's defaults.
SITE_OPTIONS = {
    "name": {"type": "str", "required": True},
    "server_names": {"type": "list", "elements": "str", "required": True},
    "upstreams": {"type": "list", "elements": "str", "required": True},
    "keepalive": {"type": "int"},
    "websocket": {"type": "bool"},
    "client_max_body_size": {"type": "str"},
    "proxy_connect_timeout": {"type": "str"},
    "proxy_read_timeout": {"type": "str"},
    "proxy_send_timeout": {"type": "str"},
    "tls": {"type": "str", "choices": list(_nginx.TLS_MODES)},
    "certificate": {"type": "path"},
    "certificate_key": {"type": "path", "no_log": False},
    "hsts_max_age": {"type": "int"},
    "frame_options": {"type": "str"},
    "content_security_policy": {"type": "str"},
    "referrer_policy": {"type": "str"},
    "rate_limit": {"type": "dict", "options": {"rate": {"type": "str", "required": True},
                                               "burst": {"type": "int", "default": 0}}},
    "basic_auth": {"type": "dict", "options": {
        "realm": {"type": "str", "default": "Restricted"},
        "users": {"type": "list", "elements": "dict", "required": True, "options": {
            "name": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True}}}}},
}

_ACME = Acme()


def layout_of(params: dict[str, t.Any]) -> _nginx.Layout:
    return _nginx.Layout(sites_dir=params["sites_dir"], include_dir=params["include_dir"], tls_dir=params["tls_dir"],
                         webroot=params["webroot"], listen_address=params["listen_address"] or "",
                         http_port=params["http_port"], https_port=params["https_port"])


def nginx_of(params: dict[str, t.Any]) -> _nginx.Nginx:
    return _nginx.Nginx(binary=params["nginx_binary"], config=params["nginx_config"], prefix=params["nginx_prefix"] or "",
                        pid_file=params["nginx_pid_file"], reload_timeout=float(params["reload_timeout"]))


def acme_of(params: dict[str, t.Any]) -> Acme:
    return Acme(directory_url=params["acme_directory_url"] or "", account_key=params["acme_account_key"],
                email=params["acme_email"] or "", ca_bundle=params["acme_ca_bundle"] or "",
                renew_days=params["acme_renew_days"])


def diff_for(diffs: list[dict[str, str]]) -> dict[str, str]:
    """Ansible's diff of several files as one before/after pair (secrets already replaced by a note)."""
    before = "".join(f"# {d['before_header']}\n{d['before']}" for d in diffs)
    after = "".join(f"# {d['after_header']}\n{d['after']}" for d in diffs)
    return {"before": before, "after": after}


def reverse_proxy_sites_spec() -> dict[str, dict[str, t.Any]]:
    return {
        **PROXY_OPTIONS,
        "sites": {"type": "list", "elements": "dict", "required": True, "options": SITE_OPTIONS},
        "purge": {"type": "bool", "default": True},
        "htpasswd_group": {"type": "str", "default": "www-data", "no_log": False},
        "acme_directory_url": {"type": "str", "default": _ACME.directory_url},
        "acme_account_key": {"type": "path", "default": _ACME.account_key, "no_log": False},
        "acme_email": {"type": "str", "default": _ACME.email},
        "acme_ca_bundle": {"type": "path", "default": _ACME.ca_bundle},
        "acme_renew_days": {"type": "int", "default": _ACME.renew_days},
        "renewal_config": {"type": "path", "default": ""},
    }


def reverse_proxy_sites(run: t.Any) -> t.Any:
    """The reverse_proxy_sites module's task (a _module_frame Task)."""
    from ._module_frame import Outcome  # pylint: disable=import-outside-toplevel

    params = run.params
    layout, nginx, acme = layout_of(params), nginx_of(params), acme_of(params)
    sites = [{key: value for key, value in site.items() if value is not None} for site in params["sites"]]
    result = apply_sites(sites, layout, nginx, acme, purge=params["purge"], probe_address=params["probe_address"],
                         htpasswd_group=params["htpasswd_group"] or None, check_mode=run.check_mode)
    if params["renewal_config"]:
        plan = _nginx.Planned(params["renewal_config"], renewal_config(sites, layout, nginx, acme).encode(), 0o644)
        if _nginx.read(plan.path) != plan.content or _nginx.file_mode(plan.path) != plan.mode:
            result.changed = True
            result.files.append(plan.path)
            result.diff.append(_nginx.diff_of(plan, _nginx.read(plan.path)))
            if not run.check_mode:
                _nginx.write(plan, plan.content)
    return Outcome(changed=result.changed,
                   result={"files": result.files, "certificates": result.certificates, "probes": result.probes},
                   diff=diff_for(result.diff) if run.diff and result.diff else None)


def site_probe_target(layout: _nginx.Layout, name: str) -> tuple[str, bool]:
    """The first server_name of a site this collection wrote, and whether it serves TLS (from its file)."""
    text = (_nginx.read(layout.site_file(name)) or b"").decode()
    import re  # pylint: disable=import-outside-toplevel

    found = re.search(r"^\s*server_name\s+([^\s;]+)", text, re.M)
    if not found:
        raise LifeboatError(f"site {name} does not exist ({layout.site_file(name)}); create it with the "
                            "reverse_proxy role first")
    return found.group(1), "ssl_certificate " in text


def nginx_upstream_spec() -> dict[str, dict[str, t.Any]]:
    """The blue-green switch of one site's upstream."""
    return {
        **PROXY_OPTIONS,
        "site": {"type": "str", "required": True},
        "upstreams": {"type": "list", "elements": "str", "required": True},
        "keepalive": {"type": "int", "default": _nginx.SITE_DEFAULTS["keepalive"]},
        "probe_host": {"type": "str"},
        "probe_path": {"type": "str", "default": "/"},
        "expect_status": {"type": "list", "elements": "int", "default": []},
        "expect_body": {"type": "str", "default": ""},
        "probe_timeout": {"type": "int", "default": 30},
    }


def nginx_upstream(run: t.Any) -> t.Any:
    """The nginx_upstream module's task: the blue-green switch of one site's upstream."""
    from ._module_frame import Outcome  # pylint: disable=import-outside-toplevel

    params = run.params
    layout, nginx = layout_of(params), nginx_of(params)
    host, tls = site_probe_target(layout, params["site"])
    probe = _nginx.Probe(host=params["probe_host"] or host, port=layout.https_port if tls else layout.http_port,
                         address=params["probe_address"], tls=tls, path=params["probe_path"],
                         expect_status=tuple(params["expect_status"] or ()), expect_body=params["expect_body"] or "",
                         timeout=float(params["probe_timeout"]))
    applied = _nginx.switch_upstream(params["site"], params["upstreams"], params["keepalive"], layout, nginx, probe,
                                     run.check_mode)
    return Outcome(changed=applied.changed, result={"upstreams": params["upstreams"], "probe": applied.probe},
                   diff=diff_for(applied.diff) if run.diff and applied.diff else None)
