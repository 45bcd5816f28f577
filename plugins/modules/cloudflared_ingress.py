#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cloudflared_ingress
short_description: Check a Cloudflare tunnel's ingress rules and build its cloudflared config file
version_added: 0.2.0
description:
  - Builds the content of cloudflared's C(config.yml) from the tunnel's settings and checks its ingress rules the way
    C(cloudflared tunnel ingress validate) does (held to the answers of the real cloudflared in the collection's tests),
    and further; a rule shadowed by an earlier one (a wildcard before a specific hostname, the same hostname twice)
    fails, naming both rules; so does a service whose scheme cloudflared does not know (it would treat C(htp://) as a
    raw TCP origin), a last rule that is not a catch-all, and a metrics address off the loopback interface.
  - A refusal names the mistake where cloudflared's words would not; a misspelled key of a rule (C(hostnme)), with the
    keys a rule takes; a service without a scheme (C(localhost:8080)).
  - What cloudflared accepts and then ignores passes with a warning each; an unknown key of a rule, of
    C(originRequest) or of its C(access), an C(http_status) outside 100-599.
  - With O(cloudflared), also runs that binary on the candidate file, C(tunnel --config FILE ingress validate) and
    C(ingress rule https://HOST/) for each declared hostname, which must select the rule the collection's check
    selects. The candidate file lives in a private temporary directory and is removed afterwards.
  - Changes nothing; the C(lifeboat.ops.cloudflare_tunnel) role writes RV(config) only after this passed.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Runs the same checks; it never changes anything.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  tunnel:
    description: The named tunnel's ID (a UUID). Leave it out for a tunnel run with a token, whose ingress is managed remotely.
    type: str
  credentials_file:
    description: Path of the tunnel's credentials file on the host, as written into the config (O(tunnel) needs it).
    type: path
  ingress:
    description:
      - The ingress rules, in cloudflared's own keys (C(hostname), C(path), C(service), C(originRequest)); the last
        one must be a catch-all (no hostname, no path), for example a rule whose only key is C(service), set to
        V(http_status:404).
    type: list
    elements: dict
    required: true
  origin_request:
    description: The top-level C(originRequest) settings (cloudflared's keys, e.g. C(connectTimeout)).
    type: dict
    default: {}
  metrics:
    description: Address and port of cloudflared's metrics and C(/ready) endpoint; must be on the loopback interface.
    type: str
    default: 127.0.0.1:20241
  cloudflared:
    description: Path of an installed cloudflared binary, to have it check the candidate config too.
    type: path
"""

EXAMPLES = r"""
- name: Check the tunnel's ingress before anything is written
  lifeboat.ops.cloudflared_ingress:
    tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef
    credentials_file: /etc/cloudflared/6ff42ae2-765d-4adf-8112-31c55c1551ef.json
    ingress:
      - {hostname: ns.example.com, service: "http://127.0.0.1:1337"}
      - {service: "http_status:404"}
    cloudflared: /usr/bin/cloudflared
  register: tunnel_check
"""

RETURN = r"""
config:
  description: The checked content of cloudflared's config file (YAML).
  returned: success
  type: str
rules:
  description: The rules, one line each, with the rule's number, hostname, path and service.
  returned: success
  type: list
  elements: str
routes:
  description: For each declared hostname without a path, the URL C(https://HOST/) and the rule (1-based) it reaches.
  returned: success
  type: list
  elements: dict
checked:
  description: What checked the configuration, one line each (the collection's check, and cloudflared's when run).
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _tunnel
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_tunnel.cloudflared_ingress_spec(), supports_check_mode=True,
                           **_tunnel.CLOUDFLARED_INGRESS_RULES)
    run_module(module, _tunnel.cloudflared_ingress)


if __name__ == "__main__":
    main()
