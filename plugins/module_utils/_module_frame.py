# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The one frame every module runs in: termination handler, error translation, secrets kept out of results.

A module builds its AnsibleModule (the argument spec and its rules) and hands it to run_module() with its task
(``<module>(run)``, beside ``<module>_spec()`` in the library file of its area: docs/architecture.md). The
AnsibleModule is taken duck-typed, so that this library stays free of Ansible and the frame can be tested with a
plain object.
"""

from __future__ import annotations

import traceback
import typing as t
from dataclasses import dataclass, field

from ._common import LifeboatError, one_line, registered_secrets
from ._termination import stop_cleanly_on_termination


class ModuleLike(t.Protocol):
    """What the frame uses of ansible.module_utils.basic.AnsibleModule."""

    params: dict[str, t.Any]
    check_mode: bool
    _diff: bool
    no_log_values: set[str]

    def warn(self, warning: str) -> None: ...

    def exit_json(self, **kwargs: t.Any) -> None: ...

    def fail_json(self, msg: str, **kwargs: t.Any) -> None: ...


@dataclass
class Run:
    """What a task gets: the validated options, the mode it runs in, and a place for its warnings."""

    params: dict[str, t.Any]
    check_mode: bool = False
    diff: bool = False  # the user asked for a diff (--diff): the task adds Outcome.diff only then
    warnings: list[str] = field(default_factory=list)

    def warn(self, warning: str) -> None:
        """Warnings reach the user with the result, whether the task then succeeds or fails."""
        self.warnings.append(warning)


@dataclass
class Outcome:
    """How a task ended: the module exits with `changed` and `result`, or fails with `failure` and them."""

    changed: bool = False
    result: dict[str, t.Any] = field(default_factory=dict)
    diff: dict[str, str] | None = None
    failure: str | None = None  # the one-line message of a task that ran to the end and did not pass


Task = t.Callable[[Run], Outcome]


def run_module(module: ModuleLike, task: Task) -> None:
    """Run the task and end the module with its outcome: exit_json, or fail_json with a one-line message."""
    stop_cleanly_on_termination()
    run = Run(params=module.params, check_mode=module.check_mode, diff=module._diff)  # pylint: disable=protected-access
    try:
        outcome = task(run)
    except LifeboatError as exc:
        _hand_over(module, run)
        module.fail_json(msg=str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - a bug of ours: one line here, the traceback with -vvv
        _hand_over(module, run)
        module.fail_json(msg=f"unexpected error: {one_line(exc)}", exception=traceback.format_exc())
        return
    _hand_over(module, run)
    result = dict(outcome.result)
    if outcome.diff is not None:
        result["diff"] = outcome.diff
    if outcome.failure is not None:
        module.fail_json(msg=outcome.failure, changed=outcome.changed, **result)
        return
    module.exit_json(changed=outcome.changed, **result)


def _hand_over(module: ModuleLike, run: Run) -> None:
    """Just before the module ends: every secret known by now is masked in what it returns, warnings included."""
    module.no_log_values.update(registered_secrets())
    for warning in run.warnings:
        module.warn(warning)
