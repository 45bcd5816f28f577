# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""docker_app_info on a real compose project (Docker Compose v2, `docker compose up`): the recipe app's PostgreSQL,
MongoDB and uploads. An unknown project needs no containers at all."""

from __future__ import annotations

import json
import os

import pytest

from containers import LABEL_RUN, MONGO_PASSWORD, PG_PASSWORD  # pylint: disable=import-error
from testbed import RUN_ID  # pylint: disable=import-error

PROJECT = f"recipes{RUN_ID}".lower()
DB_USER, MONGO_USER = "recipes_owner", "recipes_root"


def compose_file(images: dict[str, str]) -> str:
    """The recipe app as its users run it: PostgreSQL, a MongoDB-wire server, a web app with an uploads volume and a
    bind-mounted uploads folder; the passwords come from compose's environment (never this file)."""
    return f"""services:
  db:
    image: {images["PG17_IMAGE"]}
    environment: [POSTGRES_USER={DB_USER}, POSTGRES_DB=recipes, POSTGRES_PASSWORD]
    volumes: [db-data:/var/lib/postgresql/data]
    labels: {{{LABEL_RUN}: "{RUN_ID}"}}
  mongo:
    image: {images["FERRETDB_IMAGE"]}
    environment: [MONGO_INITDB_ROOT_USERNAME={MONGO_USER}, MONGO_INITDB_ROOT_PASSWORD]
    volumes: [mongo-data:/data/db]
    labels: {{{LABEL_RUN}: "{RUN_ID}"}}
  web:
    image: {images["APP_IMAGE"]}
    depends_on: [db, mongo]
    volumes: [web-data:/data, ./uploads:/uploads]
    labels: {{{LABEL_RUN}: "{RUN_ID}"}}
volumes:
  db-data: {{}}
  mongo-data: {{}}
  web-data: {{}}
"""


@pytest.fixture(scope="module")
def app_folder(container_bed, tmp_path_factory):
    """The app's folder on the host: its compose file, its .env and the uploads folder bind-mounted into web."""
    folder = tmp_path_factory.mktemp("recipes-app")
    (folder / "docker-compose.yml").write_text(compose_file(container_bed.images))
    (folder / ".env").write_text("RECIPES_SITE=https://recipes.example.org\n")
    (folder / "uploads").mkdir()
    (folder / "uploads" / "soup.jpg").write_bytes(bytes(range(256)) * 64)
    (folder / "uploads" / "cake.jpg").write_bytes(b"cake" * 1000)
    os.chmod(folder / "uploads" / "cake.jpg", 0o640)
    return folder


@pytest.fixture(scope="module")
def recipe_app(container_bed, app_folder):
    """The project brought up by real Docker Compose v2 (``docker compose up``), removed with ``down -v``."""
    services = container_bed.compose_up(PROJECT, str(app_folder / "docker-compose.yml"), environment={
        "POSTGRES_PASSWORD": PG_PASSWORD, "MONGO_INITDB_ROOT_PASSWORD": MONGO_PASSWORD})
    database = container_bed.pg_box(services["db"], DB_USER, PG_PASSWORD, "recipes")
    documents = container_bed.ferret_box(services["mongo"], MONGO_USER, MONGO_PASSWORD)
    uploads = container_bed.app_box(services["web"])
    with database.connect_pg() as conn:
        conn.execute("CREATE TABLE recipes (id int PRIMARY KEY, title text)")
        conn.execute("INSERT INTO recipes SELECT n, 'recipe ' || n FROM generate_series(1, 40) n")
    client = documents.mongo_client()
    try:
        client.recipes.ratings.insert_many([{"recipe": n % 40, "stars": n % 5} for n in range(120)])
    finally:
        client.close()
    return database, documents, uploads


def test_the_recipe_app_is_found_from_its_project_and_its_jobs_back_up_as_they_are(recipe_app, run_module,
                                                                                   run_playbook, tmp_path):
    database, documents, uploads = recipe_app
    found = run_module("docker_app_info", {"project": PROJECT})
    assert found.rc == 0, found.result.get("msg")
    result = found.result
    assert result["changed"] is False
    by_service = {s["service"]: s for s in result["services"]}
    assert sorted(by_service) == ["db", "mongo", "web"]
    assert by_service["db"]["engine"] == "postgresql" and by_service["db"]["container"] == database.name
    # The test bed's images are named lifeboat/postgres and lifeboat/ferretdb: found by image name.
    assert by_service["mongo"]["engine"] == "mongodb"
    assert by_service["web"]["engine"] is None and by_service["web"]["engine_evidence"] == "no database client inside"
    folder = os.path.dirname(result["compose_files"][0])
    assert result["jobs"] == [
        {"name": f"{PROJECT}-db", "engine": "postgresql", "container": database.name, "database": "recipes"},
        {"name": f"{PROJECT}-mongo", "engine": "mongodb", "container": documents.name},
        {"name": f"{PROJECT}-files", "engine": "files", "volumes": [uploads.volume],
         "paths": [f"{folder}/uploads", f"{folder}/docker-compose.yml", f"{folder}/.env"]},
    ]
    volumes = {v["volume"]: v for v in result["volumes"]}
    assert volumes[database.volume]["database_data"] is True
    assert volumes[documents.volume]["database_data"] is True
    assert volumes[uploads.volume]["database_data"] is False and volumes[uploads.volume]["destination"] == "/data"
    assert database.password not in found.stdout and documents.password not in found.stdout

    root = tmp_path / "backups"
    done = run_playbook("backup", {"backup_root": str(root), "backup_jobs": result["jobs"]})
    assert done.returncode == 0, done.stdout[-3000:]
    counts = {}
    for job in result["jobs"]:
        (manifest_path,) = (root / job["name"]).glob("*.manifest.json")
        manifest = json.loads(manifest_path.read_text())
        if job["engine"] != "files":
            assert manifest["server"]["container"]["name"] == job["container"]
            counts.update(manifest["counts"])
    # A whole-server MongoDB dump also counts the server's own users (admin.system.users).
    assert {name: n for name, n in counts.items() if ".system." not in name} == {"public.recipes": 40,
                                                                                 "recipes.ratings": 120}


def test_an_unknown_project_or_a_bad_name_is_one_line(run_module, run_playbook, tmp_path):
    unknown = run_module("docker_app_info", {"project": f"nosuchapp{RUN_ID}".lower()})
    assert unknown.rc != 0
    assert unknown.result["msg"] == (f"no container on this host carries the label com.docker.compose.project="
                                     f"{f'nosuchapp{RUN_ID}'.lower()}; check the project name (docker compose ls)")
    # The verify playbook says so in its one line for the job, and the host fails.
    report = run_playbook("verify", {"backup_root": str(tmp_path), "backup_jobs": [
        {"name": "gone", "compose_project": f"nosuchapp{RUN_ID}".lower()}]})
    assert report.returncode == 2, report.stdout[-3000:]
    assert (f'"msg": ["gone: no container on this host carries the label com.docker.compose.project='
            f'{f"nosuchapp{RUN_ID}".lower()}; check the project name (docker compose ls)"]') in report.stdout, \
        report.stdout[-3000:]
    bad = run_module("docker_app_info", {"project": "Bad Name"})
    assert bad.rc != 0
    assert bad.result["msg"] == ("project 'Bad Name' is not a compose project name (lowercase letters, digits, "
                                 "'-', '_')")


def test_the_backup_role_backs_up_the_whole_app_from_its_project_and_it_restores_as_a_dev_copy(
        recipe_app, app_folder, container_bed, run_module, run_playbook, tmp_path):
    database, documents, uploads = recipe_app
    root = tmp_path / "backups"
    done = run_playbook("backup", {"backup_root": str(root), "backup_verify_level": "structure",
                                   "backup_jobs": [{"name": "recipes", "compose_project": PROJECT}]})
    assert done.returncode == 0, done.stdout[-3000:]
    assert "template error" not in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]
    assert sorted(os.listdir(root)) == sorted(f"{PROJECT}-{part}" for part in ("db", "mongo", "files"))
    # The verify playbook, given the same job, proves each part's archive (its job directory, its engine's test).
    report = run_playbook("verify", {"backup_root": str(root), "backup_verify_level": "restore",
                                     "backup_jobs": [{"name": "recipes", "compose_project": PROJECT}]})
    assert report.returncode == 0, report.stdout[-3000:]
    assert '"msg": "3 archives proven, 0 failed"' in report.stdout, report.stdout[-3000:]
    for part in ("db", "mongo", "files"):
        (manifest_path,) = (root / f"{PROJECT}-{part}").glob("*.manifest.json")
        assert json.loads(manifest_path.read_text())["verifications"][-1]["level"] == "restore", part

    dev = tmp_path / "recipes-dev"
    dev_volume = container_bed.name("recipes-dev-data")
    container_bed.volumes.append(dev_volume)
    files = run_module("files_restore", {
        "destination": str(root / f"{PROJECT}-files"), "job": f"{PROJECT}-files", "select": "newest",
        "volume_map": {uploads.volume: dev_volume},
        "path_map": {str(app_folder / name): str(dev / name) for name in ("uploads", "docker-compose.yml", ".env")}})
    assert files.rc == 0, files.stdout + files.stderr
    for name in ("uploads/soup.jpg", "uploads/cake.jpg", "docker-compose.yml", ".env"):
        assert (dev / name).read_bytes() == (app_folder / name).read_bytes(), name
        assert os.stat(dev / name).st_mode == os.stat(app_folder / name).st_mode, name
    rows = run_module("postgresql_restore", {
        "destination": str(root / f"{PROJECT}-db"), "job": f"{PROJECT}-db", "select": "newest",
        "container": database.name, "target_database": "recipes_dev"})
    assert rows.rc == 0, rows.stdout + rows.stderr
    with database.connect_pg("recipes_dev") as conn:
        assert conn.execute("SELECT count(*) FROM recipes").fetchone() == (40,)
    docs = run_module("mongodb_restore", {
        "destination": str(root / f"{PROJECT}-mongo"), "job": f"{PROJECT}-mongo", "select": "newest",
        "container": documents.name, "ns_from": ["recipes.*"], "ns_to": ["recipes_dev.*"],
        "ns_exclude": ["admin.*"]})
    assert docs.rc == 0, docs.stdout + docs.stderr
    client = documents.mongo_client()
    try:
        assert client.recipes_dev.ratings.count_documents({}) == 120
        assert client.recipes.ratings.count_documents({}) == 120  # the original is untouched
    finally:
        client.close()
