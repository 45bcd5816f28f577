# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The docs site's generated parts: which guide links leave docs/ (scripts/docs/lifeboat_sphinx.py), and which
variables a playbook page lists (scripts/docs/site_pages.py), on the repository's own playbooks."""

from __future__ import annotations

import os
import sys

import pytest
import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "scripts", "docs"))

import lifeboat_sphinx  # noqa: E402
import site_pages  # noqa: E402


@pytest.mark.parametrize(("target", "expected"), [
    ("../examples/inventory", "examples/inventory"),
    ("../meta/ee-bindep.txt", "meta/ee-bindep.txt"),
    ("../bench/README.md#results", "bench/README.md"),
    ("archives.md#encryption", None),
    ("#verify", None),
    ("https://example.net/x", None),
])
def test_repository_path_of_a_guide_link(target: str, expected: str | None) -> None:
    assert lifeboat_sphinx.repository_path("guides/awx", target) == expected


def test_links_of_other_pages_are_left_alone() -> None:
    assert lifeboat_sphinx.repository_path("index", "../examples/inventory") is None


def variables_of(name: str) -> dict[str, str]:
    with open(os.path.join(ROOT, "playbooks", f"{name}.yml"), encoding="utf-8") as handle:
        text = handle.read()
    plays = yaml.safe_load(text)
    roles = site_pages.roles_applied(plays)
    specs = site_pages.load_specs(ROOT)
    options = {option for role, entry in roles for option in specs[role][entry].get("options") or {}}
    internal = site_pages.internal_names(plays) | site_pages.role_facts(ROOT, [role for role, _entry in roles])
    return site_pages.play_variables(text, options, internal)


def test_a_playbook_page_lists_the_play_variables_not_its_facts() -> None:
    assert variables_of("backup") == {"lifeboat_target": "'all'", "lifeboat_serial": "0",
                                      "lifeboat_max_fail_percentage": "100"}
    # every playbook takes the batch settings; deploy_history is the deploy role's fact, not a variable
    assert variables_of("deploy") == variables_of("backup")


def test_every_playbook_gets_a_page_naming_its_roles() -> None:
    specs = site_pages.load_specs(ROOT)
    page = site_pages.playbook_page(ROOT, "verify", specs)
    assert page.startswith(".. _playbook_verify:\n")
    assert ":ansopt:`lifeboat.ops.backup#role:verify:backup_verify_level`" in page
    assert "Variables of the backup role (verify)" in page
