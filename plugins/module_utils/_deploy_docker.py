# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""The Docker side of a deploy: the engine's connection (DockerHost), the containers of an app's releases (their
labels, the live one cross-checked against the state), their CPU weight, their stop, their pruning, a migration run
in one of them.
"""

from __future__ import annotations

import socket
import typing as t

from ._clients import docker_client, docker_sdk
from ._common import LifeboatError, one_line, redact
from ._deploy_records import now

LABEL_APP = "lifeboat.deploy.app"  # every container a deploy starts carries these labels
LABEL_COLOR = "lifeboat.deploy.color"
LABEL_SEQ = "lifeboat.deploy.seq"
LABEL_RELEASE = "lifeboat.deploy.release"
# A deploy runs on the host that serves the live color: the new color takes CPU at a low weight until traffic
# reaches it, so that its start does not queue the live color's requests on a small host. It gets its full weight
# (Docker's default 1024) the moment before the switch.
WARMING_CPU_SHARES = 128
SERVING_CPU_SHARES = 1024


class DockerHost:
    """This host's Docker engine, through the docker SDK, with every error in one line."""

    def __init__(self) -> None:
        self.docker = docker_sdk()
        try:
            self.client = docker_client(timeout=120)
            self.client.ping()
        except self.docker.errors.DockerException as exc:
            raise LifeboatError(f"cannot reach the Docker engine: {one_line(exc)}") from None

    def image(self, reference: str, pull: bool = True) -> t.Any | None:
        """The image, pulled when it is not on the host (None when it is not and pull is false: check mode)."""
        try:
            return self.client.images.get(reference)
        except self.docker.errors.ImageNotFound:
            if not pull:
                return None
        except self.docker.errors.DockerException as exc:
            raise LifeboatError(f"cannot look up image {reference}: {one_line(exc)}") from None
        try:
            return self.client.images.pull(reference)
        except self.docker.errors.DockerException as exc:
            raise LifeboatError(f"image {reference} is not on this host and cannot be pulled: "
                                f"{one_line(exc)}") from None

    def ours(self, app: str) -> list[t.Any]:
        """The app's containers (running or not), newest release first."""
        found = self.client.containers.list(all=True, filters={"label": f"{LABEL_APP}={app}"})
        return sorted(found, key=lambda c: int(c.labels.get(LABEL_SEQ, "0")), reverse=True)

    def get(self, container_id: str) -> t.Any | None:
        try:
            return self.client.containers.get(container_id)
        except self.docker.errors.NotFound:
            return None


def record_of(container: t.Any, params: dict[str, t.Any], image: t.Any, seq: int, color: str,
              config_hash: str) -> dict[str, t.Any]:
    return {"seq": seq, "release": params.get("release") or params["image"], "image": params["image"],
            "image_id": image.id, "image_digests": list(image.attrs.get("RepoDigests") or []), "color": color,
            "container": container.name, "container_id": container.id, "port": params[f"{color}_port"],
            "config_hash": config_hash, "deployed_at": now(), "migrated": False, "backups": []}


def cross_check(state: dict[str, t.Any], docker_host: DockerHost, app: str) -> tuple[t.Any | None, list[t.Any]]:
    """The live container, as the state says and the engine confirms; a mismatch stops the run in one line.

    Also returns the running containers of the app that are not live (a killed run's leftovers)."""
    live = state.get("live")
    running = [c for c in docker_host.ours(app) if c.status == "running"]
    if live is None:
        if running:
            raise LifeboatError(f"the state file of {app} names no live release, but container(s) "
                                f"{', '.join(c.name for c in running)} of it run; stop them or restore the state file")
        return None, []
    container = docker_host.get(live["container_id"])
    if container is None:
        raise LifeboatError(f"the state file says {live['container']} ({live['color']}) is live, but no such container "
                            "exists; restore it or remove the state file")
    if container.status != "running":
        raise LifeboatError(f"the state file says {live['container']} ({live['color']}) is live, but it is "
                            f"{container.status}; start it or fix the state file")
    if container.labels.get(LABEL_COLOR) != live["color"]:
        raise LifeboatError(f"container {container.name} is labelled {container.labels.get(LABEL_COLOR)}, the state "
                            f"file says {live['color']}; fix the state file")
    return container, [c for c in running if c.id != container.id]


def serve(container: t.Any) -> bool:
    """The color about to take traffic gets its full CPU weight."""
    container.update(cpu_shares=SERVING_CPU_SHARES)
    return True


def stop_container(container: t.Any, timeout: int) -> None:
    container.reload()
    if container.status == "running":
        container.stop(timeout=timeout)


def prune(docker_host: DockerHost, params: dict[str, t.Any], live_id: str | None, previous_id: str | None = None,
          spare: str | None = None) -> list[str]:
    """Stopped releases beyond keep_releases (the live one counts) removed, with their image when nothing else
    uses it. The previous release (the rollback target) is kept first, then the newest: a release that was rolled
    back is newer than the one it replaced, but it is not what a rollback goes back to. Failed releases (stopped
    after a rollback) count like any other; ``spare`` names the one that just failed, kept for inspection even
    beyond keep_releases until the next prune (so at most one release more than keep_releases stays)."""
    removed = []
    kept = 1 if live_id else 0
    ours = sorted(docker_host.ours(params["app"]), key=lambda container: container.id != previous_id)  # stable
    for container in ours:
        if container.id == live_id or container.status == "running" or container.name == spare:
            continue
        if kept < params["keep_releases"]:
            kept += 1
            continue
        image_id = container.attrs.get("Image")
        container.remove()
        removed.append(container.name)
        # one listing request: containers.list() inspects each container of the host, and one removed meanwhile
        # (by anyone) made the whole deploy fail with a 404
        in_use = any(c.get("ImageID") == image_id for c in docker_host.client.api.containers(all=True))
        if image_id and not in_use:
            try:
                docker_host.client.images.remove(image_id)
            except docker_host.docker.errors.APIError:
                pass  # tagged elsewhere or a parent of another image: not ours to force
    return removed


def migrate(params: dict[str, t.Any], docker_host: DockerHost, container: t.Any) -> dict[str, t.Any]:
    api = docker_host.client.api
    try:
        exec_id = api.exec_create(container.id, params["migration_command"], stdout=True, stderr=True)["Id"]
        output = api.exec_start(exec_id).decode("utf-8", "replace")
        code = api.exec_inspect(exec_id).get("ExitCode")
    except docker_host.docker.errors.DockerException as exc:
        return {"ok": False, "reason": f"the migration command could not run: {one_line(exc)}"}
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    tail = redact(" / ".join(lines[-3:]))
    if code != 0:
        return {"ok": False, "exit_code": code, "output_tail": tail,
                "reason": f"the migration command exited with {code}: {tail}"}
    return {"ok": True, "exit_code": 0, "output_tail": tail}


def port_free(address: str, port: int) -> bool:
    """Nothing listens on the port (connections of a stopped listener left in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True
