# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compose apps as their users run them, through the real playbooks (ansible-runner, as AWX runs them): three
seed-shaped apps on real Docker Compose v2, each discovered, backed up, verified at restore level, destroyed with
``docker compose down -v``, brought up empty and restored by the backup job's name (``restore_items: [{job:
PROJECT}]``), then compared field by field: rows, documents, indexes, and every file's type, mode, owner, mtime,
link target and hard-link identity.

- the journal: PostgreSQL 17 and a web container with a media volume;
- the recipe app: PostgreSQL, FerretDB (MongoDB wire) and an uploads volume of symlinks, hard links, unicode names,
  empty folders and odd modes, its archives encrypted with age;
- the dashboard: FerretDB on a named volume and a config file bind-mounted into the database container; its config
  changed after the backup, so the restore is refused without overwrite, then replaces it, stopping the database.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
import typing as t
from dataclasses import dataclass, field

import pytest
from bson import json_util

from containers import MONGO_PASSWORD, PG_PASSWORD, Box, ContainerBed  # pylint: disable=import-error
from testbed import RUN_ID, STOPPED_DIR, run_with_runner, start_module  # pylint: disable=import-error

IMAGES_NEEDED = ("PG17_IMAGE", "FERRETDB_IMAGE", "TRIXIE_BASE_IMAGE")
# A web container that only holds its volumes: `init` passes docker stop's SIGTERM to sleep; its healthcheck lets the
# restore wait for "healthy".
WEB = """    image: {base}
    init: true
    command: [sleep, infinity]
    healthcheck: {{test: [CMD, test, -d, /proc/1], interval: 1s, timeout: 2s, retries: 3}}
"""


def project_name(app: str) -> str:
    return f"lbt-cj-{app}-{RUN_ID}".lower()


# Fingerprints -----------------------------------------------------------------------------------------------------


def tree(path: str) -> dict[str, t.Any]:
    """Every entry under ``path`` (itself as "."): type, mode, owner, mtime, size, sha256, link target; and the groups
    of paths that are one file (hard links)."""
    entries: dict[str, tuple[t.Any, ...]] = {}
    inodes: dict[tuple[int, int], list[str]] = {}

    def add(full: str, relative: str) -> None:
        info = os.lstat(full)
        kind = stat.S_IFMT(info.st_mode)
        row: tuple[t.Any, ...] = (kind, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, info.st_mtime_ns)
        if stat.S_ISLNK(info.st_mode):
            row += (os.readlink(full),)
        elif stat.S_ISREG(info.st_mode):
            with open(full, "rb") as handle:
                row += (info.st_size, hashlib.sha256(handle.read()).hexdigest())
            if info.st_nlink > 1:
                inodes.setdefault((info.st_dev, info.st_ino), []).append(relative)
        entries[relative] = row

    add(path, ".")
    if os.path.isdir(path) and not os.path.islink(path):
        for directory, dirs, files in os.walk(path):
            for name in dirs + files:
                full = os.path.join(directory, name)
                add(full, os.path.relpath(full, path))
    return {"entries": entries, "hard_links": sorted(sorted(group) for group in inodes.values() if len(group) > 1)}


def pg_fingerprint(box: Box, database: str) -> dict[str, t.Any]:
    with box.connect_pg(database) as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()]
        rows = {table: conn.execute(
            f'SELECT count(*), md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) FROM "{table}" t'
        ).fetchone() for table in tables}
        indexes = conn.execute("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                               "ORDER BY 1, 2").fetchall()
        sequences = conn.execute("SELECT sequencename, last_value FROM pg_sequences ORDER BY 1").fetchall()
    return {"rows": rows, "indexes": indexes, "sequences": sequences}


def mongo_fingerprint(box: Box) -> dict[str, t.Any]:
    client = box.mongo_client()
    try:
        found: dict[str, t.Any] = {}
        for database in sorted(set(client.list_database_names()) - {"admin", "config", "local"}):
            for name in sorted(client[database].list_collection_names()):
                collection = client[database][name]
                found[f"{database}.{name}"] = {
                    "documents": [json_util.dumps(doc, sort_keys=True) for doc in collection.find().sort("_id", 1)],
                    "indexes": sorted(json.dumps({key: value for key, value in spec.items() if key != "v"},
                                                 sort_keys=True, default=str)
                                      for spec in collection.index_information().values()),
                }
        return found
    finally:
        client.close()


# The apps -----------------------------------------------------------------------------------------------------------


@dataclass
class App:
    """One seed-shaped compose app: its folder, its project, how to seed it and how to read it back."""

    name: str
    compose: str
    bed: ContainerBed
    folder: str
    environment: dict[str, str] = field(default_factory=dict)
    encrypted: bool = False

    @property
    def project(self) -> str:
        return project_name(self.name)

    @property
    def compose_file(self) -> str:
        return os.path.join(self.folder, "docker-compose.yml")

    def up(self) -> dict[str, t.Any]:
        return self.bed.compose_up(self.project, self.compose_file, environment=self.environment)

    def run(self, *args: str, check: bool = True) -> t.Any:
        return self.bed.compose(self.project, self.compose_file, *args, environment=self.environment, check=check)

    def volume_path(self, key: str) -> str:
        return str(self.bed.client.api.inspect_volume(f"{self.project}_{key}")["Mountpoint"])


def pg_service(database: str, user: str) -> str:
    return f"""    image: {{pg}}
    environment: [POSTGRES_USER={user}, POSTGRES_DB={database}, POSTGRES_PASSWORD]
    volumes: [db-data:/var/lib/postgresql/data]
"""


def ferret_service(user: str, extra_volumes: str = "") -> str:
    return f"""    image: {{ferret}}
    environment: [MONGO_INITDB_ROOT_USERNAME={user}, MONGO_INITDB_ROOT_PASSWORD]
    volumes: [mongo-data:/data/db{extra_volumes}]
"""


def seed_journal(app: App, services: dict[str, t.Any]) -> dict[str, t.Any]:
    db = app.bed.pg_box(services["db"], "journal_owner", PG_PASSWORD, "journal")
    with db.connect_pg() as conn:
        conn.execute("CREATE TABLE authors (id serial PRIMARY KEY, name text UNIQUE NOT NULL)")
        conn.execute("CREATE TABLE entries (id serial PRIMARY KEY, author int REFERENCES authors, "
                     "written_at timestamptz NOT NULL, title text, body text)")
        conn.execute("CREATE INDEX entries_written ON entries (written_at DESC)")
        conn.execute("INSERT INTO authors (name) VALUES ('Ada'), ('Grace'), ('Émilie')")
        conn.execute("INSERT INTO entries (author, written_at, title, body) SELECT 1 + n % 3, "
                     "'2026-01-01'::timestamptz + n * interval '7 hours', 'day ' || n, repeat('ü', n % 50) "
                     "FROM generate_series(1, 300) n")
    media = app.volume_path("media")
    os.makedirs(os.path.join(media, "2026", "01"))
    with open(os.path.join(media, "2026", "01", "cover.jpg"), "wb") as handle:
        handle.write(bytes(range(256)) * 40)
    os.chown(os.path.join(media, "2026"), 33, 33)
    return {"db": db}


def seed_recipes(app: App, services: dict[str, t.Any]) -> dict[str, t.Any]:
    db = app.bed.pg_box(services["db"], "recipes_owner", PG_PASSWORD, "recipes")
    mongo = app.bed.ferret_box(services["mongo"], "recipes_root", MONGO_PASSWORD)
    with db.connect_pg() as conn:
        conn.execute("CREATE TABLE recipes (id int PRIMARY KEY, title text NOT NULL, servings int)")
        conn.execute("CREATE INDEX recipes_title ON recipes (lower(title))")
        conn.execute("INSERT INTO recipes SELECT n, 'recette ' || n, n % 8 FROM generate_series(1, 120) n")
    client = mongo.mongo_client()
    try:
        client.recipes.ratings.insert_many([{"recipe": n % 120, "stars": n % 5, "by": f"user{n % 17}"}
                                            for n in range(400)])
        client.recipes.ratings.create_index([("recipe", 1), ("stars", -1)], name="recipe_stars")
        client.recipes.comments.insert_many([{"recipe": n, "text": "très bon 🍲" * (n % 4)} for n in range(60)])
    finally:
        client.close()
    uploads = app.volume_path("uploads")
    photos = os.path.join(uploads, "photos")
    os.makedirs(os.path.join(photos, "hard"))
    for name, size in (("crème brûlée.jpg", 3000), ("日本語のレシピ.txt", 700), ("space and\ttab.png", 10)):
        with open(os.path.join(photos, name), "wb") as handle:
            handle.write(os.urandom(size))
    os.symlink("crème brûlée.jpg", os.path.join(photos, "latest.jpg"))
    os.symlink("../nowhere/gone.jpg", os.path.join(photos, "dangling.jpg"))
    os.link(os.path.join(photos, "crème brûlée.jpg"), os.path.join(photos, "hard", "same-dessert.jpg"))
    os.makedirs(os.path.join(uploads, "empty", "deeper", "still-empty"))
    os.makedirs(os.path.join(uploads, "tmp"))
    os.chmod(os.path.join(uploads, "tmp"), 0o1777)
    os.chmod(os.path.join(photos, "日本語のレシピ.txt"), 0o400)
    os.chmod(os.path.join(photos, "hard"), 0o2750)
    os.chown(os.path.join(photos, "space and\ttab.png"), 1000, 1001)
    os.utime(os.path.join(photos, "crème brûlée.jpg"), ns=(1_700_000_000_123_456_789, 1_600_000_000_987_654_321))
    os.utime(os.path.join(uploads, "empty"), ns=(1_500_000_000_000_000_000, 1_500_000_000_500_000_000))
    return {"db": db, "mongo": mongo}


def seed_dashboard(app: App, services: dict[str, t.Any]) -> dict[str, t.Any]:
    mongo = app.bed.ferret_box(services["mongo"], "dash_root", MONGO_PASSWORD)
    client = mongo.mongo_client()
    try:
        client.dashboard.widgets.insert_many([{"_id": f"w{n}", "kind": ["graph", "gauge", "table"][n % 3],
                                               "position": {"x": n % 4, "y": n // 4}} for n in range(24)])
        client.dashboard.widgets.create_index([("kind", 1), ("position.y", 1)], name="kind_row")
        client.dashboard.events.insert_many([{"at": n, "value": n * 0.5} for n in range(300)])
    finally:
        client.close()
    return {"mongo": mongo}


APPS: dict[str, dict[str, t.Any]] = {
    "journal": {
        "compose": "services:\n  db:\n" + pg_service("journal", "journal_owner") + "  web:\n" + WEB
                   + "    depends_on: [db]\n    volumes: [media:/srv/media]\n"
                   + "volumes:\n  db-data:\n  media:\n",
        "seed": seed_journal, "volumes": ["media"], "paths": [], "encrypted": False,
    },
    "recipes": {
        "compose": "services:\n  db:\n" + pg_service("recipes", "recipes_owner") + "  mongo:\n"
                   + ferret_service("recipes_root") + "  web:\n" + WEB
                   + "    depends_on: [db, mongo]\n    volumes: [uploads:/srv/uploads]\n"
                   + "volumes:\n  db-data:\n  mongo-data:\n  uploads:\n",
        "seed": seed_recipes, "volumes": ["uploads"], "paths": [], "encrypted": True,
    },
    "dashboard": {
        "compose": "services:\n  mongo:\n" + ferret_service("dash_root", ", ./dashboard.yml:/etc/dashboard.yml:ro")
                   + "  web:\n" + WEB + "    depends_on: [mongo]\n"
                   + "volumes:\n  mongo-data:\n",
        "seed": seed_dashboard, "volumes": [], "paths": ["dashboard.yml"], "encrypted": False,
    },
}


def fingerprint(app: App, boxes: dict[str, Box]) -> dict[str, t.Any]:
    spec = APPS[app.name]
    found: dict[str, t.Any] = {}
    if "db" in boxes:
        found["db"] = pg_fingerprint(boxes["db"], str(boxes["db"].database))
    if "mongo" in boxes:
        found["mongo"] = mongo_fingerprint(boxes["mongo"])
    for key in spec["volumes"]:
        found[f"volume:{key}"] = tree(app.volume_path(key))
    for path in spec["paths"]:
        found[f"path:{path}"] = tree(os.path.join(app.folder, path))
    return found


def boxes_of(app: App, services: dict[str, t.Any]) -> dict[str, Box]:
    """The app's servers once they answer (after a fresh `up` too)."""
    boxes = {}
    if "db" in services:
        user, database = {"journal": ("journal_owner", "journal"), "recipes": ("recipes_owner", "recipes")}[app.name]
        boxes["db"] = app.bed.pg_box(services["db"], user, PG_PASSWORD, database)
    if "mongo" in services:
        user = {"recipes": "recipes_root", "dashboard": "dash_root"}[app.name]
        boxes["mongo"] = app.bed.ferret_box(services["mongo"], user, MONGO_PASSWORD)
    return boxes


@pytest.fixture(params=sorted(APPS))
def app(request, container_bed, tmp_path) -> t.Iterator[App]:
    """The app's folder (compose file, .env, its bind-mounted files) and its project, up and seeded; `down -v`
    afterwards."""
    name = request.param
    spec = APPS[name]
    images = container_bed.images
    folder = tmp_path / f"{name}-app"
    folder.mkdir()
    (folder / "docker-compose.yml").write_text(spec["compose"].format(
        pg=images["PG17_IMAGE"], ferret=images["FERRETDB_IMAGE"], base=images["TRIXIE_BASE_IMAGE"]))
    (folder / ".env").write_text(f"APP_SITE=https://{name}.example.org\n")
    if name == "dashboard":
        (folder / "dashboard.yml").write_text("refresh: 30s\npanels: [cpu, disk, glucose]\n")
        os.chmod(folder / "dashboard.yml", 0o640)
    built = App(name, spec["compose"], container_bed, str(folder),
                {"POSTGRES_PASSWORD": PG_PASSWORD, "MONGO_INITDB_ROOT_PASSWORD": MONGO_PASSWORD}, spec["encrypted"])
    try:
        services = built.up()
        spec["seed"](built, services)
        yield built
    finally:
        built.run("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)


# The playbooks through ansible-runner -------------------------------------------------------------------------------


def journey_vars(app: App, root: t.Any, age_key: dict[str, str]) -> dict[str, t.Any]:
    host_vars: dict[str, t.Any] = {"backup_root": str(root), "backup_jobs": [{"name": app.project,
                                                                              "compose_project": app.project}]}
    if app.encrypted:
        host_vars.update({"backup_encryption_recipients": [age_key["recipient"]],
                          "backup_age_identity_files": [age_key["identity"]]})
    return host_vars


def test_a_compose_app_backed_up_destroyed_and_restored_by_its_job_name_comes_back_whole(app, age_key, tmp_path):
    before_services = app.bed.compose_services(app.project)
    before = fingerprint(app, boxes_of(app, before_services))
    root = tmp_path / "backups"
    host_vars = journey_vars(app, root, age_key)

    # Backup: the playbook discovers the project's parts (docker_app_info) and backs up each.
    status, rc, artifact, stdout = run_with_runner(
        tmp_path, "backup", {**host_vars, "backup_verify_level": "structure"})
    assert (status, rc) == ("successful", 0), stdout[-4000:]
    parts = sorted(os.listdir(root))
    expected_parts = {"journal": ["db", "files"], "recipes": ["db", "files", "mongo"],
                      "dashboard": ["files", "mongo"]}[app.name]
    assert parts == [f"{app.project}-{part}" for part in expected_parts], parts
    # Verify at restore level: every part restored into a scratch place and counted.
    status, rc, artifact, stdout = run_with_runner(tmp_path, "verify", {**host_vars, "backup_verify_level": "restore"})
    assert (status, rc) == ("successful", 0), stdout[-4000:]
    assert f'"msg": "{len(parts)} archives proven, 0 failed"' in stdout, stdout[-4000:]

    # The app is destroyed with its data, and brought up empty.
    app.run("down", "--volumes", "--timeout", "5")
    services = app.up()
    empty = boxes_of(app, services)
    if app.name == "dashboard":  # the config on the host changed since the backup: live data to overwrite
        with open(os.path.join(app.folder, "dashboard.yml"), "a", encoding="utf-8") as handle:
            handle.write("panels: [broken]\n")
        status, rc, artifact, stdout = run_with_runner(tmp_path, "restore", {**host_vars, "restore_items": [
            {"job": app.project}]})
        assert (status, rc) == ("failed", 2), stdout[-4000:]
        (line,) = artifact["lifeboat_restore_outcome"]["localhost"]["failed"]
        assert line == (f"{app.project} -> its containers: part {app.project}-files: path:"
                        f"{app.folder}/dashboard.yml holds other data than the archive; set overwrite: true in the "
                        "restore item to replace it (what it holds is archived first), or restore the part on its "
                        "own with volume_map/path_map into a new place"), line
        assert all(container.status == "running" for container in app.bed.compose_services(app.project).values())

    # Restore by the job's name, as the inventory names it.
    item = {"job": app.project, **({"overwrite": True} if app.name == "dashboard" else {})}
    status, rc, artifact, stdout = run_with_runner(tmp_path, "restore", {**host_vars, "restore_items": [item]})
    assert (status, rc) == ("successful", 0), stdout[-4000:]
    outcome = artifact["lifeboat_restore_outcome"]["localhost"]
    assert outcome["status"] == "ok" and outcome["failed"] == [], outcome
    (restored,) = outcome["restored"]
    assert restored["job"] == app.project
    assert [part["part"] for part in restored["parts"]] == [f"{app.project}-{part}" for part in
                                                            {"journal": ["db", "files"],
                                                             "recipes": ["db", "mongo", "files"],
                                                             "dashboard": ["mongo", "files"]}[app.name]]
    assert sorted(restored["archive"]) == sorted(part["archive"] for part in restored["parts"])

    after_services = app.bed.compose_services(app.project)
    after = fingerprint(app, boxes_of(app, after_services))
    for key in before:
        assert after[key] == before[key], key
    assert empty  # the servers answered empty before the restore
    assert all(container.status == "running" for container in after_services.values()), after_services
    # compose adopts the volumes as its own (their labels kept): another `up` changes and warns about nothing.
    again = app.run("up", "--detach")
    assert "already exists" not in again.stderr, again.stderr


def journal_rows(box: Box) -> int:
    with box.connect_pg() as conn:
        (count,) = conn.execute("SELECT count(*) FROM entries").fetchall()[0]
        return int(count)


@pytest.mark.parametrize("app", ["journal"], indirect=True)
def test_over_live_data_a_part_as_of_a_time_needs_overwrite_and_a_killed_restore_leaves_the_app_to_the_next_run(
        app, age_key, run_module, tmp_path):
    services = app.bed.compose_services(app.project)
    db = boxes_of(app, services)["db"]
    web = services["web"].name
    root = tmp_path / "backups"
    host_vars = journey_vars(app, root, age_key)
    status, _rc, _artifact, stdout = run_with_runner(
        tmp_path, "backup", {**host_vars, "backup_verify_level": "structure"})
    assert status == "successful", stdout[-4000:]
    first = json.loads(next((root / f"{app.project}-db").glob("*.manifest.json")).read_text())
    time.sleep(1.1)  # archive names carry the start second
    with db.connect_pg() as conn:
        conn.execute("INSERT INTO entries (author, written_at, title) SELECT 1, now(), 'later' FROM generate_series(1, 5)")
    with open(os.path.join(app.volume_path("media"), "later.txt"), "w", encoding="utf-8") as handle:
        handle.write("written after the first backup\n")
    status, _rc, _artifact, stdout = run_with_runner(
        tmp_path, "backup", {**host_vars, "backup_verify_level": "structure"})
    assert status == "successful", stdout[-4000:]
    as_of = first["finished_at"]
    base = {"project": app.project, "root": str(root)}

    # Over live data, without overwrite: refused before anything is stopped, in one line naming the option.
    refused = run_module("compose_restore", {**base, "parts": ["db"], "as_of": as_of})
    assert refused.rc == 1
    assert refused.result["msg"] == (
        f"part {app.project}-db (container {db.name}): database journal already holds 2 tables; set overwrite: true "
        "in the restore item (it replaces the database with the archive's) to restore into it"), \
        refused.result["msg"]
    assert app.bed.client.containers.get(web).status == "running"
    # A part as of the first backup: the database goes back (5 rows fewer), the media volume is not touched.
    done = run_module("compose_restore", {**base, "parts": ["db"], "as_of": as_of, "overwrite": True})
    assert done.rc == 0, done.result.get("msg")
    (part,) = done.result["parts"]
    assert part["archive"] == str(root / f"{app.project}-db" / first["archive"]["file"]), part
    assert journal_rows(db) == 300 and done.result["stopped_containers"] == []
    assert os.path.exists(os.path.join(app.volume_path("media"), "later.txt"))
    bad = run_module("compose_restore", {**base, "parts": ["cache"]})
    assert bad.result["msg"] == f"compose project {app.project} has no part 'cache'; its parts are db, files"

    # The whole app over live data (the media volume changed since), killed with SIGKILL while the web container is
    # stopped: the container stays stopped, the note names it, and the next restore on this host starts it first.
    stray = os.path.join(app.volume_path("media"), "stray.txt")
    with open(stray, "w", encoding="utf-8") as handle:
        handle.write("written after the last backup\n")
    # Check mode says what would be stopped, and stops and writes nothing.
    status, _rc, _artifact, stdout = run_with_runner(tmp_path, "restore", {**host_vars, "restore_items": [
        {"job": app.project, "overwrite": True}]}, cmdline="--check")
    assert status == "successful", stdout[-4000:]
    assert f"stopped and started again: {web}" in stdout, stdout[-4000:]
    assert os.path.exists(stray) and journal_rows(db) == 300
    runner_process = start_module("compose_restore", {**base, "overwrite": True}, tmp_path)
    deadline = time.monotonic() + 60
    while app.bed.client.api.inspect_container(web)["State"]["Running"]:
        assert runner_process.poll() is None and time.monotonic() < deadline, "the web container was never stopped"
        time.sleep(0.02)
    runner_process.kill()
    runner_process.communicate()
    assert not app.bed.client.api.inspect_container(web)["State"]["Running"]
    notes = [name for name in os.listdir(STOPPED_DIR) if app.project in name]
    assert notes, os.listdir(STOPPED_DIR)
    again = run_module("compose_restore", {**base, "overwrite": True})
    assert again.rc == 0, again.result.get("msg")
    assert f"started container {web} again (a killed run of restore job {app.project}-restore had left it stopped)" \
        in str(again.result["warnings"]), again.result["warnings"]
    assert again.result["stopped_containers"] == [web] and again.result["containers"][web] == "healthy"
    assert 0 < again.result["downtime_seconds"] < 60, again.result["downtime_seconds"]
    assert journal_rows(db) == 305 and os.path.exists(os.path.join(app.volume_path("media"), "later.txt"))
    assert not os.path.exists(stray)
    assert again.result["parts"][1]["safety_archive"], again.result["parts"][1]  # what the volume held, kept
    assert not [name for name in os.listdir(STOPPED_DIR) if app.project in name]


@pytest.mark.parametrize("app", ["journal", "dashboard"], indirect=True)
def test_restored_before_up_into_docker_compose_create_the_app_starts_with_its_data_and_compose_labels(
        app, age_key, tmp_path):
    before = fingerprint(app, boxes_of(app, app.bed.compose_services(app.project)))
    root = tmp_path / "backups"
    host_vars = journey_vars(app, root, age_key)
    status, _rc, _artifact, stdout = run_with_runner(
        tmp_path, "backup", {**host_vars, "backup_verify_level": "structure"})
    assert status == "successful", stdout[-4000:]
    app.run("down", "--volumes", "--timeout", "5")
    # `create` makes the containers and the volumes, with compose's labels, and starts nothing.
    app.run("create")
    item: dict[str, t.Any] = {"job": app.project}
    if app.name == "dashboard":  # the config changed since: replaced while the database started for it is stopped
        with open(os.path.join(app.folder, "dashboard.yml"), "a", encoding="utf-8") as handle:
            handle.write("panels: [broken]\n")
        item["overwrite"] = True
    status, _rc, artifact, stdout = run_with_runner(tmp_path, "restore", {**host_vars, "restore_items": [item]})
    assert status == "successful", stdout[-4000:]
    assert artifact["lifeboat_restore_outcome"]["localhost"]["status"] == "ok"
    # The database containers were started for the restore and stopped again: nothing of the app runs yet.
    assert all(container.status == "created" or container.status == "exited"
               for container in app.bed.compose_services(app.project).values())
    for volume in app.bed.client.volumes.list(filters={"label": f"com.docker.compose.project={app.project}"}):
        assert volume.attrs["Labels"]["com.docker.compose.volume"] in ("db-data", "mongo-data", "media")
    started = app.run("up", "--detach")
    assert "already exists" not in started.stderr, started.stderr
    after = fingerprint(app, boxes_of(app, app.bed.compose_services(app.project)))
    for key in before:
        assert after[key] == before[key], key
