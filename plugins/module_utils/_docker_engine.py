# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The one place a Docker Engine API client is made: DOCKER_HOST (with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as
the docker CLI reads them), else this host's socket.

It imports nothing of this library and takes the docker SDK from its caller, so the exec helper's child process
(``_docker_exec``) loads nothing more than it needs, and hosts without the SDK import this file harmlessly.
"""

from __future__ import annotations

import os
import typing as t

LOCAL_SOCKET = "unix:///var/run/docker.sock"


def engine_url() -> str:
    """Where the engine is reached: DOCKER_HOST, else the local socket."""
    return os.environ.get("DOCKER_HOST") or LOCAL_SOCKET


def engine_client(docker: t.Any, high_level: bool = False, timeout: int | None = None) -> t.Any:
    """A client of the engine: the SDK's low-level ``APIClient`` (the exec and inspect calls), or with
    ``high_level`` its ``DockerClient`` (containers, images, networks as objects). The API version is the engine's."""
    kwargs: dict[str, t.Any] = {"base_url": engine_url(), **docker.utils.kwargs_from_env(), "version": "auto"}
    if timeout is not None:
        kwargs["timeout"] = timeout
    return (docker.DockerClient if high_level else docker.APIClient)(**kwargs)
