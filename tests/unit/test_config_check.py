# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host config refuses what the runs would refuse; restore commands say what their placeholders are."""

from __future__ import annotations

import functools

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _config, _manifest, _mongo, _params, _postgres
from ansible_collections.lifeboat.ops.plugins.module_utils._archive import decode_pipe
from ansible_collections.lifeboat.ops.plugins.module_utils._codecs import Encryption
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError

ZSTD = functools.partial(decode_pipe, "zstd", Encryption())  # how an unencrypted zstd archive of a run decodes


@pytest.mark.parametrize("uri, has_password", [
    ("postgresql://backup:s3cret@db/journal", True),
    ("postgresql://backup@db/journal", False),
    ("postgresql://backup@db/journal?password=s3cret&sslmode=require", True),
    ("postgresql://db/journal?sslmode=require", False),
    ("host=db user=backup password=s3cret dbname=journal", True),
    ("host=db user=backup dbname=journal", False),
    ("mongodb://backup:p%40ss@db1,db2/?replicaSet=rs0", True),
    ("mongodb://backup@db1/?tlsCAFile=/etc/ca@home.pem", False),
    ("mongodb+srv://cluster.example.net/", False),
])
def test_a_password_inside_login_uri_is_found(uri, has_password):
    assert _config.uri_has_password(uri) is has_password


def test_restore_commands_check_the_sha256_first_and_explain_their_placeholders():
    commands = _manifest.explained_restore_commands(
        "app-20261122T030000Z.mongo.archive.zst", "ab" * 32, [],
        ["zstd -dc app-20261122T030000Z.mongo.archive.zst | mongorestore CONNECTION --archive "
         "--nsFrom='app.*' --nsTo='TARGET_DB.*'"])
    assert commands[0].startswith("# TARGET_DB is the database to restore into")
    assert commands[1].startswith("# CONNECTION is where mongorestore connects: --config=FILE")
    assert commands[2] == f"echo '{'ab' * 32}  app-20261122T030000Z.mongo.archive.zst' | sha256sum --check --strict"
    recipe = _postgres.restore_recipe("j.pgdump.zst", ZSTD, [{"file": "j.globals.sql.zst", "sha256": "ef" * 32}],
                                      "pg_dump-custom")
    commands = _manifest.explained_restore_commands(
        "j.pgdump.zst", "cd" * 32, [{"file": "j.globals.sql.zst", "sha256": "ef" * 32}], *recipe)
    assert [c for c in commands if "sha256sum" in c] == [
        f"echo '{'ef' * 32}  j.globals.sql.zst' | sha256sum --check --strict",
        f"echo '{'cd' * 32}  j.pgdump.zst' | sha256sum --check --strict"]
    assert any(c.startswith("# PGPASSWORD (in the environment)") for c in commands)
    assert not any("CONNECTION" in c or "CONTAINER" in c for c in commands)


def test_a_container_dump_restores_through_the_container_s_own_clients():
    """Fed by this host's zstd and age (the server's image has neither); the password comes in by docker exec -e."""
    container = {"name": "journal-db-1", "image": "postgres:17"}
    commands, environment, meanings = _postgres.restore_recipe("j.pgdump.zst", ZSTD, [], "pg_dump-custom", container)
    assert commands == ["docker exec -e PGUSER -e PGPASSWORD CONTAINER createdb --template=template0 TARGET_DB",
                        "zstd -dc j.pgdump.zst | docker exec -e PGUSER -e PGPASSWORD -i CONTAINER "
                        "pg_restore --exit-on-error --dbname=TARGET_DB"]
    assert set(environment) == {"PGUSER", "PGPASSWORD"} and "journal-db-1" in meanings["CONTAINER"]
    commands, environment, _meanings = _mongo.restore_recipe("n.mongo.archive.zst", ZSTD, [], "nightscout", False, False,
                                                             container)
    assert "docker exec -i -e MONGODB_URI CONTAINER bash -c" in commands[0] and "--uri" not in commands[0]
    assert set(environment) == {"MONGODB_URI"}


@pytest.mark.parametrize("engine", ["postgresql", "mongodb"])
def test_container_with_login_host_is_refused_in_one_line_by_the_modules_and_the_config(engine, tmp_path):
    """Before: the container's clients silently connected to login_host (the host's port), not the container's server."""
    with pytest.raises(LifeboatError) as refused:
        _params.place({"container": "journal-db-1", "login_host": "127.0.0.1"})
    assert str(refused.value) == ("give either container (journal-db-1: its clients connect to the server at the "
                                  "container's own address) or login_host (127.0.0.1), not both")
    config = tmp_path / "lifeboat.yml"
    config.write_text(f"jobs:\n  journal:\n    engine: {engine}\n    destination: {tmp_path}\n"
                      "    container: journal-db-1\n    login_host: 127.0.0.1\n")
    with pytest.raises(LifeboatError) as refused_config:
        _config.load(str(config))
    assert str(refused_config.value) == f"config {config}: job journal: {refused.value}"
