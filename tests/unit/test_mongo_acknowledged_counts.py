# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""mongorestore's per-collection line read into the acknowledged counts of a staged restore (the integration tests in
test_restore_mongo_counts.py run the real mongorestore against FerretDB; here the lines mongo-tools' Result.log
prints, including the failure figure that --stopOnError makes rare)."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.ops.plugins.module_utils._mongo import _FINISHED, _acknowledged_count


def parsed(*lines: str) -> dict[str, tuple[int, int]]:
    """What _restore_and_check's line handler gathers (the same regex; two lines of one namespace are summed)."""
    found: dict[str, tuple[int, int]] = {}
    for line in lines:
        match = _FINISHED.search(line)
        if match:
            inserted, failures = found.get(match.group(1), (0, 0))
            found[match.group(1)] = (inserted + int(match.group(2)), failures + int(match.group(3)))
    return found


def test_the_namespace_is_the_whole_name_even_with_parentheses_and_figures_in_it():
    lines = ("2026-12-01T05:45:16.484+0000\tfinished restoring shop.a (1 documents, 0 failures) b (7 documents, 0 failures)",
             "2026-12-01T05:45:16.484+0000\tfinished restoring shop.one (1 document, 0 failures)",
             "2026-12-01T05:45:16.484+0000\tno indexes to restore for collection shop.one",
             "2026-12-01T05:45:16.484+0000\t8 document(s) restored successfully. 0 document(s) failed to restore.")
    assert parsed(*lines) == {"shop.a (1 documents, 0 failures) b": (7, 0), "shop.one": (1, 0)}


def test_an_unreported_collection_has_no_acknowledged_count():
    assert _acknowledged_count({"shop.one": (1, 0)}, "shop.other") is None
    assert _acknowledged_count({"shop.one": (0, 0)}, "shop.one") == 0


def test_failures_fail_the_restore_in_one_line():
    with pytest.raises(LifeboatError) as failure:
        _acknowledged_count(parsed("x\tfinished restoring shop.one (9 documents, 1 failure)"), "shop.one")
    assert str(failure.value) == "mongorestore could not restore 1 documents of shop.one"
