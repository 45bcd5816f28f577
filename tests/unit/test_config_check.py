# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host config refuses what the runs would refuse; restore commands say what their placeholders are."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _config, _manifest, _postgres


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
    commands = _manifest.explained_restore_commands(
        "j.pgdump.zst", "cd" * 32, [{"file": "j.globals.sql.zst", "sha256": "ef" * 32}],
        ["createdb --template=template0 TARGET_DB", "zstd -dc j.pgdump.zst | pg_restore --dbname=TARGET_DB"],
        [_postgres.CLIENT_CONNECTION])
    assert [c for c in commands if "sha256sum" in c] == [
        f"echo '{'ef' * 32}  j.globals.sql.zst' | sha256sum --check --strict",
        f"echo '{'cd' * 32}  j.pgdump.zst' | sha256sum --check --strict"]
    assert any("PGHOST, PGPORT, PGUSER" in c for c in commands) and not any("CONNECTION" in c for c in commands)
