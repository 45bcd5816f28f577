# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_deploy's input checks (one line each) and its lock (real fcntl locks on a real file)."""

from __future__ import annotations

import json
import os
import typing as t

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _deploy
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError


def params(**change: t.Any) -> dict[str, t.Any]:
    base = {name: spec.get("default") for name, spec in _deploy.DEPLOY_SPEC.items()}
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
])
def test_bad_input_is_one_line(change: dict[str, t.Any], message: str) -> None:
    with pytest.raises(LifeboatError) as raised:
        _deploy.check_input(params(**change))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_good_input_passes() -> None:
    _deploy.check_input(params())


def test_the_lock_refuses_a_second_holder_and_reports_a_crashed_one(tmp_path: t.Any) -> None:
    path = str(tmp_path / "app" / "deploy.lock")
    first = _deploy.Lock(path)
    first.acquire("journal")
    assert first.stale is None and json.load(open(path, encoding="utf-8"))["pid"] == os.getpid()
    assert (_deploy.Lock(path).busy() or {}).get("pid") == os.getpid()
    with pytest.raises(LifeboatError, match=r"another deploy of journal holds the lock .*PID \d+.*step lock"):
        _deploy.Lock(path).acquire("journal")
    first.release()
    assert open(path, encoding="utf-8").read() == "" and _deploy.Lock(path).busy() is None
    with open(path, "w", encoding="utf-8") as handle:  # a run killed at its switch: record left, lock gone
        json.dump({"pid": 4194305, "process_start": "1", "step": "switch"}, handle)
    second = _deploy.Lock(path)
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
    layout = _deploy._nginx.Layout(http_port=80, https_port=443)
    if accepted:
        found = _deploy.tunnel_in_front(str(config), "journal.example.org", tls, layout, "127.0.0.1")
        assert found.rstrip("/") == service.rstrip("/")
    else:
        with pytest.raises(LifeboatError, match=r"sends journal\.example\.org past the site's nginx; point its service"):
            _deploy.tunnel_in_front(str(config), "journal.example.org", tls, layout, "127.0.0.1")


def test_a_tunnel_config_that_cannot_be_read_is_one_line(tmp_path: t.Any) -> None:
    layout = _deploy._nginx.Layout()
    with pytest.raises(LifeboatError, match=r"^tunnel_config /nonexistent/config.yml: No such file or directory$"):
        _deploy.tunnel_in_front("/nonexistent/config.yml", "journal.example.org", False, layout, "127.0.0.1")


def test_the_secret_environment_is_hashed_with_the_apps_own_key(tmp_path: t.Any) -> None:
    """state.json keeps config_hash: without a key only this host holds, a weak password could be guessed from it."""
    given = params(state_dir=str(tmp_path), secret_environment={"DB_PASSWORD": "p@ss:w/rd?#&%'\"{{x}}"})
    key_file = tmp_path / "journal" / "secret-hash.key"
    _deploy.secret_key(given, check_mode=True)
    assert not key_file.exists()  # check mode writes nothing
    key = _deploy.secret_key(given, check_mode=False)
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key) == 32
    assert _deploy.secret_key(given, check_mode=False) == key  # kept: the same release keeps its hash
    stored = _deploy.config_hash(given, "sha256:abc", key)
    assert stored == _deploy.config_hash(given, "sha256:abc", key)
    assert stored != _deploy.config_hash(given, "sha256:abc", b"\0" * 32)  # the key, not the values alone, decides
    changed = {**given, "secret_environment": {"DB_PASSWORD": "another"}}
    assert stored != _deploy.config_hash(changed, "sha256:abc", key)  # a new password is a new release
