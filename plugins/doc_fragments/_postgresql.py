# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this doc fragment may change in any release.
# Only this collection's own modules extend it.

from __future__ import annotations


class ModuleDocFragment:
    # Connection options shared by every PostgreSQL module; never add them to a single module.
    DOCUMENTATION = r"""
options:
  login_uri:
    description:
      - A libpq connection URI or key/value connection string, for example V(postgresql://backup@db.internal:5432/journal?sslmode=require).
      - Mutually exclusive with O(login_host), O(login_user) and O(login_unix_socket).
      - A password inside it is taken out and handed to the PostgreSQL tools through their environment, never their command line.
    type: str
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server.
    type: str
    aliases: [host]
  login_port:
    description:
      - Port of the PostgreSQL server. libpq's default, V(5432), when not set.
    type: int
    aliases: [port]
  login_user:
    description:
      - User to connect as. libpq's default (the operating system user) when not set.
    type: str
    aliases: [user]
  login_password:
    description:
      - Password of O(login_user). Mutually exclusive with O(login_password_file).
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
      - Name or id of the PostgreSQL server's Docker container. Its own C(pg_dump), C(pg_restore) and C(pg_dumpall)
        do the work, run through the Docker Engine API, their streams piped through this host's pipeline (no client
        is needed on the host, and the versions match the server).
      - The connection defaults come from the container, each overridable by its option. The host is the
        container's network address, the user is C(POSTGRES_USER) (else C(postgres)), and the password is
        C(POSTGRES_PASSWORD) of its environment. For a dump, the database is C(POSTGRES_DB) (else the user).
      - The password reaches the client in the exec's environment, never a command line. Needs the C(docker) Python
        SDK on the managed host. Dumps in the C(custom) format and restores with one job only.
    type: str
  ssl_mode:
    description:
      - libpq C(sslmode). Use V(verify-full) with O(ssl_ca_cert) across untrusted networks.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
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
requirements:
  - psycopg 3 (C(python3-psycopg) on Debian and Ubuntu) on the managed host.
  - The PostgreSQL client programs on the managed host.
"""
