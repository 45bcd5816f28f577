# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this doc fragment may change in any release.
# Only this collection's own modules extend it.

from __future__ import annotations


class ModuleDocFragment:
    # The connection options of both engines as suboptions (the restore test's server). Kept in step with the
    # _postgresql and _mongodb fragments by tests/unit/test_doc_fragments.py.
    DOCUMENTATION = r"""
options:
  postgresql:
    description:
    - Connection to the PostgreSQL server that restore tests of PostgreSQL archives restore into (O(level=restore)).
    - The test creates a scratch database under a name no database has, compares, and drops it again; the user needs
      the right to create databases.
    type: dict
    suboptions:
      login_uri:
        description:
        - A libpq connection URI or key/value connection string, for example V(postgresql://backup@db.internal:5432/journal?sslmode=require).
        - Mutually exclusive with O(postgresql.login_host), O(postgresql.login_user) and O(postgresql.login_unix_socket).
        - A password inside it is taken out and handed to the PostgreSQL tools through their environment, never their
          command line.
        type: str
      login_host:
        description:
        - Host name or IP address of the PostgreSQL server.
        type: str
        aliases:
        - host
      login_port:
        description:
        - Port of the PostgreSQL server. libpq's default, V(5432), when not set.
        type: int
        aliases:
        - port
      login_user:
        description:
        - User to connect as. libpq's default (the operating system user) when not set.
        type: str
        aliases:
        - user
      login_password:
        description:
        - Password of O(postgresql.login_user). Mutually exclusive with O(postgresql.login_password_file).
        type: str
      login_password_file:
        description:
        - Path of a file on the managed host whose first line is the password. It must not be readable by group or others.
        type: path
      login_unix_socket:
        description:
        - Directory of the server's Unix socket, for a local connection.
        type: path
      container:
        description:
        - Name or id of the server's Docker container, whose own C(pg_restore) restores the archive (the
          connection defaults come from the container, as for M(lifeboat.ops.postgresql_dump)).
        type: str
      ssl_mode:
        description:
        - libpq C(sslmode). Use V(verify-full) with O(postgresql.ssl_ca_cert) across untrusted networks.
        type: str
        choices:
        - disable
        - allow
        - prefer
        - require
        - verify-ca
        - verify-full
      ssl_ca_cert:
        description:
        - CA certificate file that signed the server's certificate (libpq C(sslrootcert)).
        type: path
      ssl_cert:
        description:
        - Client certificate file (libpq C(sslcert)).
        type: path
      ssl_key:
        description:
        - Client private key file (libpq C(sslkey)).
        type: path
      connect_timeout:
        description:
        - Seconds to wait for a connection.
        type: int
        default: 10
      pg_bin_dir:
        description:
        - Directory holding the PostgreSQL client programs to use.
        - When not set, the client whose major version matches the server's is taken from C(/usr/lib/postgresql/N/bin)
          (Debian, Ubuntu) or C(/usr/pgsql-N/bin) (RHEL), else from E(PATH); a client older than the server is refused.
        type: path
  mongodb:
    description:
    - Connection to the MongoDB server that restore tests of MongoDB archives restore into (O(level=restore)).
    - The test creates a scratch database under a name no database has, compares, and drops it again; the user needs
      the right to create databases.
    type: dict
    suboptions:
      login_uri:
        description:
        - A MongoDB connection string, V(mongodb://...) or V(mongodb+srv://...) (MongoDB Atlas).
        - Mutually exclusive with O(mongodb.login_host) and O(mongodb.login_user). It may carry the password, or take
          it from O(mongodb.login_password).
        - The tools receive it through C(--config=/dev/fd/N), an anonymous file in memory that only they inherit
          and that no crash leaves behind, never on their command line.
        type: str
      login_host:
        description:
        - Host name or IP address of the server. V(localhost) when neither this nor O(mongodb.login_uri) is set.
        type: str
        aliases:
        - host
      login_port:
        description:
        - Port of the server. V(27017) when not set.
        type: int
        aliases:
        - port
      login_user:
        description:
        - User to authenticate as. No authentication when not set.
        type: str
        aliases:
        - user
      login_password:
        description:
        - Password of O(mongodb.login_user). Mutually exclusive with O(mongodb.login_password_file).
        type: str
      login_password_file:
        description:
        - Path of a file on the managed host whose first line is the password. It must not be readable by group or others.
        type: path
      login_database:
        description:
        - Database that holds the user's credentials (C(authSource)).
        type: str
        default: admin
      auth_mechanism:
        description:
        - Authentication mechanism. The server's default when not set.
        type: str
        choices:
        - SCRAM-SHA-1
        - SCRAM-SHA-256
        - MONGODB-X509
        - PLAIN
      tls:
        description:
        - Connect with TLS.
        type: bool
        default: false
      tls_ca_file:
        description:
        - CA certificate file that signed the server's certificate.
        type: path
      tls_certificate_key_file:
        description:
        - Client certificate and key in one PEM file.
        type: path
      tls_allow_invalid_certificates:
        description:
        - Accept any server certificate. Only for tests; it defeats TLS's protection against impostors.
        type: bool
        default: false
      connect_timeout:
        description:
        - Seconds to wait for the server.
        type: int
        default: 10
      tools_dir:
        description:
        - Directory holding C(mongodump) and C(mongorestore). Taken from E(PATH) when not set.
        type: path
      container:
        description:
        - Name or id of the server's Docker container, whose own C(mongorestore) restores the archive (the
          connection defaults come from the container, as for M(lifeboat.ops.mongodb_dump)).
        type: str
"""
