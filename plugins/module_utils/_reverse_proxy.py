# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reverse proxy's operations: all sites in one transaction, the ACME issuance after it, and the renewal.

``apply_sites`` is what the reverse_proxy_sites module runs, ``renew`` what the renewal timer runs on the host
(roles/reverse_proxy/files/lifeboat-proxy-renew). Both go through _nginx.apply (write, ``nginx -t``, reload, probe,
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
        plans += _nginx.site_plans(site, layout, ocsp, htpasswd_group)
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
