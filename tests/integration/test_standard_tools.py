# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An archive restores with standard tools alone, following the commands its own manifest records."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from testbed import MONGO_SOURCE, PG_SOURCE


def run_manifest_commands(manifest_path, substitutions, env):
    manifest = json.loads(open(manifest_path, encoding="utf-8").read())
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
    for template in manifest["restore_commands"]:
        command = template
        for placeholder, value in substitutions.items():
            command = command.replace(placeholder, value)
        done = subprocess.run(["sh", "-c", command], cwd=os.path.dirname(manifest_path), env=env,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    return manifest


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
@pytest.mark.parametrize("dump_format", ["custom", "directory"])
def test_postgresql_archive_restores_with_pg_restore(pg, run_module, tmp_path, unique_name, age_key, encrypted, dump_format):
    dumped = run_module("postgresql_dump", pg.login(
        database=PG_SOURCE, destination=str(tmp_path), format=dump_format, jobs=2 if dump_format == "directory" else 1,
        encryption_recipients=[age_key["recipient"]] if encrypted else []))
    assert dumped.rc == 0, dumped.result
    # libpq's environment is how the PostgreSQL tools take a connection (the password too, never argv).
    env = {**os.environ, "PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.user, "PGPASSWORD": pg.password,
           "PGDATABASE": "postgres"}
    try:
        run_manifest_commands(dumped.result["manifest"], {
            "TARGET_DB": unique_name, "IDENTITY_FILE": age_key["identity"], "RESTORE_DIR": str(tmp_path / "unpacked")}, env)
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
            "TARGET_DB": unique_name, "IDENTITY_FILE": age_key["identity"],
            "CONNECTION": f"--config={config} --noIndexRestore"}, dict(os.environ))
        source, copy = mongo.fingerprint(MONGO_SOURCE), mongo.fingerprint(unique_name)
        assert copy["counts"] == source["counts"] and copy["hashes"] == source["hashes"]
    finally:
        mongo.drop(unique_name)
