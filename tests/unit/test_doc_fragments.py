# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore-test servers of backup_verify document exactly the connection options of each engine."""

from __future__ import annotations

import pytest
import yaml

from ansible_collections.lifeboat.ops.plugins.doc_fragments import _mongodb as mongodb
from ansible_collections.lifeboat.ops.plugins.doc_fragments import _postgresql as postgresql
from ansible_collections.lifeboat.ops.plugins.doc_fragments import _scratch_servers as scratch_servers

SHAPE = ("type", "default", "choices", "aliases", "elements")


@pytest.mark.parametrize("option, fragment", [("postgresql", postgresql), ("mongodb", mongodb)])
def test_scratch_server_suboptions_follow_the_engine_fragment(option, fragment):
    engine = yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)["options"]
    nested = yaml.safe_load(scratch_servers.ModuleDocFragment.DOCUMENTATION)["options"][option]["suboptions"]
    assert sorted(nested) == sorted(engine)
    for name, spec in engine.items():
        assert {key: spec.get(key) for key in SHAPE} == {key: nested[name].get(key) for key in SHAPE}, name
