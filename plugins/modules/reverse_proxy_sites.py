#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: reverse_proxy_sites
short_description: nginx sites for apps (TLS, security headers, rate limits, WebSockets), validated before every reload
version_added: 0.1.0
description:
  - Writes one nginx site per app, all in one transaction. Every changed file is written atomically, then
    C(nginx -t) checks the whole new configuration (a C(conflicting server name) warning counts as a failure); nginx
    is reloaded, its new workers awaited, and each site asked through the proxy itself. If anything fails, every
    previous file is put back (and nginx reloaded if it had been), so nginx keeps serving the previous
    configuration, and the task fails with nginx's own message in one line.
  - "TLS: certificates given as files, a self-signed one, or one issued by ACME through HTTP-01: nginx answers the
    challenge itself from O(webroot), so an ACME site first serves a self-signed stand-in, then its issued
    certificate. Keys are written 0600 and never appear in results or diffs."
  - TLS 1.2 and 1.3 only with modern ciphers, OCSP stapling when the chain names a responder and holds the issuer,
    HTTP redirected to HTTPS, HSTS, C(X-Content-Type-Options), C(X-Frame-Options) or a CSP, C(Referrer-Policy),
    C(server_tokens off).
  - Sites this collection wrote before and no longer listed are removed (O(purge)).
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lifeboat.ops._reverse_proxy
attributes:
  check_mode:
    support: full
    details: Says which files would change and which certificates would be made or issued; changes nothing.
  diff_mode:
    support: full
    details: The site and upstream files before and after; basic-auth files and keys only as C((secret, not shown)).
  platform:
    platforms: posix
options:
  sites:
    description: The sites, one per app.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the site (lower-case letters, digits, C(-), C(_)); names its files.
        type: str
        required: true
      server_names:
        description: Host names of the site; the first is the one the proof request uses.
        type: list
        elements: str
        required: true
      upstreams:
        description: Upstream servers, C(host:port) or C(unix:/path).
        type: list
        elements: str
        required: true
      keepalive:
        description: Idle keepalive connections to the upstream per worker (0 for none). Default 16.
        type: int
      websocket:
        description: Pass WebSocket upgrades through to the upstream. Default false.
        type: bool
      client_max_body_size:
        description: Largest request body (uploads); larger ones get 413. Default V(10m).
        type: str
      proxy_connect_timeout:
        description: nginx time for connecting to the upstream. Default V(5s).
        type: str
      proxy_read_timeout:
        description: nginx time between two reads from the upstream. Default V(60s).
        type: str
      proxy_send_timeout:
        description: nginx time between two writes to the upstream. Default V(60s).
        type: str
      tls:
        description: V(acme) (issued through HTTP-01), V(files) (O(sites[].certificate) and O(sites[].certificate_key)),
          V(self_signed) (a dev host), or V(none) (plain HTTP, no redirect). Default V(self_signed).
        type: str
        choices: [acme, files, self_signed, none]
      certificate:
        description: Path on the host of the certificate chain (O(sites[].tls=files)).
        type: path
      certificate_key:
        description: Path on the host of the private key (O(sites[].tls=files)).
        type: path
      hsts_max_age:
        description: C(Strict-Transport-Security) max-age in seconds; 0 sends none. Default 31536000.
        type: int
      frame_options:
        description: C(X-Frame-Options), V(DENY) or V(SAMEORIGIN); empty to rely on a CSP C(frame-ancestors). Default V(DENY).
        type: str
      content_security_policy:
        description: C(Content-Security-Policy) value; empty sends none. Default empty.
        type: str
      referrer_policy:
        description: C(Referrer-Policy) value. Default V(strict-origin-when-cross-origin).
        type: str
      rate_limit:
        description: Requests per client address (C(limit_req)); over it nginx answers 429.
        type: dict
        suboptions:
          rate:
            description: Rate such as V(10r/s) or V(300r/m).
            type: str
            required: true
          burst:
            description: Requests above the rate served at once before 429s begin.
            type: int
            default: 0
      basic_auth:
        description: HTTP basic authentication for the whole site (a bcrypt file written by the module, group-readable
          by O(htpasswd_group)).
        type: dict
        suboptions:
          realm:
            description: The realm the browser shows.
            type: str
            default: Restricted
          users:
            description: The users.
            type: list
            elements: dict
            required: true
            suboptions:
              name:
                description: User name.
                type: str
                required: true
              password:
                description: Password (from a vault); only its bcrypt hash is written.
                type: str
                required: true
  purge:
    description: Remove the files of sites this collection wrote before that O(sites) no longer lists.
    type: bool
    default: true
  htpasswd_group:
    description: Group that owns the basic-auth files (nginx's workers read them); empty keeps root's group.
    type: str
    default: www-data
  acme_directory_url:
    description: ACME directory URL (e.g. Let's Encrypt's); needed by sites with O(sites[].tls=acme).
    type: str
    default: ""
  acme_account_key:
    description: The ACME account key (created 0600 on first use).
    type: path
    default: /etc/lifeboat-proxy/acme/account.key
  acme_email:
    description: Contact address of the ACME account; empty for none.
    type: str
    default: ""
  acme_ca_bundle:
    description: CA certificates the ACME server's own HTTPS is checked against; empty for the system's.
    type: path
    default: ""
  acme_renew_days:
    description: A certificate is renewed when it has this many days left or fewer.
    type: int
    default: 30
  renewal_config:
    description: Where to write the renewal timer's JSON configuration (no secrets); empty for none.
    type: path
    default: ""
"""

EXAMPLES = r"""
- name: The Daylog app behind nginx with a Let's Encrypt certificate
  lifeboat.ops.reverse_proxy_sites:
    acme_directory_url: https://acme-v02.api.letsencrypt.org/directory
    acme_email: ops@example.org
    renewal_config: /etc/lifeboat-proxy/renew.json
    sites:
      - name: daylog
        server_names: [daylog.example.org]
        upstreams: [127.0.0.1:8000]
        tls: acme
        client_max_body_size: 20m
        rate_limit: {rate: 10r/s, burst: 20}
      - name: dashboard
        server_names: [metrics.example.org]
        upstreams: [127.0.0.1:3000]
        tls: acme
        websocket: true
        basic_auth:
          users:
            - {name: ops, password: "{{ vault_dashboard_password }}"}
"""

RETURN = r"""
files:
  description: The files that changed (or would in check mode).
  returned: success
  type: list
  elements: str
certificates:
  description: Per site with a made or issued certificate, whether it changed, why, and until when it is valid
    (never key material).
  returned: success
  type: dict
  sample: {daylog: {changed: true, reason: no certificate yet, not_after: "2027-02-28T18:12:38+00:00", days_left: 90.0}}
probes:
  description: What each site answered through the proxy after the reload (when something changed).
  returned: success
  type: dict
  sample: {daylog: HTTP 200}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _reverse_proxy
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_reverse_proxy.reverse_proxy_sites_spec(), supports_check_mode=True)
    run_module(module, _reverse_proxy.reverse_proxy_sites)


if __name__ == "__main__":
    main()
