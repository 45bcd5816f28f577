# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action groups of meta/runtime.yml: connection options set once with module_defaults."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from testbed import MONGO_SOURCE, PG_SOURCE, collections_root, listing, module_env


def run_play(tmp_path, play):
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    env = {**module_env(), "ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")}
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
        capture_output=True, text=True, env=env, timeout=600, check=False)


def test_connection_options_come_from_the_engine_groups(pg, mongo, tmp_path):
    destination = tmp_path / "backups"
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "module_defaults": {
            "group/lifeboat.ops.postgresql": pg.login(),
            "group/lifeboat.ops.mongodb": mongo.login(login_database="admin"),
            "group/lifeboat.ops.all": {"destination": str(destination)},
        },
        "tasks": [
            {"name": "Dump PostgreSQL", "lifeboat.ops.postgresql_dump": {"database": PG_SOURCE, "job": "pg"},
             "register": "pg_dump"},
            {"name": "Dump MongoDB", "lifeboat.ops.mongodb_dump": {"database": MONGO_SOURCE, "job": "mongo"}},
            {"name": "Verify both at checksum level", "lifeboat.ops.backup_verify": {"select": "all", "level": "checksum"},
             "register": "verified"},
            {"name": "Both proven", "ansible.builtin.assert": {"that": ["verified.results | length == 2"]}},
        ],
    }
    run = run_play(tmp_path, play)
    assert run.returncode == 0, run.stdout + run.stderr
    names = listing(destination)
    assert any(name.startswith("pg-") and name.endswith(".manifest.json") for name in names), names
    assert any(name.startswith("mongo-") and name.endswith(".manifest.json") for name in names), names


def test_the_bucket_comes_from_the_offsite_group(pg, s3_server, tmp_path):
    """The four off-site modules share their bucket options through `group/lifeboat.ops.offsite`: a dump, its copy,
    a remote verify and a fetch into an empty directory, with the bucket given once."""
    destination, fetched = tmp_path / "backups", tmp_path / "fetched"
    bucket = {"bucket": s3_server.bucket(), "prefix": "defaults", "endpoint_url": s3_server.endpoint,
              "path_style": True, "credentials_file": s3_server.credentials_file(str(tmp_path))}
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "module_defaults": {
            "group/lifeboat.ops.postgresql": pg.login(),
            "group/lifeboat.ops.offsite": bucket,
        },
        "tasks": [
            {"name": "Dump", "lifeboat.ops.postgresql_dump": {"database": PG_SOURCE, "job": "pg",
                                                              "destination": str(destination)}},
            {"name": "Prove it", "lifeboat.ops.backup_verify": {"destination": str(destination), "level": "checksum"}},
            {"name": "Copy it", "lifeboat.ops.offsite_copy": {"destination": str(destination)}, "register": "copied"},
            {"name": "Verify the copy", "lifeboat.ops.offsite_verify": {}, "register": "remote"},
            {"name": "Fetch it back", "lifeboat.ops.offsite_fetch": {"directory": str(fetched), "job": "pg"},
             "register": "fetch"},
            {"name": "One archive went and came back",
             "ansible.builtin.assert": {"that": ["copied is changed", "fetch is changed"]}},
        ],
    }
    run = run_play(tmp_path, play)
    assert run.returncode == 0, run.stdout + run.stderr
    assert [name for name in listing(fetched) if name.endswith(".manifest.json")] == [
        name for name in listing(destination) if name.endswith(".manifest.json")]
