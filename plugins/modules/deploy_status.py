#!/usr/bin/python
# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deploy_status
short_description: Report the blue-green deploys of a host, and what a killed or unwatched run left
version_added: 0.2.0
description:
- Reads the deploy state of every app under O(state_dir) (what M(lifeboat.ops.app_deploy) keeps) and reports, per app,
  the live release and what needs a person.
- V(CRITICAL) when a deploy was killed mid-way (its lock record remains and nobody holds the lock), when an earlier run
  whose ansible-playbook died ended other than deployed, or when the app's switch (HAProxy) is not running or does not
  route to the live color.
- V(WARNING) when a run whose ansible-playbook died ended deployed, until the next run reports it.
- Changes nothing; the next deploy or rollback of the app repairs what is reported.
author:
- Lifeboat Developers (@lifeboat)
extends_documentation_fragment:
- ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  state_dir:
    description: The deploys' state directory (O(lifeboat.ops.app_deploy#module:state_dir)).
    type: path
    default: /var/lib/lifeboat/deploy
  switch_socket_dir:
    description: The switches' socket directory (O(lifeboat.ops.app_deploy#module:switch_socket_dir)).
    type: path
    default: /run/lifeboat-switch
"""

EXAMPLES = r"""
- name: Report the deploys of this host
  lifeboat.ops.deploy_status:
  register: deploys

- name: Fail when a deploy needs a person
  ansible.builtin.assert:
    that: deploys.state != 'CRITICAL'
    fail_msg: "{{ deploys.summary }}"
"""

RETURN = r"""
state:
  description: The worst state of the apps, V(OK), V(WARNING) or V(CRITICAL) (V(OK) when there is no app).
  returned: always
  type: str
summary:
  description: One line, the state and each problem.
  returned: always
  type: str
  sample: "CRITICAL: journal: a deploy of journal was killed at step watch (PID 4242, started ...)"
apps:
  description: Per app, C(app), C(state), C(live) (release, container, color, deployed_at) and C(reasons)
    (C(severity), C(message)).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.ops.plugins.module_utils import _deploy_status
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import run_module


def main() -> None:
    module = AnsibleModule(argument_spec=_deploy_status.deploy_status_spec(), supports_check_mode=True)
    run_module(module, _deploy_status.deploy_status)


if __name__ == "__main__":
    main()
