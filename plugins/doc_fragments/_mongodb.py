# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this doc fragment may change in any release.
# Only this collection's own modules extend it.

from __future__ import annotations


class ModuleDocFragment:
    # Connection options shared by every MongoDB module; never add them to a single module.
    DOCUMENTATION = r"""
options:
  login_uri:
    description:
      - A MongoDB connection string, V(mongodb://...) or V(mongodb+srv://...) (MongoDB Atlas).
      - Mutually exclusive with O(login_host) and O(login_user). It may carry the password, or take it from O(login_password).
      - The tools receive it through C(--config=/dev/fd/N), an anonymous file in memory that only they inherit and
        that no crash leaves behind, never on their command line.
    type: str
  login_host:
    description:
      - Host name or IP address of the server. V(localhost) when neither this nor O(login_uri) is set.
    type: str
    aliases: [host]
  login_port:
    description:
      - Port of the server. V(27017) when not set.
    type: int
    aliases: [port]
  login_user:
    description:
      - User to authenticate as. No authentication when not set.
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
  login_database:
    description:
      - Database that holds the user's credentials (C(authSource)).
    type: str
    default: admin
  auth_mechanism:
    description:
      - Authentication mechanism. The server's default when not set.
    type: str
    choices: [SCRAM-SHA-1, SCRAM-SHA-256, MONGODB-X509, PLAIN]
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
      - Name or id of the MongoDB server's Docker container. Its own C(mongodump) and C(mongorestore) do the work,
        run through the Docker Engine API, their streams piped through this host's pipeline (no tools are needed
        on the host).
      - The connection defaults come from the container, each overridable by its option. The host is the
        container's network address, the user and password C(MONGO_INITDB_ROOT_USERNAME) and
        C(MONGO_INITDB_ROOT_PASSWORD) of its environment.
      - The connection string reaches the tools through a pipe that the container's C(sh) fills from the exec's
        environment, never a command line or a file. Needs the C(docker) Python SDK on the managed host.
    type: str
requirements:
  - pymongo (C(python3-pymongo) on Debian and Ubuntu) on the managed host.
  - The MongoDB Database Tools (C(mongodump), C(mongorestore)) on the managed host.
"""
