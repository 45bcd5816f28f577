# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Where a database client runs: on this host, or inside the database's own container. One object each.

Both answer the same questions, so the engines never ask which one they hold:

- ``candidates(name, dirs, bin_dir)``: the paths of a client tool to choose from (the engine picks by version);
- ``find(name, dirs)``: the one path of a tool, or a one-line error;
- ``version(path)``: that tool's ``--version`` line;
- ``command(argv, env, forward)``: the argv and environment that run the tool there, for the pipeline's stages
  (on the host, unchanged; in a container, a child process of ours that runs it through the Docker Engine API:
  see ``_docker_exec``); ``forward`` names the variables of ``env`` the tool itself must see (a password), and
  ``secret_option`` = (option, content) gives the tool ``option=PATH`` of a file holding ``content`` that is on no
  disk (here a memfd of ``private``; in a container a pipe the container's shell fills from the exec's environment);
- ``describe()``: what the manifest records of the place (nothing for the host; the container, its image and
  image id).

The docker SDK is imported only when a container is named, so hosts without it run everything else.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import typing as t

from . import _docker_exec  # imported, not only named: Ansible packs into a module's payload what it imports
from ._common import LifeboatError, PrivateDir, child_env, find_binary, one_line, tool_version
from ._docker_engine import engine_client

SECRET_VARIABLE = "LIFEBOAT_SECRET_FILE"
# In the container, a here-document of dash (every Debian and Ubuntu image's sh) is a pipe: the content is on no disk.
_WITH_SECRET_FD = f'exec "$@" 3<<LIFEBOAT_EOF\n${SECRET_VARIABLE}\nLIFEBOAT_EOF\n'
# The helper's import root goes on sys.path by argv, not PYTHONPATH: in an Ansible module that root is the AnsiballZ
# zip, whose sitecustomize.py (ansible-core 2.19's, one line with a literal backslash-n) Python's startup would run
# from PYTHONPATH, printing a SyntaxError on the helper's stderr that then stood for any failure of the client.
_BOOT = ("import importlib, sys; sys.path.insert(0, sys.argv[1]); "
         "sys.exit(importlib.import_module(sys.argv[2]).main(sys.argv[3:]))")


def _package_root(module: t.Any) -> str:
    """The directory ``module`` is imported from by its full name (a checkout, the host's package, a module's zip)."""
    root = os.path.dirname(module.__file__)
    for _part in module.__name__.split(".")[:-1]:
        root = os.path.dirname(root)
    return root


# Where the exec helper's child process imports it from: where this library was loaded, found once.
_HELPER_ROOT = _package_root(_docker_exec)


class HostClient:
    """Clients installed on this host (found on PATH or in the given directories)."""

    where = "this host"
    reports_digest = False  # a tool's output reaches the pipeline, which hashes it

    def candidates(self, name: str, dirs: t.Sequence[str] = (), bin_dir: str | None = None) -> list[str]:
        if bin_dir:
            path = os.path.join(bin_dir, name)
            return [path] if os.access(path, os.X_OK) else []
        found = sorted(path for pattern in dirs for path in glob.glob(os.path.join(pattern, name)))
        on_path = shutil.which(name)
        return found + ([on_path] if on_path else [])

    def find(self, name: str, dirs: t.Sequence[str | None] = ()) -> str:
        return find_binary(name, [d for d in dirs if d])

    def version(self, path: str) -> str:
        return tool_version(path)

    def command(self, argv: list[str], env: dict[str, str] | None = None, forward: t.Sequence[str] = (),
                secret_option: tuple[str, str] | None = None,
                private: PrivateDir | None = None) -> tuple[list[str], dict[str, str] | None]:
        if secret_option is not None:
            if private is None:
                raise ValueError("a secret option needs the private directory its file lives in")
            option, content = secret_option
            argv = [argv[0], f"{option}={private.secret_file('tools.yaml', content)}", *argv[1:]]
        return argv, env

    def describe(self) -> dict[str, t.Any] | None:
        return None


HOST = HostClient()


def docker_sdk() -> t.Any:
    try:
        import docker  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise LifeboatError("working with containers needs the docker Python SDK on this host (pip install docker, "
                            "or python3-docker)") from None
    return docker


def docker_client(timeout: int | None = None) -> t.Any:
    """The docker SDK's high-level client of the engine (containers, images, networks as objects)."""
    return engine_client(docker_sdk(), high_level=True, timeout=timeout)


def docker_api() -> t.Any:
    """A client of the Docker Engine API (DOCKER_HOST, else the local socket), or a one-line error."""
    docker = docker_sdk()
    try:
        return engine_client(docker)
    except docker.errors.DockerException as exc:
        raise LifeboatError(f"cannot reach the Docker engine: {one_line(exc)}") from None


class ContainerClient:
    """The clients inside a running container, run through the Docker Engine API (never the docker CLI)."""

    reports_digest = True  # our exec helper hashes a tool's output itself (_pipeline.write_stream's producer_hashes)

    def __init__(self, reference: str) -> None:
        docker = docker_sdk()
        try:
            self._api = engine_client(docker)
            info = self._api.inspect_container(reference)
        except docker.errors.NotFound:
            raise LifeboatError(f"container {reference} does not exist on this host") from None
        except docker.errors.DockerException as exc:
            raise LifeboatError(f"cannot reach the Docker engine to find container {reference}: "
                                f"{one_line(exc)}") from None
        if not info["State"].get("Running"):
            raise LifeboatError(f"container {reference} is not running ({info['State'].get('Status')}); start it")
        self.reference = reference
        self.id: str = info["Id"]
        self.name: str = info["Name"].lstrip("/")
        self.where = f"container {self.name}"
        self.image: str = info["Config"].get("Image", "")
        self.image_id: str = info.get("Image", "")
        self.environment = dict(item.split("=", 1) for item in info["Config"].get("Env") or [] if "=" in item)
        networks = info["NetworkSettings"].get("Networks") or {}
        addresses = [network.get("IPAddress") for network in networks.values() if network.get("IPAddress")]
        # The host side (counts, locks, the side database) talks to the server at the container's address.
        self.address: str | None = addresses[0] if addresses else None

    def exec(self, argv: list[str]) -> tuple[int, str]:
        """Run a short command in the container; its exit code and output (for versions and probes)."""
        docker = docker_sdk()
        try:
            exec_id = self._api.exec_create(self.id, argv, stdout=True, stderr=True)["Id"]
            output = self._api.exec_start(exec_id).decode("utf-8", "replace")
            return int(self._api.exec_inspect(exec_id).get("ExitCode") or 0), output
        except docker.errors.APIError as exc:
            raise LifeboatError(f"cannot run {argv[0]} in {self.where}: {exc.explanation or exc}") from None

    def candidates(self, name: str, dirs: t.Sequence[str] = (), bin_dir: str | None = None) -> list[str]:
        code, output = self.exec(["sh", "-c", 'command -v "$0"', name])
        return [output.strip()] if code == 0 and output.strip() else []

    def find(self, name: str, dirs: t.Sequence[str | None] = ()) -> str:
        found = self.candidates(name)
        if not found:
            raise LifeboatError(f"{name} was not found in {self.where}: give the container of the database server")
        return found[0]

    def version(self, path: str) -> str:
        _code, output = self.exec([path, "--version"])
        lines = output.strip().splitlines()
        return lines[0].strip() if lines else ""

    def command(self, argv: list[str], env: dict[str, str] | None = None, forward: t.Sequence[str] = (),
                secret_option: tuple[str, str] | None = None,
                private: PrivateDir | None = None) -> tuple[list[str], dict[str, str] | None]:
        inside = {name: (env or {})[name] for name in forward if name in (env or {})}
        if secret_option is not None:
            option, content = secret_option
            inside[SECRET_VARIABLE] = content
            argv = ["sh", "-c", _WITH_SECRET_FD, "sh", argv[0], f"{option}=/dev/fd/3", *argv[1:]]
        helper_env = child_env(inside)
        names = [item for name in inside for item in ("--env", name)]
        return ([sys.executable, "-c", _BOOT, _HELPER_ROOT, _docker_exec.__name__, self.id, "--name", self.name, *names,
                 "--", *argv], helper_env)

    def describe(self) -> dict[str, t.Any]:
        return {"name": self.name, "id": self.id, "image": self.image, "image_id": self.image_id}


def client_for(container: str | None) -> HostClient | ContainerClient:
    """The place the clients run: the named container's, or this host's."""
    return ContainerClient(container) if container else HOST
