# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this doc fragment may change in any release.
# Only this collection's own modules extend it.

from __future__ import annotations


class ModuleDocFragment:
    # Where the reverse proxy's files live and how its nginx is tested and reloaded.
    DOCUMENTATION = r"""
options:
  sites_dir:
    description: Directory nginx includes site files from (C(lifeboat-NAME.conf) are this collection's).
    type: path
    default: /etc/nginx/conf.d
  include_dir:
    description: Directory of each site's upstream file (C(NAME.upstream)) and basic-auth file (C(NAME.htpasswd)).
    type: path
    default: /etc/nginx/lifeboat
  tls_dir:
    description: Directory of issued and self-signed certificates, C(NAME/fullchain.pem) and C(NAME/privkey.pem) (0600).
    type: path
    default: /etc/lifeboat-proxy/tls
  webroot:
    description: Directory nginx serves C(/.well-known/acme-challenge/) from, on every site's HTTP port.
    type: path
    default: /var/lib/lifeboat-proxy/acme-challenge
  listen_address:
    description: Address the sites listen on; empty for every address.
    type: str
    default: ""
  http_port:
    description: HTTP port of the sites (ACME challenges, the redirect to HTTPS).
    type: int
    default: 80
  https_port:
    description: HTTPS port of the sites.
    type: int
    default: 443
  probe_address:
    description: Address the proof request after a reload goes to (the proxy itself, on the host).
    type: str
    default: 127.0.0.1
  nginx_binary:
    description: The nginx program (runs C(nginx -t)).
    type: path
    default: /usr/sbin/nginx
  nginx_config:
    description: nginx's main configuration file, tested whole with C(nginx -t -c).
    type: path
    default: /etc/nginx/nginx.conf
  nginx_prefix:
    description: nginx's prefix (C(-p)), for an nginx with a private prefix; empty for the compiled-in one.
    type: path
    default: ""
  nginx_pid_file:
    description: nginx's pid file; the reload signals that master process and waits for its new workers.
    type: path
    default: /run/nginx.pid
  reload_timeout:
    description: Seconds to wait for nginx's new workers after a reload.
    type: int
    default: 10
"""
