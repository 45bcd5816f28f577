# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options become connection strings without a password ever leaving its safe places."""

from __future__ import annotations

import urllib.parse

import pytest
from pymongo.uri_parser import parse_uri

from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError, registered_secrets
from ansible_collections.lifeboat.ops.plugins.module_utils._mongo import MongoConnection
from ansible_collections.lifeboat.ops.plugins.module_utils._postgres import PgConnection

NASTY = "p:a@s/s?w#o%rd 'q\"+"


def parsed(connection: MongoConnection) -> dict:
    return parse_uri(connection.uri, validate=True, warn=False)


def test_mongo_host_options_with_a_nasty_password():
    connection = MongoConnection.from_options(host="db.internal", port=27018, user="back up", password=NASTY,
                                              auth_database="admin")
    info = parsed(connection)
    assert (info["username"], info["password"]) == ("back up", NASTY)
    assert info["nodelist"] == [("db.internal", 27018)]
    assert info["options"]["authSource"] == "admin"
    assert connection.display == "db.internal:27018"
    assert {NASTY, urllib.parse.quote(NASTY, safe="")} <= registered_secrets()
    assert f":{urllib.parse.quote(NASTY, safe='')}@" in connection.uri, "'+' and ' ' are percent-encoded for the Go tools"


def test_mongo_uri_keeps_its_path_query_and_an_at_sign_in_a_query_value(tmp_path):
    ca_file = tmp_path / "a@b" / "ca.pem"
    ca_file.parent.mkdir()
    ca_file.write_text("")
    uri = f"mongodb://backup@h1:27017,h2:27017/admin?replicaSet=rs0&tlsCAFile={ca_file}"
    connection = MongoConnection.from_options(uri=uri, password=NASTY, tls=True)
    info = parsed(connection)
    assert info["password"] == NASTY
    assert info["database"] == "admin"
    assert info["options"]["replicaSet"] == "rs0"
    assert info["options"]["tlsCAFile"] == str(ca_file)
    assert connection.display == "h1:27017,h2:27017"


def test_mongo_uri_with_database_and_no_query():
    info = parsed(MongoConnection.from_options(uri="mongodb://u:p@h/admin"))
    assert (info["username"], info["password"], info["database"]) == ("u", "p", "admin")


def test_mongo_uri_password_is_decoded_once():
    encoded = urllib.parse.quote(NASTY, safe="")
    connection = MongoConnection.from_options(uri=f"mongodb://u:{encoded}@h:1/")
    assert parsed(connection)["password"] == NASTY


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"uri": "postgres://h/"}, "login_uri must start with mongodb:// or mongodb+srv://"),
        ({"uri": "mongodb://u:pa/ss@h/"}, "percent-encode '/', '@' and ':'"),
        ({"uri": "mongodb://u:p@h/", "password": "x"}, "needs a login_uri with a user name and no password"),
        ({"uri": "mongodb://h/", "password": "x"}, "needs a login_uri with a user name and no password"),
        ({"uri": "mongodb://u@h/", "host": "h"}, "give either login_uri or login_host/login_user, not both"),
    ],
)
def test_mongo_bad_connection_options(options, message):
    with pytest.raises(LifeboatError) as failure:
        MongoConnection.from_options(**options)
    assert message in str(failure.value)
    assert "pa/ss" not in str(failure.value)


def test_pg_uri_password_leaves_the_connection_string():
    uri = f"postgresql://backup:{urllib.parse.quote(NASTY, safe='')}@db.internal:5433/journal?sslmode=require"
    connection = PgConnection.from_options(uri=uri)
    assert connection.password == NASTY
    assert "password" not in connection.conninfo() and NASTY not in connection.conninfo()
    assert connection.params["sslmode"] == "require" and connection.database == "journal"
    assert connection.env()["PGPASSWORD"] == NASTY


def test_pg_uri_with_sslpassword_is_refused():
    with pytest.raises(LifeboatError, match="sslpassword, which would show on the tools' command line"):
        PgConnection.from_options(uri="postgresql://u@h/db?sslpassword=secret")


def test_pg_password_file_must_be_private(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    with pytest.raises(LifeboatError, match="is readable by others; chmod 600 it"):
        PgConnection.from_options(host="h", password_file=str(secret))
    secret.chmod(0o600)
    assert PgConnection.from_options(host="h", password_file=str(secret)).password == "s3cret"


def test_error_messages_never_repeat_a_registered_password():
    connection = MongoConnection.from_options(host="h", user="u", password="hunter2-long")
    leaked = f"failed to connect to {connection.uri}: auth error"
    message = str(LifeboatError(f"mongodump failed: {leaked}"))
    assert "hunter2-long" not in message and "********" in message
