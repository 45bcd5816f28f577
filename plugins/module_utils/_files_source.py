# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Docker named volumes and host paths (an uploads folder, docker-compose.yml, .env, a tunnel's config), archived as
one GNU tar stream (POSIX format: xattrs, sparse files, hard links, numeric owners) through the same pipeline as the
dumps: compressed, optionally encrypted, checksummed, a hidden temp file, fsync, final name only on success.

Members keep their path on this host, relative to ``/`` (a volume's under its Mountpoint), so ``tar -x -C /``
alone puts everything back where it was; the manifest lists the roots and, per root, every entry's type, size,
sha256, mode, owner and link target, read from the stored stream itself (:mod:`_tar_index`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fnmatch
import functools
import os
import re
import shutil
import socket
import typing as t
from dataclasses import dataclass, field

from . import _manifest, _stopped_notes, _stopping, _tar_index
from ._archive import (
    ArchiveOptions,
    Decode,
    Producer,
    Recipe,
    SourceDump,
    load_trusted,
    read_for_restore,
    safety_dump_options,
    write_archive,
)
from ._clients import HOST, docker_api, docker_sdk
from ._codecs import Decryption
from ._common import LifeboatError, PrivateDir, find_binary, first_few, one_line
from ._docker_engine import engine_url
from ._files import exchange_paths
from ._signing import Trust, host_trust

ARCHIVE_FORMAT = "tar-posix"
KIND = "files.tar"
# Kernel file systems: their "files" are the running system, not data (and reading some of them never ends).
REFUSED_TREES = ("/proc", "/sys", "/dev", "/run")
# GNU tar's warnings that still give a usable archive (exit code 1), each naming a file.
_TAR_SAYS = re.compile(r"^(?:\S*/)?tar: ")  # tar names itself by the path it was started with
_CHANGED = re.compile(r"^(?P<name>.+?): (?P<what>file changed as we read it|File removed before we read it|"
                      r"File shrank by \d+ bytes; padding with zeros)$")
TAR_CREATE = ["--format=posix", "--numeric-owner", "--sparse", "--xattrs", "--xattrs-include=*",
              "--pax-option=delete=atime,delete=ctime"]
TAR_EXTRACT = ["--numeric-owner", "--same-owner", "--preserve-permissions", "--xattrs", "--xattrs-include=*"]


def files_options() -> dict[str, t.Any]:
    """What files_backup takes besides the archive options (the host command's and roles' files jobs take the same)."""
    return {
        "volumes": {"type": "list", "elements": "str", "default": []},
        "paths": {"type": "list", "elements": "path", "default": []},
        "include": {"type": "list", "elements": "str", "default": []},
        "exclude": {"type": "list", "elements": "str", "default": []},
        "stop_containers": {"type": "list", "elements": "str", "default": []},
    }


def files_restore_options() -> dict[str, t.Any]:
    """What files_restore takes besides how the archive is chosen and read (the restore role's items the same)."""
    return {
        "volume_map": {"type": "dict", "default": {}},
        "path_map": {"type": "dict", "default": {}},
        "only": {"type": "list", "elements": "str", "default": []},
    }


def volume_path(api: t.Any, name: str) -> str:
    docker = docker_sdk()
    try:
        return t.cast(str, api.inspect_volume(name)["Mountpoint"])
    except docker.errors.NotFound:
        raise LifeboatError(f"volume {name} does not exist on this host (docker volume ls lists the volumes)") from None
    except docker.errors.DockerException as exc:
        raise LifeboatError(f"cannot inspect volume {name}: {one_line(exc)}") from None


def root(kind: str, name: str, path: str) -> dict[str, t.Any]:
    """One thing a files archive holds: a volume (by name) or a host path, where it is, and its tar member name."""
    return {"label": f"{kind}:{name}", "kind": kind, "name": name, "path": path, "member": path.lstrip("/")}


def _under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def check_path(path: str) -> str:
    if not os.path.isabs(path):
        raise LifeboatError(f"path {path!r} must be absolute")
    path = os.path.normpath(path)
    if path == "/" or any(_under(path, tree) for tree in REFUSED_TREES):
        raise LifeboatError(f"path {path} is the whole system or a kernel file system; give the app's own folders")
    try:
        os.stat(path)
    except OSError as exc:  # os.access and lexists say False for a loop, which read as a permission problem
        if exc.errno == errno.ELOOP:
            raise LifeboatError(f"symlink loop at {path}: its links never reach a file or folder; give the real "
                                "path") from None
    if not os.path.lexists(path):
        raise LifeboatError(f"path {path} does not exist")
    if not os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0)):
        raise LifeboatError(f"path {path} is not readable by this user; run the job as a user that may read it")
    return path


def resolve_roots(volumes: t.Sequence[str], paths: t.Sequence[str]) -> list[dict[str, t.Any]]:
    """The job's roots, checked: volumes exist, paths are absolute, readable, not kernel trees, and none overlap."""
    roots = []
    if volumes:
        api = docker_api()
        roots += [root("volume", name, os.path.normpath(volume_path(api, name))) for name in dict.fromkeys(volumes)]
    roots += [root("path", path, path) for path in dict.fromkeys(check_path(p) for p in paths)]
    for first in roots:
        for second in roots:
            if first is not second and _under(second["path"], first["path"]):
                raise LifeboatError(f"{second['label']} is inside {first['label']}: give one of them")
    return roots


@dataclass
class DumpRequest:
    archive: ArchiveOptions
    volumes: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    stop_containers: list[str] = field(default_factory=list)

    def validate(self) -> None:
        self.archive.validate()
        if not self.volumes and not self.paths:
            raise LifeboatError("give volumes or paths to back up")


def _included(roots: list[dict[str, t.Any]], include: list[str]) -> list[str]:
    """The member names an include list keeps (with the directories that lead to them), for tar --files-from."""
    names: dict[str, None] = {}
    for item in roots:
        if not os.path.isdir(item["path"]):
            names[item["member"]] = None
            continue
        names[item["member"]] = None
        for directory, dirs, files in os.walk(item["path"]):
            dirs.sort()
            for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
                relative = os.path.relpath(os.path.join(directory, name), item["path"])
                if any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(name, p) for p in include):
                    parts = relative.split("/")
                    for depth in range(1, len(parts) + 1):
                        names[f"{item['member']}/{'/'.join(parts[:depth])}"] = None
    return list(names)


def tar_command(roots: list[dict[str, t.Any]], request: DumpRequest, private: PrivateDir) -> list[str]:
    argv = [find_binary("tar"), "--create", "--file=-", "--directory=/", *TAR_CREATE]
    argv += [f"--exclude={pattern}" for pattern in request.exclude]
    if request.include:
        listing = os.path.join(private.path, "members")
        with open(listing, "wb") as handle:
            handle.write(b"".join(name.encode("utf-8", "surrogateescape") + b"\0"
                                  for name in _included(roots, request.include)))
        return [*argv, "--no-recursion", "--null", f"--files-from={listing}"]
    return [*argv, "--", *(item["member"] for item in roots)]


def _strip(item: dict[str, t.Any]) -> int:
    """Components that tar --strip-components removes so that the root lands as the target's own name."""
    return item["member"].count("/")


def restore_commands(file_name: str, decode: Decode, _extras: list[dict[str, t.Any]], roots: list[dict[str, t.Any]]
                     ) -> Recipe:
    """Commands that put every root back where it was, without lifeboat.ops: a volume into its directory on this
    host (made by ``docker volume create`` when it is gone, as after ``docker compose down -v``; wherever this
    host's Docker keeps it), a path to its own place."""
    extract = " ".join(TAR_EXTRACT).replace("=*", "='*'")
    commands = ["# stop the containers that use these volumes and paths first; each command puts one back where it "
                "was (a volume into an empty one: right after docker compose up, or made here)"]
    for item in roots:
        member = _manifest.shell_quote(item["member"])
        if item["kind"] == "volume":
            name = _manifest.shell_quote(item["name"])
            # The root lands as its own last name (_data, the local driver's) in the volume's folder.
            inside = f"\"$(docker volume inspect --format '{{{{ .Mountpoint }}}}' {name})/..\""
            commands += [f"docker volume create {name}",
                         f"{decode(file_name)} | tar -x -f - -C {inside} --strip-components={_strip(item)} {extract} {member}"]
        else:
            commands.append(f"{decode(file_name)} | tar -x -f - -C / {extract} {member}")
    return commands, {}, {}


def plan_dump(request: DumpRequest, archive_checked: bool = True) -> list[dict[str, t.Any]]:
    """The roots a run reads, after every refusal it makes before it writes anything (check mode's answer too).
    ``archive_checked``: the archive options too (a dump leaves them to the archive core, which checks them first)."""
    if archive_checked:
        request.validate()
    elif not request.volumes and not request.paths:
        raise LifeboatError("give volumes or paths to back up")
    roots = resolve_roots(request.volumes, request.paths)
    destination = os.path.realpath(request.archive.destination)  # checked before it is made
    for item in roots:
        if _under(destination, os.path.realpath(item["path"])):
            raise LifeboatError(f"destination {request.archive.destination} is inside {item['label']}, which the job "
                                "archives; keep the archives elsewhere")
    return roots


def dump(request: DumpRequest, database_of: _stopping.DatabaseOf | None = None) -> dict[str, t.Any]:
    """Archive the request's roots through the archive core. ``database_of`` (the table's ``_sources.database_source``):
    the containers that write into the roots are stopped while they are read, and always started again."""
    roots = plan_dump(request, archive_checked=False)
    changed: list[str] = []
    warnings: list[str] = []

    def on_line(line: str) -> None:
        said = _TAR_SAYS.match(line)
        if not said:
            return
        text = line[said.end():]
        match = _CHANGED.match(text)
        if match:
            changed.append(f"/{match.group('name')}: {match.group('what').lower()}")
        elif not text.startswith("Removing leading"):
            warnings.append(text)

    index = _tar_index.TarIndex(roots)
    server: dict[str, t.Any] = {"host": socket.gethostname()}
    # Deciding which containers to stop makes its refusals (a running database's data directory) before anything is
    # written; they are stopped only once the archive core entered the stream, after it made the destination.
    stopping = containers_to_stop(request, roots, database_of) if database_of is not None else []
    guard = _stopping.stopped(stopping, _stopped_notes.notes_dir(), request.archive.job, request.archive.destination) \
        if database_of is not None else contextlib.nullcontext(None)
    with PrivateDir() as private:
        producer = Producer(tar_command(roots, request, private), "tar", on_stderr=on_line, ok_codes=(0, 1),
                            on_plain=index.feed, hash_plain=False)
        return write_archive(request.archive, SourceDump(
            engine="files",
            database=None,
            kind=KIND,
            archive_format=ARCHIVE_FORMAT,
            stream=functools.partial(_reading, guard, producer, index, server),
            tool={"name": "tar", "version": HOST.version(find_binary("tar"))},
            server=server,
            options={"volumes": request.volumes, "paths": request.paths, "include": request.include,
                     "exclude": request.exclude, "stop_containers": request.stop_containers},
            counts=functools.partial(_indexed_counts, index, roots),
            restore=functools.partial(restore_commands, roots=roots),
            more=lambda: {"files": {
                "roots": [{**item, "files": index.counts[item["label"]], "bytes": index.bytes[item["label"]]}
                          for item in roots],
                "entries": index.entries,
                "changed_while_read": changed,
                "warnings": warnings,
            }},
        ))


@contextlib.contextmanager
def _reading(guard: t.ContextManager[t.Any], producer: Producer, index: _tar_index.TarIndex,
             server: dict[str, t.Any], _destination: str) -> t.Iterator[Producer]:
    """tar's stream while the containers that write into the roots are stopped (the manifest's ``server`` says so)."""
    with guard as stopped:
        try:
            yield producer
        except BaseException:
            index.abandon()  # the stream's own failure is the one to tell
            raise
    server.update(stopped_record(stopped))  # once they run again: their downtime is known only now


def _indexed_counts(index: _tar_index.TarIndex, roots: list[dict[str, t.Any]], _stream: t.Any) -> dict[str, int]:
    """Files per root, read from the stored stream; none at all refuses the archive."""
    index.finish()
    if not any(index.counts.values()):
        shown = ", ".join(item["label"] for item in roots)
        raise LifeboatError(f"nothing to back up: {shown} hold no files (after include and exclude); "
                            "the archive would be empty, so it was not kept")
    return index.counts


def stopped_record(stopped: list[str] | None) -> dict[str, t.Any]:
    """What the manifest's ``server`` says of the containers stopped while read: their names and the downtime."""
    if not stopped:
        return {}
    return {"stopped_containers": list(stopped), "downtime_seconds": getattr(stopped, "downtime_seconds", None)}


def containers_to_stop(request: DumpRequest, roots: list[dict[str, t.Any]],
                       database_of: _stopping.DatabaseOf) -> list[dict[str, str]]:
    """The containers a run stops while it reads ``roots`` ({id, name}, in stop order), after the refusal of a running
    database's data directory (``database_of``: the table's ``_sources.database_source``): decided here for the run
    and its check mode alike."""
    volumes = [item["name"] for item in roots if item["kind"] == "volume"]
    paths = [item["path"] for item in roots if item["kind"] == "path"]
    if not volumes and not request.stop_containers and not _docker_running():
        return []  # host paths on a host without Docker: no container can write there
    containers = _stopping.containers_to_stop(request.archive.job, request.stop_containers, volumes, paths)
    _stopping.refuse_live_data_dirs(volumes, paths, {container["id"] for container in containers}, database_of)
    return containers


# Restores -------------------------------------------------------------------------------------------------------


@dataclass
class RestoreRequest:
    archive_path: str
    decryption: Decryption = field(default_factory=Decryption)
    volume_map: dict[str, str] = field(default_factory=dict)  # a volume of the archive -> the volume to restore into
    path_map: dict[str, str] = field(default_factory=dict)  # a path of the archive -> the path to restore to
    only: list[str] = field(default_factory=list)  # volumes and paths of the archive to restore (all when empty)
    overwrite: bool = False
    safety_dump_dir: str | None = None  # where what is overwritten is archived first (the archive's own directory)
    trust: Trust = field(default_factory=host_trust)  # whose signature the archive's manifest must carry


@dataclass
class Target:
    item: dict[str, t.Any]  # the archive's root
    kind: str  # volume or path
    name: str  # the volume's name or the path
    path: str  # where on this host
    exists: bool
    holds: bool  # holds anything that a restore replaces

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


def _users(api: t.Any, kind: str, name: str, path: str) -> list[str]:
    """Running containers that mount this volume, or a bind mount at, over or under this path."""
    names = []
    for summary in api.containers(filters={"status": "running"}):
        for mount in summary.get("Mounts") or []:
            if (kind == "volume" and mount.get("Type") == "volume" and mount.get("Name") == name) or (
                    mount.get("Type") == "bind" and (_under(mount.get("Source", ""), path)
                                                     or _under(path, mount.get("Source", "")))):
                names.append(summary["Names"][0].lstrip("/"))
                break
    return names


def _holds(path: str) -> bool:
    if not os.path.lexists(path):
        return False
    return not os.path.isdir(path) or os.path.islink(path) or bool(os.listdir(path))


def plan_restore(request: RestoreRequest, manifest: dict[str, t.Any]) -> list[Target]:
    """Where each root goes, checked before anything is written: one-line errors for what cannot be done."""
    if manifest.get("engine") != "files":
        raise LifeboatError(f"{os.path.basename(request.archive_path)} is a {manifest.get('engine')} archive, not a "
                            "files archive; restore it with that engine's restore module")
    roots = manifest["files"]["roots"]
    known = {item["name"] for item in roots}
    unknown = sorted((set(request.only) | set(request.volume_map) | set(request.path_map)) - known)
    if unknown:
        raise LifeboatError(f"the archive holds no {', '.join(unknown)}; it holds {', '.join(sorted(known))}")
    api = None
    targets = []
    for item in roots:
        if request.only and item["name"] not in request.only:
            continue
        if item["kind"] == "volume":
            api = api or docker_api()
            name = request.volume_map.get(item["name"], item["name"])
            docker = docker_sdk()
            try:
                path, exists = os.path.normpath(api.inspect_volume(name)["Mountpoint"]), True
            except docker.errors.NotFound:
                path, exists = "", False
            kind = "volume"
        else:
            name = request.path_map.get(item["name"], item["name"])
            if not os.path.isabs(name):
                raise LifeboatError(f"path_map target {name!r} must be an absolute path")
            path, exists, kind = os.path.normpath(name), os.path.lexists(name), "path"
            if path == "/" or any(_under(path, tree) for tree in REFUSED_TREES):
                raise LifeboatError(f"cannot restore into {path}: give a folder of the app")
        target = Target(item, kind, name, path, exists, bool(path) and _holds(path))
        if target.exists:
            api = api or (docker_api() if kind == "volume" or _docker_running() else None)
            users = _users(api, kind, name, path) if api is not None else []
            if users:
                raise LifeboatError(f"{target.label} is in use by running container {', '.join(users)}; stop it "
                                    "before restoring into it")
        if target.holds and not request.overwrite:
            raise LifeboatError(f"{target.label} is not empty; restore into a new volume or folder (volume_map, "
                                "path_map), or set overwrite: true to replace it (what it holds is archived first)")
        targets.append(target)
    return targets


def _docker_running() -> bool:
    return os.path.exists(engine_url().replace("unix://", ""))


def restore(request: RestoreRequest) -> dict[str, t.Any]:
    manifest = load_trusted(request.archive_path, request.trust)
    targets = plan_restore(request, manifest)
    safety = None
    holding = [target for target in targets if target.holds]
    if holding:
        safety = dump(DumpRequest(
            archive=safety_dump_options(
                ArchiveOptions(destination=request.safety_dump_dir or os.path.dirname(request.archive_path), job="-"),
                manifest, request.decryption, f"{manifest['job']}-before-restore"),
            volumes=[target.name for target in holding if target.kind == "volume"],
            paths=[target.path for target in holding if target.kind == "path"]))["archive"]
    restored = {}
    for target in targets:
        try:
            restored[target.label] = _restore_one(request, manifest, target)
        except LifeboatError as exc:
            if not restored:
                raise
            # Each root is swapped in whole or not at all, but those before this one hold the archive's files now.
            held = f" (what they held is in {safety})" if safety else ""
            raise LifeboatError(f"{exc}; {', '.join(restored)} restored already{held}") from exc
    return {"restored": restored, "safety_archive": safety, "targets": [target.label for target in targets]}


def _restore_one(request: RestoreRequest, manifest: dict[str, t.Any], target: Target) -> int:
    item = target.item
    if target.kind == "volume" and not target.exists:
        api = docker_api()
        target.path = os.path.normpath(api.create_volume(target.name)["Mountpoint"])
        try:
            return _restore_one(request, manifest, dataclasses.replace(target, exists=True))
        except BaseException:
            api.remove_volume(target.name)  # made for this restore: a failure leaves no new empty volume behind
            raise
    parent = os.path.dirname(target.path)
    os.makedirs(parent, exist_ok=True)
    with PrivateDir(parent) as side:
        landed = os.path.join(side.path, os.path.basename(item["member"]))
        # One read per root, checked whole (stored and plain sha256) before the side directory takes the target's place.
        read_for_restore(request.archive_path, manifest, decryption=request.decryption,
                         consumer_argv=[find_binary("tar"), "-x", "-f", "-", "-C", side.path,
                                        f"--strip-components={_strip(item)}", *TAR_EXTRACT, "--", item["member"]],
                         consumer_name="tar")
        expected = manifest["files"]["entries"][item["label"]]
        found = _tar_index.walk(landed)
        owners = os.geteuid() == 0
        if _tar_index.root_sums({"x": found}, owners) != _tar_index.root_sums({"x": expected}, owners):
            differences = _differences(expected, found)
            raise LifeboatError(f"restored {target.label} differs from the archive ({first_few(differences)}); "
                                f"{target.label} was left as it was")
        try:
            _swap_in(landed, target)
        except OSError as exc:
            raise LifeboatError(f"cannot put the restored {target.label} in place: {exc.strerror}") from None
    return _tar_index.counted(found)


def _swap_in(landed: str, target: Target) -> None:
    """Put the restored tree under the target's name. Swapped in one step where the system can: a kill between two
    renames would leave the name missing (an app started then sees an empty folder) and what it held in the hidden
    side directory, which the next private directory made beside it sweeps away. What the target held ends up in
    the side directory, removed with it."""
    if not target.exists:
        os.rename(landed, target.path)
        return
    if exchange_paths(landed, target.path):
        return
    aside = os.path.join(os.path.dirname(landed), "previous")
    os.rename(target.path, aside)
    try:
        os.rename(landed, target.path)
    except OSError:
        os.rename(aside, target.path)
        raise


def _differences(expected: list[dict[str, t.Any]], found: list[dict[str, t.Any]]) -> list[str]:
    want = {e["path"]: _tar_index.entry_row(e, True) for e in expected}
    have = {e["path"]: _tar_index.entry_row(e, True) for e in found}
    return [f"{path or '.'}: {'missing' if path not in have else 'unexpected' if path not in want else 'differs'}"
            for path in sorted(set(want) | set(have)) if want.get(path) != have.get(path)]


# Verify's restore test: a scratch directory stands for the scratch database ----------------------------------


class ScratchPlace:
    """Where a restore test unpacks a files archive: a private directory beside the archive, made on first use."""

    def __init__(self, parent: str | None = None) -> None:
        self.parent = parent
        self._private: PrivateDir | None = None

    @property
    def path(self) -> str:
        if self._private is None:
            self._private = PrivateDir(self.parent)
        return self._private.path

    def names(self) -> set[str]:
        return set(os.listdir(self.path))

    def drop(self, name: str) -> None:
        shutil.rmtree(os.path.join(self.path, name), ignore_errors=True)
        if self._private is not None and not os.listdir(self._private.path):
            self._private.cleanup()
            self._private = None


def restore_scratch(place: ScratchPlace, archive: str, manifest: dict[str, t.Any], scratch: str,
                    decryption: Decryption, tap: dict[str, t.Any] | None = None) -> None:
    directory = os.path.join(place.path, scratch)
    os.mkdir(directory, 0o700)
    read_for_restore(archive, manifest, decryption=decryption,
                     consumer_argv=[find_binary("tar"), "-x", "-f", "-", "-C", directory, *TAR_EXTRACT],
                     consumer_name="tar", **(tap or {}))


def scratch_contents(place: ScratchPlace, scratch: str, manifest: dict[str, t.Any], reader: _tar_index.TarIndex
                     ) -> tuple[dict[str, int], dict[str, str], dict[str, int], dict[str, str]]:
    owners = os.geteuid() == 0
    found = {item["label"]: _tar_index.walk(os.path.join(place.path, scratch, item["member"]))
             for item in manifest["files"]["roots"]}
    return (reader.counts, _tar_index.root_sums(reader.entries, owners),
            {label: _tar_index.counted(rows) for label, rows in found.items()}, _tar_index.root_sums(found, owners))
