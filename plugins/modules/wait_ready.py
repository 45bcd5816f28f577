#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: wait_ready
short_description: Wait until an HTTP readiness endpoint answers, or fail with one line
version_added: 0.2.0
description:
  - GETs O(url) every O(interval) seconds until it answers one of O(expect_status), such as cloudflared's C(/ready)
    once the tunnel holds a connection to Cloudflare (it answers 503 before).
  - Fails after O(timeout) seconds with one line that says how many tries were made and what the last one answered.
  - Changes nothing.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Waits as usual; it never changes anything.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  url:
    description: The endpoint, e.g. C(http://127.0.0.1:20241/ready).
    type: str
    required: true
  timeout:
    description: Seconds to wait in all.
    type: int
    default: 60
  interval:
    description: Seconds between tries.
    type: float
    default: 1.0
  expect_status:
    description: HTTP status codes that mean ready.
    type: list
    elements: int
    default: [200]
"""

EXAMPLES = r"""
- name: Wait for the tunnel to be connected
  lifeboat.ops.wait_ready:
    url: http://127.0.0.1:20241/ready
    timeout: 60
"""

RETURN = r"""
status:
  description: The status the endpoint answered.
  returned: success
  type: int
attempts:
  description: How many requests it took.
  returned: success
  type: int
elapsed:
  description: Seconds until it was ready.
  returned: success
  type: float
url:
  description: The endpoint.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _tunnel
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_tunnel.wait_ready_spec(), supports_check_mode=True)
    run_module(module, _tunnel.wait_ready)


if __name__ == "__main__":
    main()
