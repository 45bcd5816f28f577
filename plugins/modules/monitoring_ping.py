#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: monitoring_ping
short_description: Ping healthchecks.io-style checks, Uptime Kuma push monitors and ntfy topics about a backup run
version_added: 0.2.0
description:
  - Sends a run's V(start), V(success) or V(fail) ping to every target given, as the lifeboat.ops.backup role does
    around its jobs and the C(lifeboat) host command does in the scheduled units.
  - C(healthchecks) URLs get a POST to C(URL/start), C(URL) or C(URL/fail); a failure's body is O(log).
  - C(uptime_kuma) push URLs get C(status=up) or C(status=down) with O(summary) as C(msg); Kuma has no start state.
  - C(ntfy) topic URLs get O(summary) POSTed on success (low priority) and failure (high priority, with O(log)).
  - A ping that is not delivered (receiver down, HTTP error) never fails the task; it is one warning, and the URL
    (which holds a token) is shown nowhere.
author:
  - Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Sends nothing in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  state:
    description:
      - Which ping to send.
    type: str
    required: true
    choices: [start, success, fail]
  summary:
    description:
      - One line that says what happened (Uptime Kuma's C(msg), the ntfy message, the healthchecks body).
    type: str
    default: ""
  log:
    description:
      - The end of the run's log, sent with a V(fail) ping.
    type: str
    default: ""
  healthchecks:
    description:
      - healthchecks.io-style ping URLs (C(https://hc-ping.com/UUID)). Secret.
    type: list
    elements: str
    default: []
  uptime_kuma:
    description:
      - Uptime Kuma push URLs (C(https://kuma.example.org/api/push/TOKEN)). Secret.
    type: list
    elements: str
    default: []
  ntfy:
    description:
      - ntfy topic URLs (C(https://ntfy.sh/TOPIC)). Secret.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Tell healthchecks.io the backup starts
  lifeboat.ops.monitoring_ping:
    state: start
    healthchecks: ["{{ vault_hc_ping_url }}"]
"""

RETURN = r"""
pinged:
  description: How many targets took the ping.
  returned: always
  type: int
problems:
  description: One line per target that did not take it (its kind and number, never its URL).
  returned: always
  type: list
  elements: str
  sample: ["healthchecks #1: [Errno 111] Connection refused"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _pings
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_pings.monitoring_ping_spec(), supports_check_mode=True)
    run_module(module, _pings.monitoring_ping)


if __name__ == "__main__":
    main()
