# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measure (not a benchmark of time): the trip a dump request takes through the library, per engine.

Run against the test bed (``make testbed; source /tmp/lifeboat-testbed/env.sh``) with its venv:
    "$(bash scripts/testbed/venv.sh)/bin/python" bench/dump_trip.py [--engine ENGINE]... [--path] [--json F]

Each module (postgresql_dump, mongodb_dump, files_backup) runs in this process, as Ansible runs it on a host, with
``sys.setprofile`` watching the calls and returns of the main thread from the moment its home function (the library
function named after the module) is entered until it returns. Two views of the same run:

- **the request's trip**: the frames that carry the request, those whose arguments (``self`` included) or closure
  variables are the dump request, one of the objects it holds (its archive options, its connection) or an object
  that holds the request itself, plus the home function where the trip starts. Other library frames (a helper that
  finds a binary, quotes a name, writes a file) are passed over: they do a piece of work and hand back, the request
  never goes there. This is the view of the goal (issue 31): the PostgreSQL dump's request enters at most 6 files
  and comes back to none of them more than once.
- **every library frame**: any frame of a file under plugins/module_utils, for scale.

A *stay* is a stretch of the trip in one file; a file's *returns* are its stays after the first (the trip left it
and came back, by a call or by a return up the stack).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import sys
import tempfile
import typing as t
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The library as imported: ansible_collections/lifeboat/ops/plugins/module_utils (a link to the checkout).
LIBRARY = os.sep + os.path.join("lifeboat", "ops", "plugins", "module_utils") + os.sep
MODULES = {"postgresql": "postgresql_dump", "mongodb": "mongodb_dump", "files": "files_backup"}
GOAL_FILES, GOAL_RETURNS = 6, 1  # the PostgreSQL dump's request: files entered, returns to any one file


def _importable() -> None:
    """The checkout as ansible_collections.lifeboat.ops (as tests/conftest.py makes it), wherever it was cloned."""
    root = tempfile.mkdtemp(prefix="lifeboat-trip-collections-")
    os.makedirs(os.path.join(root, "ansible_collections", "lifeboat"))
    os.symlink(REPO, os.path.join(root, "ansible_collections", "lifeboat", "ops"))
    sys.path.insert(0, root)
    os.environ.setdefault("LIFEBOAT_SIGNING_KEY_FILE", os.path.join(tempfile.mkdtemp(prefix="lifeboat-trip-key-"),
                                                                    "signing_key"))


@dataclasses.dataclass
class Leg:
    """One view of the trip: the files in the order the trip stays in them."""

    stays: list[str] = dataclasses.field(default_factory=list)

    def enter(self, path: str) -> None:
        if not self.stays or self.stays[-1] != path:
            self.stays.append(path)

    def summary(self) -> dict[str, t.Any]:
        names = [os.path.basename(path) for path in self.stays]
        returns = {name: names.count(name) - 1 for name in dict.fromkeys(names)}
        return {"files": len(returns), "stays": len(names), "returns": sum(returns.values()),
                "most_returns": max(returns.values(), default=0), "returns_per_file": returns, "path": names}


class Tracer:
    """Follows the main thread from the home function's call to its return (see the module docstring)."""

    def __init__(self, home: str) -> None:
        self.home = home
        self.trip, self.every = Leg(), Leg()
        self.carried: set[int] = set()  # ids of the request and of what it holds
        self._trip_stack: list[tuple[t.Any, str]] = []  # (frame, file) of the trip's frames, innermost last
        self._every_stack: list[tuple[t.Any, str]] = []
        self._home_frame: t.Any = None
        self.done = False

    def __call__(self, frame: t.Any, event: str, _arg: t.Any) -> None:
        if self.done or event not in ("call", "return"):
            return
        path = frame.f_code.co_filename
        if LIBRARY not in path:
            return
        if self._home_frame is None:
            if event == "call" and frame.f_code.co_name == self.home:
                self._home_frame = frame
                self._push(frame, path, trip=True)
            return
        if event == "call":
            self._adopt(frame)
            self._push(frame, path, trip=self._carries(frame))
            return
        self._pop(frame)
        if frame is self._home_frame:
            self.done = True

    def _arguments(self, frame: t.Any) -> list[t.Any]:
        """The frame's arguments and closure variables (what it was handed, one level into tuples and dicts)."""
        code = frame.f_code
        count = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)
        names = [*code.co_varnames[:count], *code.co_freevars]
        values = [frame.f_locals.get(name) for name in names]
        return [item for value in values for item in (value.values() if isinstance(value, dict) else
                                                      value if isinstance(value, tuple) else [value])]

    def _adopt(self, frame: t.Any) -> None:
        """The first DumpRequest the trip hands on is the request: it and the objects it holds are followed."""
        if self.carried:
            return
        for value in self._arguments(frame):
            if type(value).__name__ == "DumpRequest" and dataclasses.is_dataclass(value):
                parts = [getattr(value, field.name) for field in dataclasses.fields(value)]
                self.carried = {id(value)} | {id(part) for part in parts if dataclasses.is_dataclass(part)}
                return

    def _carries(self, frame: t.Any) -> bool:
        for value in self._arguments(frame):
            if id(value) in self.carried:
                return True
            held = getattr(value, "__dict__", None)  # a wrapper of the request carries it too
            if isinstance(held, dict) and any(id(item) in self.carried for item in held.values()):
                return True
        return False

    def _push(self, frame: t.Any, path: str, trip: bool) -> None:
        self._every_stack.append((frame, path))
        self.every.enter(path)
        if trip:
            self._trip_stack.append((frame, path))
            self.trip.enter(path)

    def _pop(self, frame: t.Any) -> None:
        for stack, leg in ((self._every_stack, self.every), (self._trip_stack, self.trip)):
            if stack and stack[-1][0] is frame:
                stack.pop()
                if stack:
                    leg.enter(stack[-1][1])


def _traced(module: str, args: dict[str, t.Any]) -> tuple[dict[str, t.Any], Tracer]:
    """Run the module's main() in this process, as Ansible would on a host, under the tracer."""
    import importlib  # pylint: disable=import-outside-toplevel

    from ansible.module_utils import basic  # pylint: disable=import-outside-toplevel

    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()  # pylint: disable=protected-access
    basic._ANSIBLE_PROFILE = "legacy"  # pylint: disable=protected-access  # what a module run from a file gets
    main = importlib.import_module(f"ansible_collections.lifeboat.ops.plugins.modules.{module}").main
    tracer = Tracer(module)
    out = io.StringIO()
    sys.setprofile(tracer)
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main()
    finally:
        sys.setprofile(None)
    result = json.loads(out.getvalue())
    if result.get("failed"):
        raise SystemExit(f"{module} failed: {result.get('msg')}")
    return result, tracer


def _archive_args(destination: str) -> dict[str, t.Any]:
    return {"destination": destination, "job": "trip"}


def _postgres(destination: str) -> tuple[dict[str, t.Any], t.Callable[[], None]]:
    import psycopg  # pylint: disable=import-outside-toplevel

    with open(os.environ["LIFEBOAT_PG_PASSWORD_FILE"], encoding="utf-8") as handle:
        password = handle.read().strip()
    login = {"host": os.environ.get("LIFEBOAT_PG_HOST", "127.0.0.1"), "port": int(os.environ["LIFEBOAT_PG_PORT"]),
             "user": os.environ["LIFEBOAT_PG_USER"], "password": password}
    database = f"lifeboat_trip_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **login) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    with psycopg.connect(dbname=database, autocommit=True, **login) as conn:
        conn.execute("CREATE TABLE notes AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 1000) g")

    def drop() -> None:
        with psycopg.connect(dbname="postgres", autocommit=True, **login) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")

    return {"login_host": login["host"], "login_port": login["port"], "login_user": login["user"],
            "login_password_file": os.environ["LIFEBOAT_PG_PASSWORD_FILE"], "database": database,
            **_archive_args(destination)}, drop


def _mongo(destination: str) -> tuple[dict[str, t.Any], t.Callable[[], None]]:
    import pymongo  # pylint: disable=import-outside-toplevel

    with open(os.environ["LIFEBOAT_MONGO_PASSWORD_FILE"], encoding="utf-8") as handle:
        password = handle.read().strip()
    host, port, user = os.environ.get("LIFEBOAT_MONGO_HOST", "127.0.0.1"), int(os.environ["LIFEBOAT_MONGO_PORT"]), \
        os.environ["LIFEBOAT_MONGO_USER"]
    client: t.Any = pymongo.MongoClient(host, port, username=user, password=password, authSource="admin")
    database = f"lifeboat_trip_{uuid.uuid4().hex[:8]}"
    client[database]["notes"].insert_many([{"n": n, "body": f"note {n}"} for n in range(1000)])

    def drop() -> None:
        client.drop_database(database)
        client.close()

    return {"login_host": host, "login_port": port, "login_user": user,
            "login_password_file": os.environ["LIFEBOAT_MONGO_PASSWORD_FILE"], "database": database,
            **_archive_args(destination)}, drop


def _files(destination: str) -> tuple[dict[str, t.Any], t.Callable[[], None]]:
    tree = tempfile.mkdtemp(prefix="lifeboat-trip-files-")
    for number in range(20):
        with open(os.path.join(tree, f"file-{number}.txt"), "w", encoding="utf-8") as handle:
            handle.write(f"file {number}\n" * 100)
    return {"paths": [tree], **_archive_args(destination)}, lambda: None


SETUPS = {"postgresql": _postgres, "mongodb": _mongo, "files": _files}


def measure(engine: str) -> dict[str, t.Any]:
    with tempfile.TemporaryDirectory(prefix="lifeboat-trip-dest-") as destination:
        args, clean_up = SETUPS[engine](os.path.join(destination, "archives"))
        try:
            _traced(MODULES[engine], args)  # the first run makes the signing key
            tracer = _traced(MODULES[engine], args)[1]  # the second run: nothing first-time (the signing key) in it
        finally:
            clean_up()
    return {"engine": engine, "module": MODULES[engine], "trip": tracer.trip.summary(), "every": tracer.every.summary()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=sorted(SETUPS), action="append", help="(repeatable; default: all)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--path", action="store_true", help="print the files of the request's trip in order")
    args = parser.parse_args()
    _importable()
    figures = [measure(engine) for engine in args.engine or list(SETUPS)]
    print(f"{'engine':<11} {'request trip: files stays returns most':<40} every library frame: files stays returns")
    for item in figures:
        trip, every = item["trip"], item["every"]
        print(f"{item['engine']:<11} {trip['files']:>20} {trip['stays']:>5} {trip['returns']:>7} {trip['most_returns']:>4}"
              f"       {every['files']:>24} {every['stays']:>5} {every['returns']:>7}")
        if args.path:
            print("    " + " > ".join(trip["path"]))
    pg = next((item["trip"] for item in figures if item["engine"] == "postgresql"), None)
    if pg is not None:
        met = pg["files"] <= GOAL_FILES and pg["most_returns"] <= GOAL_RETURNS
        print(f"goal (PostgreSQL request: <= {GOAL_FILES} files, <= {GOAL_RETURNS} return to any file): "
              f"{'PASS' if met else 'MISS'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
