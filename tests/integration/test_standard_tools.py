# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An archive restores with standard tools alone, following the commands its own manifest records.

Every command of the manifest runs exactly as written, its placeholders filled, with bash -c in a clean environment:
PATH and only the variables the manifest's restore_environment names. Each archive kind (PostgreSQL, MongoDB, a
volume and a path), plain and age-encrypted, dumped on this host and in the server's container; the restored
fingerprint is the source's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse

import docker
import pytest
from test_files_archives import mountpoint, tree  # pylint: disable=import-error

from testbed import MONGO_SOURCE, PG_SOURCE, MongoServer, PgServer  # pylint: disable=import-error


def run_manifest_commands(manifest_path, substitutions, environment):
    """Runs every restore command of the manifest as written (placeholders filled) in PATH + ``environment``, which
    must name exactly the variables the manifest says the commands read."""
    manifest = json.loads(open(manifest_path, encoding="utf-8").read())
    assert sorted(environment) == sorted(manifest["restore_environment"]), manifest["restore_environment"]
    # First what the placeholders mean, then the sha256 check of every stored file, then the restore itself.
    checks = [c for c in manifest["restore_commands"] if "sha256sum --check" in c]
    assert checks and manifest["archive"]["sha256"] in checks[-1]
    # The signature check opens them: ALLOWED_SIGNERS holds the backup host's public key, as the operator copied it
    # (here from the .pub the backup published beside its archives).
    with open(os.path.join(os.path.dirname(manifest_path), "lifeboat-signer.pub"), encoding="utf-8") as handle:
        public_key = handle.read().strip()
    allowed = os.path.join(os.path.dirname(manifest_path), "allowed_signers.test")
    with open(allowed, "w", encoding="utf-8") as handle:
        handle.write(f'lifeboat namespaces="lifeboat-manifest" {public_key}\n')
    substitutions = {"ALLOWED_SIGNERS": allowed, **substitutions}
    # Every placeholder the commands use is explained in the manifest itself, and the test fills each one.
    assert sorted(manifest["restore_placeholders"]) == sorted(substitutions), manifest["restore_placeholders"]
    clean = {"PATH": os.environ["PATH"], **environment}
    for template in manifest["restore_commands"]:
        command = template
        for placeholder, value in substitutions.items():
            command = command.replace(placeholder, value)
        done = subprocess.run(["bash", "-c", command], cwd=os.path.dirname(manifest_path), env=clean,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    return manifest


class BoxPg(PgServer):
    """A container's PostgreSQL, read from this host at the container's address (for PgServer.fingerprint)."""

    def __init__(self, box) -> None:  # pylint: disable=super-init-not-called
        self.host, self.port, self.user, self.password = box.ip, box.port, box.user, box.password


class BoxMongo(MongoServer):
    def __init__(self, box) -> None:  # pylint: disable=super-init-not-called
        self.client = box.mongo_client()


def pg_env(pg):
    # libpq's environment is how the PostgreSQL tools take a connection (the password too, never argv).
    return {"PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.user, "PGPASSWORD": pg.password}


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
@pytest.mark.parametrize("dump_format", ["custom", "directory"])
def test_postgresql_archive_restores_with_pg_restore(pg, run_module, tmp_path, unique_name, age_key, encrypted, dump_format):
    dumped = run_module("postgresql_dump", pg.login(
        database=PG_SOURCE, destination=str(tmp_path), format=dump_format, jobs=2 if dump_format == "directory" else 1,
        encryption_recipients=[age_key["recipient"]] if encrypted else []))
    assert dumped.rc == 0, dumped.result
    # libpq's environment is how the PostgreSQL tools take a connection (the password too, never argv).
    fill = {"TARGET_DB": unique_name, **({"IDENTITY_FILE": age_key["identity"]} if encrypted else {}),
            **({"RESTORE_DIR": str(tmp_path / "unpacked")} if dump_format == "directory" else {})}
    try:
        run_manifest_commands(dumped.result["manifest"], fill, pg_env(pg))
        source, copy = pg.fingerprint(PG_SOURCE), pg.fingerprint(unique_name)
        assert copy["counts"] == source["counts"] and copy["hashes"] == source["hashes"]
        assert copy["sequences"] == source["sequences"]
    finally:
        pg.drop(unique_name)


@pytest.mark.parametrize(("compression", "encrypted"), [("zstd", False), ("zstd", True), ("gzip", False)])
def test_mongodb_archive_restores_with_mongorestore(mongo, run_module, tmp_path, unique_name, age_key, compression, encrypted):
    dumped = run_module("mongodb_dump", mongo.login(
        database=MONGO_SOURCE, destination=str(tmp_path), compression=compression,
        encryption_recipients=[age_key["recipient"]] if encrypted else []))
    assert dumped.rc == 0, dumped.result
    if compression == "gzip" and not encrypted:
        # mongodump's own --gzip format: plain `mongorestore --gzip --archive=FILE` reads the stored file.
        (decode, *_rest) = [c for c in dumped.result["restore_commands"]
                            if not c.startswith(("#", "echo ")) and "ssh-keygen -Y verify" not in c]
        assert decode.startswith("cat ")
    config = tmp_path / "mongorestore.yaml"
    config.write_text(f'uri: "mongodb://{mongo.user}:{mongo.password}@{mongo.host}:{mongo.port}/?authSource=admin"\n')
    config.chmod(0o600)
    try:
        # FerretDB 1.24 refuses the "ns" option mongorestore sets on every index it builds, so against this
        # test server the documents are restored with --noIndexRestore (real MongoDB needs no such flag).
        run_manifest_commands(dumped.result["manifest"], {
            "TARGET_DB": unique_name, **({"IDENTITY_FILE": age_key["identity"]} if encrypted else {}),
            "CONNECTION": f"--config={config} --noIndexRestore"}, {})
        source, copy = mongo.fingerprint(MONGO_SOURCE), mongo.fingerprint(unique_name)
        assert copy["counts"] == source["counts"] and copy["hashes"] == source["hashes"]
    finally:
        mongo.drop(unique_name)


def dumped_in_container(run_module, module, box, tmp_path, age_key, encrypted):
    """Dumps restorecmds_source with ``box``'s own client; the manifest's path and the placeholders its restore
    commands need (TARGET_DB a copy beside the source)."""
    dumped = run_module(module, {"container": box.name, "database": "restorecmds_source",
                                 "destination": str(tmp_path / "backups"),
                                 "encryption_recipients": [age_key["recipient"]] if encrypted else []})
    assert dumped.rc == 0, dumped.result
    fill = {"TARGET_DB": f"restorecmds_copy_{'age' if encrypted else 'plain'}", "CONTAINER": box.name,
            **({"IDENTITY_FILE": age_key["identity"]} if encrypted else {})}
    return dumped.result["manifest"], fill


@pytest.fixture(scope="module")
def pg17_source(pg17_container):
    """A database in the PostgreSQL 17 container: several types, a sequence, a view (pg_restore 15 cannot read its
    dump)."""
    with pg17_container.connect_pg() as conn:
        conn.execute("DROP DATABASE IF EXISTS restorecmds_source WITH (FORCE)")
        conn.execute("CREATE DATABASE restorecmds_source")
    with pg17_container.connect_pg("restorecmds_source") as conn:
        conn.execute("CREATE TABLE entries (id serial PRIMARY KEY, note text, at timestamptz, doc jsonb, raw bytea)")
        conn.execute("INSERT INTO entries (note, at, doc, raw) SELECT 'note ' || n || ' é', "
                     "'2026-11-22 03:00+00'::timestamptz + n * interval '1 minute', jsonb_build_object('n', n), "
                     "decode(md5(n::text), 'hex') FROM generate_series(1, 2000) n")
        conn.execute("CREATE TABLE tags (name text UNIQUE)")
        conn.execute("INSERT INTO tags VALUES ('a'), ('b'), (NULL)")
        conn.execute("CREATE VIEW recent AS SELECT id, note FROM entries WHERE id > 1990")
    return pg17_container


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_a_container_dump_restores_through_the_container_as_written(pg17_source, run_module, tmp_path, age_key,
                                                                    encrypted):
    """The host's pg_restore (15) cannot read the PostgreSQL 17 dump: the commands pipe this host's zstd and age
    into the container's own pg_restore, which the server's version matches."""
    box = pg17_source
    manifest_path, fill = dumped_in_container(run_module, "postgresql_dump", box, tmp_path, age_key, encrypted)
    target = fill["TARGET_DB"]
    server = BoxPg(box)
    try:
        manifest = run_manifest_commands(manifest_path, fill, {"PGUSER": box.user, "PGPASSWORD": box.password})
        assert box.name in manifest["restore_placeholders"]["CONTAINER"]
        source, copy = server.fingerprint("restorecmds_source"), server.fingerprint(target)
        assert copy == source and copy["counts"] == {"public.entries": 2000, "public.tags": 3}
        # The password was given through the environment only: no command of the manifest carries it.
        assert not [c for c in manifest["restore_commands"] if box.password in c or "PGPASSWORD=" in c]
    finally:
        server.drop(target)


@pytest.fixture(scope="module")
def ferret_source(ferret_container):
    """Collections in the FerretDB container. Only their _id indexes: FerretDB 1.24 refuses the "ns" option
    mongorestore sets on the other indexes it builds (real MongoDB takes them)."""
    client = ferret_container.mongo_client()
    client.drop_database("restorecmds_source")
    db = client["restorecmds_source"]
    db["entries"].insert_many([{"_id": n, "note": f"note {n} é", "tags": ["a", n % 3], "n": n * 1.5}
                               for n in range(1500)])
    db["settings"].insert_one({"_id": "site", "nested": {"on": True, "list": [1, "two", None]}})
    client.close()
    return ferret_container


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_a_mongodb_container_dump_restores_through_the_container_as_written(ferret_source, run_module, tmp_path,
                                                                            age_key, encrypted):
    box = ferret_source
    manifest_path, fill = dumped_in_container(run_module, "mongodb_dump", box, tmp_path, age_key, encrypted)
    target = fill["TARGET_DB"]
    server = BoxMongo(box)
    uri = (f"mongodb://{urllib.parse.quote(box.user, safe='')}:{urllib.parse.quote(box.password, safe='')}"
           "@127.0.0.1:27017/?authSource=admin")
    try:
        manifest = run_manifest_commands(manifest_path, fill, {"MONGODB_URI": uri})
        source, copy = server.fingerprint("restorecmds_source"), server.fingerprint(target)
        assert copy["counts"] == source["counts"] == {"entries": 1500, "settings": 1}
        assert copy["hashes"] == source["hashes"]
        assert not [c for c in manifest["restore_commands"] if box.password in c]
    finally:
        server.client.drop_database(target)
        server.client.close()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_a_files_archive_puts_its_volume_and_path_back_as_written(container_bed, run_module, tmp_path, age_key,
                                                                  encrypted):
    """After the volume is removed (as docker compose down -v does) and the path deleted, the commands make the
    volume again and put every file back: type, mode, owner, link target, hard links, holes, xattrs."""
    box = container_bed.app(f"restorecmds-{'age' if encrypted else 'plain'}")
    container_bed.client.api.stop(box.id, timeout=10)
    config = tmp_path / "config"
    (config / "sub").mkdir(parents=True)
    (config / "app.yml").write_text("port: 8080\n")
    (config / "sub" / "ünïcode name.txt").write_text("x\n")
    os.chmod(config / "app.yml", 0o640)
    os.symlink("app.yml", config / "current.yml")
    volume_before, path_before = tree(mountpoint(box.volume)), tree(str(config))
    dumped = run_module("files_backup", {"destination": str(tmp_path / "backups"), "job": "restorecmds-files",
                                         "volumes": [box.volume], "paths": [str(config)],
                                         "encryption_recipients": [age_key["recipient"]] if encrypted else []})
    assert dumped.rc == 0, dumped.stdout + dumped.stderr
    api = container_bed.client.api
    api.remove_container(box.id, force=True)
    api.remove_volume(box.volume)
    shutil.rmtree(config)
    with pytest.raises(docker.errors.NotFound):
        mountpoint(box.volume)
    run_manifest_commands(dumped.result["manifest"],
                          {"IDENTITY_FILE": age_key["identity"]} if encrypted else {}, {})
    assert tree(mountpoint(box.volume)) == volume_before
    assert tree(str(config)) == path_before
