# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nginx layout's defaults (sites, upstream and basic-auth, certificates, ACME webroot; listen address and ports)
are defined once, by the library's ``_nginx.Layout``. Its copies that must be written out are held to it: the modules'
argument spec, the doc fragment (ansible-doc reads YAML), the generated deploy role, the reverse_proxy role's
variables; and no other file of the collection writes one of the paths."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
import yaml

from ansible_collections.lifeboat.ops.plugins.doc_fragments._reverse_proxy import ModuleDocFragment
from ansible_collections.lifeboat.ops.plugins.module_utils import _nginx, _reverse_proxy

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAYOUT = dataclasses.asdict(_nginx.Layout())
PATHS = ["sites_dir", "include_dir", "tls_dir", "webroot"]


def load(relative: str) -> dict:
    return yaml.safe_load((ROOT / relative).read_text(encoding="utf-8"))


def test_the_modules_spec_and_the_doc_fragment_default_to_the_library_layout():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    for name, default in LAYOUT.items():
        assert _reverse_proxy.PROXY_OPTIONS[name]["default"] == default, name
        assert documented[name]["default"] == default, name


def test_the_roles_forward_the_library_layout():
    deploy = load("roles/deploy/defaults/main.yml")
    proxy_defaults = load("roles/reverse_proxy/defaults/main.yml")
    proxy_vars = load("roles/reverse_proxy/vars/main.yml")
    assert {name: deploy[f"deploy_{name}"] for name in LAYOUT} == LAYOUT
    assert {name: proxy_vars[f"__reverse_proxy_{name}"] for name in ["include_dir", "tls_dir", "webroot"]} == \
        {name: LAYOUT[name] for name in ["include_dir", "tls_dir", "webroot"]}
    assert {name: proxy_defaults[f"reverse_proxy_{name}"] for name in ["listen_address", "http_port", "https_port"]} \
        == {name: LAYOUT[name] for name in ["listen_address", "http_port", "https_port"]}


# Where a layout path may be written: the definition, the doc fragment, the deploy role its generator writes from the
# spec (scripts/gen-deploy-role.py --check), and the reverse_proxy role's variables (the test above).
WRITTEN = {"plugins/module_utils/_nginx.py", "plugins/doc_fragments/_reverse_proxy.py",
           "roles/deploy/defaults/main.yml", "roles/deploy/meta/argument_specs.yml", "roles/reverse_proxy/vars/main.yml"}


@pytest.mark.parametrize("name", PATHS)
def test_no_other_file_writes_a_layout_path(name):
    code = [path for folder in ("plugins", "roles", "playbooks") for path in (ROOT / folder).rglob("*")
            if path.suffix in (".py", ".yml", ".j2") and path.is_file()]
    written = {str(path.relative_to(ROOT)) for path in code if LAYOUT[name] in path.read_text(encoding="utf-8")}
    assert written - WRITTEN == set()
