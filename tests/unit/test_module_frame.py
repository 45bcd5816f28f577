# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""run_module(), the frame of every module, with a stand-in for AnsibleModule that records how the module ended.

The integration tests run the real modules through ansible-playbook; these reach the frame's every path directly.
"""

from __future__ import annotations

import signal
import typing as t

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _common, _termination
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError, register_secret
from ansible_collections.lifeboat.ops.plugins.module_utils._module_frame import Outcome, Run, run_module

SECRET = "p@ss:w/rd?#&%'\"{{x}}"


class FakeModule:
    """The parts of AnsibleModule the frame uses; the end of the module is recorded, with the masked values then."""

    def __init__(self, params: dict[str, t.Any] | None = None, check_mode: bool = False, diff: bool = False):
        self.params = params or {}
        self.check_mode = check_mode
        self._diff = diff
        self.no_log_values: set[str] = set()
        self.warnings: list[str] = []
        self.ended: list[tuple[str, dict[str, t.Any], set[str], list[str]]] = []

    def warn(self, warning: str) -> None:
        self.warnings.append(warning)

    def exit_json(self, **kwargs: t.Any) -> None:
        self.ended.append(("exit", kwargs, set(self.no_log_values), list(self.warnings)))

    def fail_json(self, msg: str, **kwargs: t.Any) -> None:
        self.ended.append(("fail", {"msg": msg, **kwargs}, set(self.no_log_values), list(self.warnings)))

    @property
    def end(self) -> tuple[str, dict[str, t.Any], set[str], list[str]]:
        assert len(self.ended) == 1, self.ended  # a module ends exactly once
        return self.ended[0]


@pytest.fixture(autouse=True)
def _clean_state() -> t.Iterator[None]:
    """The secret registry and the stop signal are per process, and the frame installs signal handlers: leave all
    three as found."""
    secrets = set(_common._SECRETS)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    yield
    _common._SECRETS.clear()
    _common._SECRETS.update(secrets)
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    _termination.STOP_SIGNAL.clear()


def test_the_task_gets_the_options_and_the_modes() -> None:
    seen: list[Run] = []

    def task(run: Run) -> Outcome:
        seen.append(run)
        return Outcome()

    module = FakeModule(params={"destination": "/srv"}, check_mode=True, diff=True)
    run_module(module, task)
    assert (seen[0].params, seen[0].check_mode, seen[0].diff) == ({"destination": "/srv"}, True, True)
    assert module.end[:2] == ("exit", {"changed": False})


def test_an_outcome_exits_with_changed_its_result_keys_and_diff() -> None:
    diff = {"before": "a\n", "after": "b\n", "before_header": "/srv", "after_header": "/srv"}
    module = FakeModule()
    run_module(module, lambda run: Outcome(changed=True, result={"archive": "/srv/a", "msg": "done"}, diff=diff))
    assert module.end[:2] == ("exit", {"changed": True, "archive": "/srv/a", "msg": "done", "diff": diff})


def test_a_failed_outcome_fails_with_its_message_and_its_result_keys() -> None:
    """backup_verify's failed archives, migration_validate's result: the keys come with the failure."""
    module = FakeModule()
    results = [{"ok": False, "failure": "checksum differs"}]
    run_module(module, lambda run: Outcome(changed=True, result={"results": results, "failed_count": 1},
                                           failure="checksum differs"))
    assert module.end[:2] == ("fail", {"msg": "checksum differs", "changed": True, "results": results,
                                       "failed_count": 1})


def test_a_lifeboat_error_fails_with_its_one_line_and_nothing_else() -> None:
    def task(run: Run) -> Outcome:
        raise LifeboatError("destination /srv/x does not exist;\n  create it first")

    module = FakeModule()
    run_module(module, task)
    assert module.end[:2] == ("fail", {"msg": "destination /srv/x does not exist; create it first"})


def test_an_unexpected_error_fails_with_one_line_and_the_traceback_apart() -> None:
    def task(run: Run) -> Outcome:
        raise KeyError("first line\nsecond line")

    module = FakeModule()
    run_module(module, task)
    kind, result = module.end[:2]
    assert kind == "fail"
    assert result["msg"] == "unexpected error: 'first line\\nsecond line'"  # KeyError's repr keeps one line
    assert "Traceback (most recent call last)" in result["exception"] and "KeyError" in result["exception"]
    assert set(result) == {"msg", "exception"}

    def multiline(run: Run) -> Outcome:
        raise ValueError("first line\nsecond line")

    module = FakeModule()
    run_module(module, multiline)
    assert module.end[1]["msg"] == "unexpected error: first line"


@pytest.mark.parametrize("ending", ["outcome", "failure", "lifeboat_error", "unexpected"])
def test_secrets_the_task_registered_are_masked_before_the_module_ends(ending: str) -> None:
    """Registered while the task runs (e.g. from login_password), they are in no_log_values when the module ends."""

    def task(run: Run) -> Outcome:
        register_secret(SECRET)
        if ending == "lifeboat_error":
            raise LifeboatError("login failed")
        if ending == "unexpected":
            raise RuntimeError("a bug")
        return Outcome(failure="did not pass" if ending == "failure" else None)

    module = FakeModule()
    run_module(module, task)
    masked_at_the_end = module.end[2]
    assert SECRET in masked_at_the_end


@pytest.mark.parametrize("ending", ["outcome", "failure", "lifeboat_error", "unexpected"])
def test_warnings_reach_the_user_however_the_task_ends(ending: str) -> None:
    """A restore warns that it chose the newest archive, then fails: the warning still comes with the failure."""

    def task(run: Run) -> Outcome:
        run.warn("restoring the newest archive of job nightly")
        run.warn("second")
        if ending == "lifeboat_error":
            raise LifeboatError("target exists")
        if ending == "unexpected":
            raise RuntimeError("a bug")
        return Outcome(failure="did not pass" if ending == "failure" else None)

    module = FakeModule()
    run_module(module, task)
    warned_before_the_end = module.end[3]
    assert warned_before_the_end == ["restoring the newest archive of job nightly", "second"]


def test_a_termination_signal_ends_the_task_with_a_one_line_failure() -> None:
    """The frame installs the termination handler: SIGTERM outside a stream stops the task as a LifeboatError."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # without the frame's handler, the signal would go unnoticed

    def task(run: Run) -> Outcome:
        signal.raise_signal(signal.SIGTERM)
        return Outcome(changed=True)

    module = FakeModule()
    run_module(module, task)
    assert module.end[:2] == ("fail", {"msg": "stopped by SIGTERM before the work was done"})
