#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nginx_upstream
short_description: Switch the upstream of a reverse-proxy site atomically and prove the new one answers
version_added: 0.1.0
description:
  - The one operation a blue-green deploy uses to move a site's traffic. It rewrites only the site's upstream file
    (written by M(lifeboat.ops.reverse_proxy_sites)), runs C(nginx -t) on the whole new configuration, reloads nginx,
    waits for its new workers, and asks the proxy itself for the site until it answers as expected (O(expect_status),
    O(expect_body), e.g. the new version's marker).
  - Requests in flight finish on the old workers; nginx's reload is graceful, so no request fails across the switch.
  - If any step fails, the previous upstream file is put back and nginx reloaded with it; the task fails with one
    line that names the step and nginx's own message.
  - Note that the next run of the C(lifeboat.ops.reverse_proxy) role writes the upstreams of its inventory again,
    so keep the inventory in step with a switch.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lifeboat.ops._reverse_proxy
attributes:
  check_mode:
    support: full
    details: Says whether the upstream file would change; writes and reloads nothing.
  diff_mode:
    support: full
    details: The upstream file before and after.
  platform:
    platforms: posix
options:
  site:
    description: Name of the site (as in the role's C(reverse_proxy_sites)).
    type: str
    required: true
  upstreams:
    description: The new upstream servers, C(host:port) or C(unix:/path).
    type: list
    elements: str
    required: true
  keepalive:
    description: Idle keepalive connections to the upstream per worker (0 for none).
    type: int
    default: 16
  probe_host:
    description: Host name of the proof request (Host header and SNI); default the site's first server name.
    type: str
  probe_path:
    description: Path of the proof request.
    type: str
    default: /
  expect_status:
    description: HTTP statuses that prove the switch; empty for any status below 500.
    type: list
    elements: int
    default: []
  expect_body:
    description: Regular expression the proof response's body must match (e.g. the new upstream's version).
    type: str
    default: ""
  probe_timeout:
    description: Seconds the new upstream has to answer through the proxy before the switch is rolled back.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Move the app's traffic to the green containers
  lifeboat.ops.nginx_upstream:
    site: daylog
    upstreams: [127.0.0.1:8002]
    probe_path: /version
    expect_status: [200]
    expect_body: '"color": "green"'
"""

RETURN = r"""
upstreams:
  description: The upstream servers the site now uses.
  returned: success
  type: list
  elements: str
probe:
  description: What the proof request through the proxy got (empty in check mode or when nothing changed).
  returned: success
  type: str
  sample: HTTP 200
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _reverse_proxy
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_reverse_proxy.nginx_upstream_spec(), supports_check_mode=True)
    run_module(module, _reverse_proxy.nginx_upstream)


if __name__ == "__main__":
    main()
