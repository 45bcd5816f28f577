# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup and restore roles hand every connection option of a job to the modules, and one job list serves
the backup and the backup_schedule roles alike.

The test bed's servers speak no TLS: the PostgreSQL client certificate options travel with ssl_mode=prefer (libpq
accepts them and only reads the files when the server offers TLS), so what is proven for them is that the roles
accept them and the modules receive them (invocation.module_args). MongoDB's auth_mechanism is proven in use:
SCRAM-SHA-256 logs in, and PLAIN (which FerretDB refuses) makes the job fail with the server's own message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from testbed import MONGO_SOURCE, PG_SOURCE, REPO_ROOT, collections_root, module_env


def run_play(tmp_path, play, host_vars, *extra):
    """Run a play (a list of tasks and roles) on localhost; the play writes what the test reads to out.json."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}}}}))
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, **play}], sort_keys=False))
    env = {**module_env(), "ANSIBLE_COLLECTIONS_PATH": collections_root(), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")}
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), str(playbook),
                           "-i", str(inventory), *extra], capture_output=True, text=True, env=env, timeout=900, check=False)
    out = tmp_path / "out.json"
    return done, json.loads(out.read_text()) if out.exists() else None


def module_args(stdout, task):
    """The arguments each run of the task named ``task`` gave its module, as -vvv prints them (a registered result
    holds no invocation)."""
    found = []
    for section in stdout.split("TASK [")[1:]:
        if not section.startswith(task):
            continue
        start = section.find("=> {")
        if start >= 0:
            result, _end = json.JSONDecoder().raw_decode(section[start + 3:])
            found.append(result["invocation"]["module_args"])
    return found


def write_out(expression):
    return {"name": "Keep what the test reads", "ansible.builtin.copy": {
        "content": "{{ " + expression + " | to_json }}", "dest": "{{ lifeboat_out }}", "mode": "0600"}}


def test_backup_and_restore_roles_forward_timeouts_certificates_and_mechanisms(pg, mongo, tmp_path, unique_name):
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    cert.write_text("not read: the test bed offers no TLS\n")
    key.write_text("not read: the test bed offers no TLS\n")
    key.chmod(0o600)
    jobs = [
        {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, **pg.login(),
         "connect_timeout": 7, "ssl_mode": "prefer", "ssl_cert": str(cert), "ssl_key": str(key)},
        {"name": "nightscout", "engine": "mongodb", "database": MONGO_SOURCE, **mongo.login(),
         "connect_timeout": 8, "auth_mechanism": "SCRAM-SHA-256", "tls_allow_invalid_certificates": False},
    ]
    pg_target, mongo_target = f"{unique_name}_fwd_journal", f"{unique_name}_fwd_nightscout"
    host_vars = {
        "backup_root": str(tmp_path / "backups"), "backup_jobs": jobs, "lifeboat_out": str(tmp_path / "out.json"),
        # Each item replaces its job's password file with a password: no mutual-exclusion error.
        "lifeboat_items": [
            {"job": "journal", "target_database": pg_target, "login_password": pg.password, "no_owner": True},
            {"job": "nightscout", "target_database": mongo_target, "login_password": mongo.password,
             "ns_include": [f"{MONGO_SOURCE}.*"]},
        ],
    }
    play = {"tasks": [
        {"name": "Back up", "ansible.builtin.include_role": {"name": "lifeboat.ops.backup"}},
        {"name": "Restore the journal", "ansible.builtin.include_role": {"name": "lifeboat.ops.restore"},
         "vars": {"restore_items": "{{ lifeboat_items[:1] }}"}},
        {"name": "Restore the MongoDB database", "ansible.builtin.include_role": {"name": "lifeboat.ops.restore"},
         "vars": {"restore_items": "{{ lifeboat_items[1:] }}"}},
        write_out("restore_results"),
    ]}
    try:
        done, out = run_play(tmp_path, play, host_vars, "-vvv")
        assert done.returncode == 0, done.stdout + done.stderr
        (journal,) = module_args(done.stdout, "lifeboat.ops.backup : Dump PostgreSQL")
        (nightscout,) = module_args(done.stdout, "lifeboat.ops.backup : Dump MongoDB")
        assert (journal["connect_timeout"], journal["ssl_mode"], journal["ssl_cert"], journal["ssl_key"]) == (
            7, "prefer", str(cert), str(key))
        assert (nightscout["connect_timeout"], nightscout["auth_mechanism"]) == (8, "SCRAM-SHA-256")
        assert nightscout["tls_allow_invalid_certificates"] is False
        (restored,) = module_args(done.stdout, "lifeboat.ops.restore : Restore PostgreSQL")
        (mongo_restored,) = module_args(done.stdout, "lifeboat.ops.restore : Restore MongoDB")
        assert (restored["connect_timeout"], restored["ssl_cert"], restored["ssl_key"]) == (7, str(cert), str(key))
        assert restored["login_password_file"] is None and restored["login_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
        assert (restored["no_owner"], mongo_restored["ns_include"]) == (True, [f"{MONGO_SOURCE}.*"])
        assert (mongo_restored["connect_timeout"], mongo_restored["auth_mechanism"]) == (8, "SCRAM-SHA-256")
        assert mongo_restored["login_password_file"] is None
        assert [item["status"] for item in out] == ["ok"]  # the last include's results
        assert pg.fingerprint(pg_target)["counts"] == pg.fingerprint(PG_SOURCE)["counts"]
        assert mongo.fingerprint(mongo_target)["counts"] == mongo.fingerprint(MONGO_SOURCE)["counts"]
        assert pg.password not in done.stdout and mongo.password not in done.stdout
    finally:
        pg.drop(pg_target)
        mongo.drop(mongo_target)


def test_auth_mechanism_reaches_the_server(pg, mongo, run_playbook, tmp_path):
    """FerretDB refuses PLAIN: the job fails with the server's word for it, so the option was really used."""
    job = {"name": "nightscout", "engine": "mongodb", "database": MONGO_SOURCE, **mongo.login(), "auth_mechanism": "PLAIN"}
    done = run_playbook("backup", {"backup_root": str(tmp_path / "b"), "backup_jobs": [job]})
    assert done.returncode != 0
    assert "nightscout: dump failed:" in done.stdout and "PLAIN" in done.stdout, done.stdout


def test_one_job_list_serves_the_backup_and_the_schedule_roles(pg, mongo, tmp_path):
    """The same jobs (module options at the top level, the schedule's sections, the older spellings of both roles)
    run in the backup role and make a config that `lifeboat check` accepts with every option in place."""
    jobs = [
        {"name": "journal", "engine": "postgresql", "database": PG_SOURCE, **pg.login(), "connect_timeout": 7,
         "ssl_mode": "prefer", "compression": "gzip", "on_calendar": "*-*-* 03:15", "status": {"max_age_hours": 8},
         "verify": {"level": "structure"}, "retention": {"keep_last": 2}},
        {"name": "nightscout", "engine": "mongodb", "database": MONGO_SOURCE, **mongo.login(), "connect_timeout": 8,
         "auth_mechanism": "SCRAM-SHA-256", "verify_level": "checksum", "prune": False,
         "options": {"parallel_collections": 2}},
        {"name": "retired", "engine": "postgresql", "database": "gone", "state": "absent"},
    ]
    config = tmp_path / "lifeboat.yml"
    role = os.path.join(REPO_ROOT, "roles", "backup_schedule")
    play = {
        "vars_files": [os.path.join(role, "defaults", "main.yml"), os.path.join(role, "vars", "main.yml"),
                       # the host program the role includes: where `lifeboat` is
                       os.path.join(REPO_ROOT, "roles", "host_program", "vars", "main.yml")],
        "tasks": [
            {"name": "Back up", "ansible.builtin.include_role": {"name": "lifeboat.ops.backup"}},
            {"name": "Render the schedule's config", "ansible.builtin.template": {
                "src": os.path.join(role, "templates", "lifeboat.yml.j2"), "dest": str(config), "mode": "0600"},
             "vars": {"backup_schedule_jobs": "{{ backup_jobs }}", "backup_schedule_root": str(tmp_path / "sched"),
                      # the key the role makes on a host; here the session's, which the backup role's run made
                      "backup_schedule_signing_key_file": os.environ["LIFEBOAT_SIGNING_KEY_FILE"]}},
            write_out("backup_results"),
        ],
    }
    done, results = run_play(tmp_path, play, {"backup_root": str(tmp_path / "backups"), "backup_jobs": jobs,
                                              "lifeboat_out": str(tmp_path / "out.json")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert [(r["name"], r["status"], r["verified"]) for r in results] == [
        ("journal", "ok", "structure"), ("nightscout", "ok", "checksum")]
    assert (tmp_path / "backups" / "journal").is_dir() and not (tmp_path / "backups" / "retired").exists()
    assert any(name.endswith(".gz") for name in os.listdir(tmp_path / "backups" / "journal"))

    check = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "bin", "lifeboat"), "check", "--config", str(config)],
                           capture_output=True, text=True, env=module_env(), check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    rendered = yaml.safe_load(config.read_text())["jobs"]
    assert sorted(rendered) == ["journal", "nightscout"]
    assert {k: rendered["journal"][k] for k in ("connect_timeout", "ssl_mode", "compression")} == {
        "connect_timeout": 7, "ssl_mode": "prefer", "compression": "gzip"}
    assert rendered["journal"]["verify"] == {"level": "structure"} and rendered["journal"]["status"] == {"max_age_hours": 8}
    assert rendered["journal"]["schedule"]["on_calendar"] == "*-*-* 03:15"
    assert "on_calendar" not in rendered["journal"] and "name" not in rendered["journal"]
    night = rendered["nightscout"]
    assert (night["auth_mechanism"], night["parallel_collections"], night["connect_timeout"]) == ("SCRAM-SHA-256", 2, 8)
    assert night["verify"] == {"level": "checksum"} and night["retention"] == {"enabled": False}
    assert "prune" not in night and "verify_level" not in night and "options" not in night


def test_restore_role_reads_a_jobs_options_as_the_backup_role_does(pg, tmp_path, unique_name):
    """A job in the older schedule spelling (its connection under ``options``) is restored with that connection,
    as the backup role dumped it; an item's password still replaces the job's password file."""
    job = {"name": "journal", "engine": "postgresql", "options": {"database": PG_SOURCE, **pg.login()}}
    play = {"tasks": [
        {"name": "Back up", "ansible.builtin.include_role": {"name": "lifeboat.ops.backup"}},
        {"name": "Restore", "ansible.builtin.include_role": {"name": "lifeboat.ops.restore"}},
        write_out("restore_results"),
    ]}
    host_vars = {"backup_root": str(tmp_path / "backups"), "backup_jobs": [job], "lifeboat_out": str(tmp_path / "out.json"),
                 "restore_items": [{"job": "journal", "target_database": unique_name},
                                   {"job": "journal", "target_database": f"{unique_name}_pw", "login_password": pg.password}]}
    try:
        done, out = run_play(tmp_path, play, host_vars, "-vvv")
        assert done.returncode == 0, done.stdout + done.stderr
        assert [item["status"] for item in out] == ["ok", "ok"], out
        by_file, by_password = module_args(done.stdout, "lifeboat.ops.restore : Restore PostgreSQL")
        assert (by_file["login_host"], by_file["login_port"], by_file["login_user"]) == (
            pg.login()["login_host"], pg.login()["login_port"], pg.login()["login_user"])
        assert by_file["login_password_file"] == pg.login()["login_password_file"]
        assert by_password["login_password_file"] is None
        for target in (unique_name, f"{unique_name}_pw"):
            assert pg.fingerprint(target)["hashes"] == pg.fingerprint(PG_SOURCE)["hashes"]
        assert pg.password not in done.stdout
    finally:
        pg.drop(unique_name)
        pg.drop(f"{unique_name}_pw")
