# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""An app's parts, found from its Docker Compose project: services, database servers, volumes, bind mounts.

Compose labels every container it makes with ``com.docker.compose.project`` and ``com.docker.compose.service``.
A service is a database server when its image says so (postgres, postgis, timescale; mongo, ferretdb) or, for an
image of another name, when its own client answers inside it (``pg_dump``, ``mongodump``): the table of sources
decides (``_sources.database_source``). For each database service the result holds a backup job that the ``backup``
and ``backup_schedule`` roles take as it is: the dump runs inside the container with the container's own login (see
``_clients``). Volumes and bind mounts are listed with whether they hold a database's data directory, which a dump
covers. The docker_app_info module's home (``docker_app_info_spec()``, ``docker_app_info(run)``) closes the file.
"""

from __future__ import annotations

import os
import re
import typing as t

from . import _sources
from ._clients import docker_api, docker_sdk
from ._common import LifeboatError, one_line
from ._module_frame import Outcome, Run

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"


def _under(path: str, directory: str) -> bool:
    return os.path.normpath(path) == os.path.normpath(directory) or \
        os.path.normpath(path).startswith(os.path.normpath(directory).rstrip("/") + "/")


class NoSuchProject(LifeboatError):
    """No container on this host belongs to the compose project (a restore words this its own way)."""


def describe(project: str) -> dict[str, t.Any]:
    """The project's services (by name), its database jobs, volumes and bind mounts."""
    if not project or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", project):
        raise LifeboatError(f"project {project!r} is not a compose project name (lowercase letters, digits, '-', '_')")
    docker = docker_sdk()
    try:
        api = docker_api()
        found = api.containers(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
    except docker.errors.DockerException as exc:
        raise LifeboatError(f"cannot reach the Docker engine: {one_line(exc)}") from None
    if not found:
        raise NoSuchProject(f"no container on this host carries the label {PROJECT_LABEL}={project}; "
                            "check the project name (docker compose ls)")
    services, jobs, volumes, binds = [], [], [], []
    compose_files: dict[str, None] = {}
    try:
        for summary in sorted(found, key=lambda c: (c["Labels"].get(SERVICE_LABEL, ""), c["Names"][0])):
            info = api.inspect_container(summary["Id"])
            name = info["Name"].lstrip("/")
            labels = info["Config"]["Labels"]
            service = labels.get(SERVICE_LABEL, name)
            compose_files.update(dict.fromkeys(_compose_files(labels)))
            source, evidence = _sources.database_source(api, info)
            environment = dict(item.split("=", 1) for item in info["Config"].get("Env") or [] if "=" in item)
            engine = source.name if source else None
            data_dir = source.container_data_dir(environment) if source else None
            services.append({"service": service, "container": name, "id": info["Id"], "image": info["Config"]["Image"],
                             "running": bool(info["State"].get("Running")), "engine": engine, "engine_evidence": evidence,
                             "data_dir": data_dir})
            if source:
                jobs.append({"name": f"{project}-{service}", "engine": source.name, "container": name,
                             **source.container_job(environment)})
            for mount in info.get("Mounts") or []:
                entry = {"service": service, "container": name, "destination": mount["Destination"],
                         "read_only": not mount.get("RW", True),
                         "database_data": bool(data_dir and _under(mount["Destination"], data_dir))}
                if mount["Type"] == "volume":
                    volumes.append({"volume": mount["Name"],
                                    "anonymous": bool(re.fullmatch(r"[0-9a-f]{64}", mount["Name"])), **entry})
                elif mount["Type"] == "bind":
                    binds.append({"source": mount["Source"], **entry})
    except docker.errors.DockerException as exc:
        raise LifeboatError(f"reading project {project} from the Docker engine failed: {one_line(exc)}") \
            from None
    finally:
        api.close()
    files = _files_job(project, volumes, binds, list(compose_files))
    return {"project": project, "services": services, "jobs": jobs + ([files] if files else []), "volumes": volumes,
            "bind_mounts": binds, "compose_files": list(compose_files)}


def _compose_files(labels: dict[str, str]) -> list[str]:
    """The project's compose files and its .env, as compose labels name them, where this host has them."""
    named = [path for path in labels.get(CONFIG_FILES_LABEL, "").split(",") if path]
    directory = labels.get(WORKING_DIR_LABEL)
    if directory:
        named.append(os.path.join(directory, ".env"))
    return [path for path in named if os.path.isabs(path) and os.path.isfile(path)]


def _files_job(project: str, volumes: list[dict[str, t.Any]], binds: list[dict[str, t.Any]],
               compose_files: list[str]) -> dict[str, t.Any] | None:
    """One files job for what the dumps do not cover: named volumes and bind mounts that hold no database's data
    directory, and the compose files. Anonymous volumes are left out (a new container starts without them)."""
    kept_volumes = list(dict.fromkeys(v["volume"] for v in volumes if not v["database_data"] and not v["anonymous"]))
    kept_paths = list(dict.fromkeys(b["source"] for b in binds if not b["database_data"]))
    kept_paths = [path for path in kept_paths if not any(_under(path, other) and path != other for other in kept_paths)]
    kept_paths += [path for path in compose_files if not any(_under(path, other) for other in kept_paths)]
    if not kept_volumes and not kept_paths:
        return None
    return {"name": f"{project}-files", "engine": "files", "volumes": kept_volumes, "paths": kept_paths}


def docker_app_info_spec() -> dict[str, t.Any]:
    return {"project": {"type": "str", "required": True}}


def docker_app_info(run: Run) -> Outcome:
    return Outcome(changed=False, result=describe(run.params["project"]))
