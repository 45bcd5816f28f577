# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy's fault matrix: a run SIGKILLed at each step, then a deploy, then a rollback, all under load.

Whatever step a run dies at (lock taken, backup, start, migrate, gate, switched, watch, finish), the site keeps
serving (no request fails, none answers 5xx), and the next deploy and the next rollback complete. The kill point is
the step the run's lock record names (the run writes it as each step begins); long steps (gate, watch, finish) are
made long on purpose so that the kill lands inside them. "Upstream written, never loaded" (a kill between the two,
a window of milliseconds) is built by hand, as a killed run leaves it.
"""

from __future__ import annotations

import json
import os
import signal
import time
import typing as t

import pytest
from load_loop import LoadLoop  # pylint: disable=import-error
from test_deploy import ROWS, app, bed, containers_of, release, serving  # noqa: F401  pylint: disable=import-error,unused-import

from ansible_collections.lifeboat.ops.plugins.module_utils import _nginx
from testbed import start_module  # pylint: disable=import-error

# The step a run is killed at, and what makes that step last long enough to be hit.
STEPS: dict[str, dict[str, t.Any]] = {
    "reconcile": {},
    "backup": {},
    "start": {},
    "migrate": {"migration_command": ["sh", "-c", "sleep 3; python3 /usr/local/bin/deploy-app migrate"]},
    "gate": {"health_passes": 12, "health_interval": 0.25},
    "watch": {"watch_probes": 40, "watch_interval": 0.1},  # traffic switched, the new release not yet recorded
    "finish": {"drain_timeout": 3},  # the new release recorded, the old color draining
}


def lock_step(app_: dict[str, t.Any]) -> str | None:
    try:
        with open(os.path.join(app_["state"], "deploy.lock"), encoding="utf-8") as handle:
            return json.loads(handle.read() or "{}").get("step")
    except (OSError, ValueError):
        return None


def kill_at(process: t.Any, app_: dict[str, t.Any], step: str, seconds: float = 120) -> str:
    """SIGKILL the run as soon as its lock record names ``step``; the step it was at."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        at = lock_step(app_)
        if at == step:
            time.sleep(0.15 if step in ("gate", "watch", "finish", "migrate") else 0)
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
            return at
        if process.poll() is not None:
            raise AssertionError(f"the run ended before step {step}: {process.communicate()}")
        time.sleep(0.002)
    raise AssertionError(f"the run never reached step {step}")


def status_args(app_: dict[str, t.Any]) -> dict[str, t.Any]:
    return {"state_dir": app_["args"]["state_dir"], "switch_socket_dir": app_["args"]["switch_socket_dir"]}


def deploy_then_roll_back(bed: dict[str, t.Any], app_: dict[str, t.Any], run_module: t.Any,  # noqa: F811
                          previous: str) -> None:
    after = run_module("app_deploy", release(bed, app_, "v3"))
    assert after.rc == 0 and after.result["history"]["outcome"] == "deployed", after.stdout + after.stderr
    assert serving(bed) == f"200 version v3, {ROWS} notes"
    back = run_module("app_deploy", {**app_["args"], "deploy_action": "rollback"})
    assert back.rc == 0 and back.result["history"]["outcome"] == "rolled_back", back.stdout + back.stderr
    assert serving(bed).startswith(f"200 version {previous},")


@pytest.mark.parametrize("method", ["haproxy", "nginx_reload"])
@pytest.mark.parametrize("step", list(STEPS))
def test_a_run_killed_at_any_step_leaves_the_site_serving_and_the_next_runs_complete(
        bed: dict[str, t.Any], app: dict[str, t.Any], run_module: t.Any, tmp_path: t.Any,  # noqa: F811
        step: str, method: str) -> None:
    app["args"]["switch_method"] = method
    first = run_module("app_deploy", release(bed, app, "v1"))
    assert first.rc == 0, first.stdout + first.stderr
    with LoadLoop(bed["layout"].http_port, path="/version", rate=100, workers=2) as load:
        killed = start_module("app_deploy", release(bed, app, "v2", **STEPS[step]), tmp_path)
        at = kill_at(killed, app, step)
        stopped = time.monotonic()
        # whatever the kill left, the site answers (the old color, or the new one from the watch on)
        status = run_module("deploy_status", status_args(app))
        assert status.rc == 0 and status.result["state"] == "CRITICAL", status.stdout
        assert f"a deploy of {app['name']} was killed at step {step}" in status.result["summary"]
        deploy_then_roll_back(bed, app, run_module, "v2" if step == "finish" else "v1")
        status = run_module("deploy_status", status_args(app))
        assert status.result["state"] == "OK" and status.result["apps"][0]["live"]["release"] in ("v1", "v2"), \
            status.result
    after = [(at_, status, body) for at_, status, body in load.non_2xx if at_ >= stopped]
    print(f"killed at {at}; load: {load.summary()}; served {load.bodies}")
    assert load.failed() == 0 and not after, (load.non_2xx[:3], load.errors[:3])
    assert sorted(containers_of(bed, app["name"]).values()).count("running") == 1


@pytest.mark.parametrize("method", ["haproxy", "nginx_reload"])
def test_an_upstream_written_but_never_loaded_is_loaded_before_anything_stops(
        bed: dict[str, t.Any], app: dict[str, t.Any], run_module: t.Any, method: str) -> None:  # noqa: F811
    """A run killed between writing the site's upstream and reloading nginx leaves the file naming the new color
    while nginx serves the old one. The next run must not trust the file (the bug: it skipped the reload, then
    stopped the color nginx still sent every request to: 502 until someone reloaded by hand)."""
    app["args"]["switch_method"] = method
    assert run_module("app_deploy", release(bed, app, "v1")).rc == 0
    layout = bed["layout"]
    path = layout.upstream_file("app")
    green = f"127.0.0.1:{app['args']['green_port']}"
    with open(path, "wb") as handle:  # what the killed run wrote: the next color's port (the next deploy's color)
        handle.write(_nginx.render_upstream("app", [green], 16).encode())
    with LoadLoop(layout.http_port, path="/version", rate=100, workers=2) as load:
        deploy_then_roll_back(bed, app, run_module, "v1")
    print(f"load: {load.summary()}")
    assert load.failed() == 0, (load.non_2xx[:3], load.errors[:3])


def test_a_killed_ansible_playbook_leaves_a_run_that_finishes_and_is_reported(
        bed: dict[str, t.Any], app: dict[str, t.Any], run_module: t.Any, run_playbook: t.Any,  # noqa: F811
        tmp_path: t.Any) -> None:
    """The controller dies mid-deploy: the module, orphaned, ends its run (gates and all) and leaves its outcome;
    the next run returns it and warns."""
    assert run_module("app_deploy", release(bed, app, "v1")).rc == 0
    import subprocess
    import sys

    import yaml

    from testbed import Unsafe, UnsafeDumper, collections_root, module_env  # pylint: disable=import-error

    args = release(bed, app, "v2", health_passes=12, health_interval=0.25)
    host_vars = {name if name.startswith("deploy_") else f"deploy_{name}": value for name, value in args.items()
                 if name != "secret_environment"}
    secrets = tmp_path / "secrets.yml"  # as AWX writes credentials: !unsafe, never templated
    secrets.write_text(yaml.dump({"deploy_secret_environment": {key: Unsafe(value) for key, value in
                                                                args["secret_environment"].items()}},
                                 Dumper=UnsafeDumper))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}}}}))
    playbook = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "lifeboat.ops.deploy", "-i",
         str(inventory), "-e", f"@{secrets}"], stdout=(tmp_path / "playbook.out").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**module_env(), "ANSIBLE_COLLECTIONS_PATH": collections_root(),
             "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")})
    try:
        kill_at(playbook, app, "gate")
    except AssertionError:
        raise AssertionError((tmp_path / "playbook.out").read_text()[-3000:]) from None
    deadline = time.monotonic() + 120
    unreported = os.path.join(app["state"], "unreported.json")
    while not os.path.exists(unreported) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = json.loads(open(unreported, encoding="utf-8").read())
    assert left["outcome"] == "deployed" and left["release"] == "v2", left
    status = run_module("deploy_status", status_args(app))
    assert status.result["state"] == "WARNING", status.result
    assert "ran on after ansible-playbook stopped and ended deployed" in status.result["summary"]
    # the status playbook, as AWX runs it on every host, says so too
    seen = run_playbook("status", {"backup_status_destinations": [os.path.join(app["state"], "backups")],
                                   "deploy_state_dir": app["args"]["state_dir"],
                                   "deploy_switch_socket_dir": app["args"]["switch_socket_dir"]})
    assert "deploys WARNING: " in seen.stdout and "ran on after ansible-playbook stopped" in seen.stdout, \
        seen.stdout[-3000:]
    assert serving(bed) == f"200 version v2, {ROWS} notes"
    nxt = run_module("app_deploy", release(bed, app, "v3"))
    assert nxt.rc == 0, nxt.stdout
    assert nxt.result["history"]["unreported"]["outcome"] == "deployed"
    assert "ran on after ansible-playbook stopped and ended deployed" in str(nxt.result["warnings"])
    assert not os.path.exists(unreported)  # reported once
    history = json.loads(open(left["history"], encoding="utf-8").read())
    assert history["orphaned"] is True and history["outcome"] == "deployed"


def test_an_upstream_changed_by_hand_is_put_back_on_the_switch(bed: dict[str, t.Any], app: dict[str, t.Any],  # noqa: F811
                                                                run_module: t.Any) -> None:
    """nginx sends the site past the switch (an upstream edited by hand and reloaded): the next run puts it back on
    the switch before it moves anything, so that the switch's proof and drain mean what they say."""
    assert run_module("app_deploy", release(bed, app, "v1")).rc == 0
    # the site's nginx sends its traffic past the switch (someone edited the upstream by hand, and reloaded)
    blue = f"127.0.0.1:{app['args']['blue_port']}"
    _nginx.switch_upstream("app", [blue], 16, bed["layout"], bed["control"], None)
    with LoadLoop(bed["layout"].http_port, path="/version", rate=100) as load:
        done = run_module("app_deploy", release(bed, app, "v2"))
    assert done.rc == 0 and done.result["history"]["reconcile"]["routing"]["nginx"]["reloaded"], done.stdout
    assert serving(bed) == f"200 version v2, {ROWS} notes" and load.failed() == 0, load.summary()
