# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_deploy's input checks (one line each) and its lock (_deploy_records: real fcntl locks on a real file)."""

from __future__ import annotations

import json
import os
import typing as t
from types import SimpleNamespace

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import (
    _deploy,
    _deploy_docker,
    _deploy_records,
    _deploy_routing,
    _nginx,
)
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError


def params(**change: t.Any) -> dict[str, t.Any]:
    base = {name: spec.get("default") for name, spec in _deploy.app_deploy_spec().items()}
    base.update(app="journal", image="journal:2", site="journal")
    base.update(change)
    return base


@pytest.mark.parametrize(("change", "message"), [
    ({"app": "bad name"}, "app 'bad name' must be 1-63 letters"),
    ({"health_passes": 0}, "health_passes must be 1 or more, not 0"),
    ({"watch_probes": -3}, "watch_probes must be 0 or more, not -3"),
    ({"watch_interval": -0.5}, "watch_interval must be 0 or more, not -0.5"),
    ({"watch_max_error_percent": 101}, "watch_max_error_percent must be between 0 and 100"),
    ({"keep_releases": 0}, "keep_releases must be 1 or more, not 0"),
    ({"green_port": 70000}, "green_port must be a TCP port (1-65535), not 70000"),
    ({"green_port": 8081}, "blue_port and green_port must differ"),
    ({"health_path": "health"}, "health_path 'health' must be a path on the app, starting with '/'"),
    ({"health_path": "http://host/health"}, "must be a path on the app"),
    ({"health_path": "/a#b"}, "must be a path on the app"),
    ({"health_path": "http://[::1/x"}, "must be a path on the app"),
    ({"health_body": "("}, "health_body is not a regular expression"),
    ({"migration_command": ["migrate", ""]}, "migration_command has an empty argument"),
    ({"health_status": [200, 42]}, "health_status[1] is not an HTTP status code (100-599)"),
    ({"health_status": [600]}, "health_status[0] is not an HTTP status code (100-599)"),
    ({"health_status": []}, "health_status must list at least one HTTP status code"),
    ({"secret_environment": "DB_PASSWORD=hunter2 DB_USER=app"},
     "secret_environment must be a mapping of NAME: value, not a string"),
    ({"secret_environment": ["hunter2"]}, "secret_environment must be a mapping of NAME: value, not a list"),
    ({"secret_environment": {"DB_PASSWORD": ["hunter2", "x"]}},
     "secret_environment.DB_PASSWORD must be a string or a number, not a list"),
    ({"secret_environment": {"DB": {"PASSWORD": "hunter2"}}},
     "secret_environment.DB must be a string or a number, not a mapping"),
    ({"secret_environment": {"DB_PASSWORD": None}}, "secret_environment.DB_PASSWORD must be a string or a number, not null"),
    ({"secret_environment": {"DB_PASSWORD=hunter2": "x"}}, "secret_environment has a key that is not a variable name"),
    ({"environment": {"HOSTS": ["a", "b"]}}, "environment.HOSTS must be a string or a number, not a list"),
    ({"environment": {"DEBUG": True}}, "environment.DEBUG must be a string or a number, not a boolean"),
    ({"environment": "HOSTS=a"}, "environment must be a mapping of NAME: value, not a string"),
])
def test_bad_input_is_one_line(change: dict[str, t.Any], message: str) -> None:
    with pytest.raises(LifeboatError) as raised:
        _deploy.check_input(params(**change))
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert "hunter2" not in str(raised.value)  # the key is named, never the value


def test_numbers_in_the_environment_are_passed_as_written() -> None:
    given = params(environment={"PORT": 5432, "RATIO": 0.5, "NAME": "journal"}, secret_environment={"PIN": 1234})
    _deploy.check_input(given)
    assert given["environment"] == {"PORT": "5432", "RATIO": "0.5", "NAME": "journal"}
    assert given["secret_environment"] == {"PIN": "1234"}


def test_good_input_passes() -> None:
    _deploy.check_input(params())


def test_the_lock_refuses_a_second_holder_and_reports_a_crashed_one(tmp_path: t.Any) -> None:
    path = str(tmp_path / "app" / "deploy.lock")
    first = _deploy_records.Lock(path)
    first.acquire("journal")
    assert first.stale is None and json.load(open(path, encoding="utf-8"))["pid"] == os.getpid()
    assert (_deploy_records.Lock(path).busy() or {}).get("pid") == os.getpid()
    with pytest.raises(LifeboatError, match=r"another deploy of journal holds the lock .*PID \d+.*step lock"):
        _deploy_records.Lock(path).acquire("journal")
    first.release()
    assert open(path, encoding="utf-8").read() == "" and _deploy_records.Lock(path).busy() is None
    with open(path, "w", encoding="utf-8") as handle:  # a run killed at its switch: record left, lock gone
        json.dump({"pid": 4194305, "process_start": "1", "step": "switch"}, handle)
    second = _deploy_records.Lock(path)
    second.acquire("journal")
    assert second.stale == {"pid": 4194305, "process_start": "1", "step": "switch", "owner_alive": False}
    second.release()


@pytest.mark.parametrize(("service", "tls", "accepted"), [
    ("https://localhost", True, True),  # port 443 unsaid
    ("https://127.0.0.1:443", True, True),
    ("http://127.0.0.1:443", True, False),  # a TLS site's listener spoken to in plain HTTP
    ("http://10.0.0.5:80", False, False),
    ("http://127.0.0.1:8081", False, False),  # a color's port
])
def test_a_tunnel_in_front_must_send_the_hostname_to_the_site_listener(tmp_path: t.Any, service: str, tls: bool,
                                                                       accepted: bool) -> None:
    config = tmp_path / "config.yml"
    config.write_text("ingress:\n  - hostname: journal.example.org\n"
                      f"    service: {service}\n  - service: http_status:404\n")
    layout = _nginx.Layout(http_port=80, https_port=443)
    if accepted:
        found = _deploy_routing.tunnel_in_front(str(config), "journal.example.org", tls, layout, "127.0.0.1")
        assert found.rstrip("/") == service.rstrip("/")
    else:
        with pytest.raises(LifeboatError, match=r"sends journal\.example\.org past the site's nginx; point its service"):
            _deploy_routing.tunnel_in_front(str(config), "journal.example.org", tls, layout, "127.0.0.1")


def test_a_tunnel_config_that_cannot_be_read_is_one_line(tmp_path: t.Any) -> None:
    layout = _nginx.Layout()
    with pytest.raises(LifeboatError, match=r"^tunnel_config /nonexistent/config.yml: No such file or directory$"):
        _deploy_routing.tunnel_in_front("/nonexistent/config.yml", "journal.example.org", False, layout, "127.0.0.1")


def test_the_secret_environment_is_hashed_with_the_apps_own_key(tmp_path: t.Any) -> None:
    """state.json keeps config_hash: without a key only this host holds, a weak password could be guessed from it."""
    given = params(state_dir=str(tmp_path), secret_environment={"DB_PASSWORD": "p@ss:w/rd?#&%'\"{{x}}"})
    key_file = tmp_path / "journal" / "secret-hash.key"
    _deploy_records.secret_key(given, check_mode=True)
    assert not key_file.exists()  # check mode writes nothing
    key = _deploy_records.secret_key(given, check_mode=False)
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key) == 32
    assert _deploy_records.secret_key(given, check_mode=False) == key  # kept: the same release keeps its hash
    stored = _deploy_records.config_hash(given, "sha256:abc", key)
    assert stored == _deploy_records.config_hash(given, "sha256:abc", key)
    assert stored != _deploy_records.config_hash(given, "sha256:abc", b"\0" * 32)  # the key, not the values alone, decides
    changed = {**given, "secret_environment": {"DB_PASSWORD": "another"}}
    assert stored != _deploy_records.config_hash(changed, "sha256:abc", key)  # a new password is a new release


def test_ansible_hands_a_string_environment_over_unsplit() -> None:
    """AnsibleModule's dict type check (check_type_dict) turns 'K=V K=V' into a mapping; the options are raw so
    that check_input sees the string and refuses it."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    given = {"app": "journal", "site": "journal", "image": "journal:2", "secret_environment": "DB_PASSWORD=hunter2 A=b"}
    validated = ArgumentSpecValidator(_deploy.app_deploy_spec()).validate(given)
    assert not validated.error_messages, validated.error_messages
    assert validated.validated_parameters["secret_environment"] == "DB_PASSWORD=hunter2 A=b"
    assert "DB_PASSWORD=hunter2 A=b" in validated._no_log_values  # pylint: disable=protected-access
    with pytest.raises(LifeboatError, match=r"^secret_environment must be a mapping of NAME: value, not a string"):
        _deploy.check_input(validated.validated_parameters)


@pytest.mark.parametrize("live", [None, {"container": "journal-blue-1", "release": "v1"}])
def test_a_rollback_with_nothing_to_roll_back_is_refused(live: dict[str, t.Any] | None) -> None:
    entry: dict[str, t.Any] = {"steps": []}
    with pytest.raises(LifeboatError) as raised:
        _deploy._rollback(params(deploy_action="rollback"), {"live": live, "previous": None},
                          t.cast(_deploy_docker.DockerHost, None), t.cast(_deploy_routing.NginxReload, None),
                          _deploy_records.Steps(entry, None), entry, False)
    message = str(raised.value)
    assert message.startswith("nothing to roll back: no previous release of journal is kept") and "\n" not in message
    assert ("journal-blue-1 (release v1) still serves" if live else "no release of journal is live") in message


def test_a_run_that_raised_is_refused_or_failed_by_what_it_had_started(monkeypatch: pytest.MonkeyPatch) -> None:
    given = params()

    def raising(entry: dict[str, t.Any]) -> t.Callable[..., t.Any]:
        def run(*_args: t.Any) -> t.Any:
            raise _deploy.RunStopped(entry["reason"], entry)
        return run

    refused = {"app": "journal", "action": "deploy", "outcome": "refused", "reason": "site journal does not exist",
               "steps": [{"name": "state"}]}
    monkeypatch.setattr(_deploy, "run", raising(refused))
    outcome = _deploy.app_deploy(SimpleNamespace(params=given, check_mode=False, warn=lambda _text: None))
    assert outcome.result["history"] is refused and not outcome.changed
    assert outcome.failure == "site journal does not exist (refused: traffic and releases stay as they were)"
    failed = {"app": "journal", "outcome": "failed", "reason": "nginx -t failed",
              "steps": [{"name": "state"}, {"name": "start"}, {"name": "rollback"}]}
    monkeypatch.setattr(_deploy, "run", raising(failed))
    outcome = _deploy.app_deploy(SimpleNamespace(params=given, check_mode=False, warn=lambda _text: None))
    assert outcome.result["history"]["outcome"] == "failed" and outcome.changed
    assert outcome.failure.startswith("nginx -t failed (the run stopped at step rollback after it started changing")


def test_a_refused_run_still_warns_of_the_unwatched_run_it_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The refused run cleared unreported.json: its warning is the only place the operator learns of it."""
    entry: dict[str, t.Any] = {
        "app": "journal", "action": "deploy", "outcome": "refused", "reason": "site journal does not exist",
        "steps": [{"name": "state"}],
        "unreported": {"action": "deploy", "outcome": "rolled_back", "started": "2026-12-07T04:00:00Z",
                       "history": "h.json"}}

    def run(*_args: t.Any) -> t.Any:
        raise _deploy.RunStopped(entry["reason"], entry)

    monkeypatch.setattr(_deploy, "run", run)
    warnings: list[str] = []
    _deploy.app_deploy(SimpleNamespace(params=params(), check_mode=False, warn=warnings.append))
    assert warnings == ["an earlier deploy of journal (started 2026-12-07T04:00:00Z) ran on after ansible-playbook "
                        "stopped and ended rolled_back; its history: h.json"]
