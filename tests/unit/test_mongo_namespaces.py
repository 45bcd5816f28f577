# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Namespace renaming and filtering with mongorestore's rules, so counts are compared in the right place."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.ops.plugins.module_utils._mongo import (
    is_system_namespace,
    map_namespace,
    namespace_matches,
)


@pytest.mark.parametrize(
    ("namespace", "renames", "expected"),
    [
        ("prod.entries", [("prod.*", "dev.*")], "dev.entries"),
        ("prod.a.b", [("prod.*", "dev.*")], "dev.a.b"),
        ("nightscout.entries", [("*.*", "copy_*.*")], "copy_nightscout.entries"),
        ("nightscout.entries", [("*.*", "*.old_*")], "nightscout.old_entries"),
        ("data.cust_42_orders", [("data.cust_$id$_$kind$", "archive.$kind$_$id$")], "archive.orders_42"),
        ("other.entries", [("prod.*", "dev.*")], "other.entries"),
        ("prod.entries", [("prod.*", "first.*"), ("prod.entries", "second.entries")], "second.entries"),
        ("a.b", [(r"a.\*", "c.d")], "a.b"),
    ],
)
def test_map_namespace(namespace, renames, expected):
    assert map_namespace(namespace, renames) == expected


def test_unknown_variable_is_an_error():
    with pytest.raises(LifeboatError, match=r"variable \$x\$ of 'b.\$x\$' is not in 'a.\$y\$'"):
        map_namespace("a.z", [("a.$y$", "b.$x$")])


@pytest.mark.parametrize(
    ("namespace", "pattern", "expected"),
    [("research.samples", "research.*", True), ("research.samples", "*.samples", True),
     ("research.samples", "res*", True), ("research.samples", "notes.*", False),
     ("a.b[1]", "a.b[1]", True), ("a.b1", "a.b[1]", False)],
)
def test_namespace_matches(namespace, pattern, expected):
    assert namespace_matches(namespace, pattern) is expected


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [("admin.system.users", True), ("config.settings", True), ("app.system.views", True), ("app.users", False)],
)
def test_system_namespaces(namespace, expected):
    assert is_system_namespace(namespace) is expected
