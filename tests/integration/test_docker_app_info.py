# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""docker_app_info on a compose-labelled app of real containers: the recipe app's PostgreSQL, MongoDB and uploads."""

from __future__ import annotations

import json

import pytest

from testbed import RUN_ID  # pylint: disable=import-error

PROJECT = f"recipes{RUN_ID}".lower()


def labels(service: str) -> dict[str, str]:
    return {"com.docker.compose.project": PROJECT, "com.docker.compose.service": service}


@pytest.fixture(scope="module")
def recipe_app(container_bed):
    database = container_bed.postgres("recipes-db", database="recipes", volume=True, labels=labels("db"))
    documents = container_bed.ferretdb("recipes-mongo", volume=True, labels=labels("mongo"))
    uploads = container_bed.app("recipes-web", labels=labels("web"))
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
    assert result["jobs"] == [
        {"name": f"{PROJECT}-db", "engine": "postgresql", "container": database.name, "database": "recipes"},
        {"name": f"{PROJECT}-mongo", "engine": "mongodb", "container": documents.name},
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
        assert manifest["server"]["container"]["name"] == job["container"]
        counts.update(manifest["counts"])
    # A whole-server MongoDB dump also counts the server's own users (admin.system.users).
    assert {name: n for name, n in counts.items() if ".system." not in name} == {"public.recipes": 40,
                                                                                 "recipes.ratings": 120}


def test_an_unknown_project_or_a_bad_name_is_one_line(run_module):
    unknown = run_module("docker_app_info", {"project": f"nosuchapp{RUN_ID}".lower()})
    assert unknown.rc != 0
    assert unknown.result["msg"] == (f"no container on this host carries the label com.docker.compose.project="
                                     f"{f'nosuchapp{RUN_ID}'.lower()}; check the project name (docker compose ls)")
    bad = run_module("docker_app_info", {"project": "Bad Name"})
    assert bad.rc != 0
    assert bad.result["msg"] == ("project 'Bad Name' is not a compose project name (lowercase letters, digits, "
                                 "'-', '_')")
