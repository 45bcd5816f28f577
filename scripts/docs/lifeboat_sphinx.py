# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sphinx extension of the docs site (scripts/ci/docs-site.sh): the guides, laid under guides/ as docs/*.md are,
link to repository files outside docs/ (`[examples/inventory](../examples/inventory)`), which are not pages of the
site. Each such link becomes the file's repository path in plain text, or a link to it when galaxy.yml names the
repository (`repository:`), so that the guides stay right on GitHub and the site builds with warnings as errors."""

from __future__ import annotations

import os
import posixpath
from typing import Any

import yaml
from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx

GUIDES = "guides"  # where site_pages.py lays docs/*.md in the Sphinx source tree


def repository_path(docname: str, target: str) -> str | None:
    """The repository path a guide's relative link names, when it lies outside docs/; None for a link the site has."""
    if not docname.startswith(f"{GUIDES}/") or "://" in target or target.startswith(("#", "/", "mailto:")):
        return None
    path = posixpath.normpath(posixpath.join("docs", posixpath.dirname(docname[len(GUIDES) + 1:]),
                                             target.split("#", 1)[0]))
    return None if path.startswith("docs/") or path == "docs" else path


def repository_url(root: str) -> str:
    try:
        with open(os.path.join(root, "galaxy.yml"), encoding="utf-8") as handle:
            return str((yaml.safe_load(handle) or {}).get("repository") or "").rstrip("/")
    except OSError:
        return ""


def rewrite_outside_links(app: Sphinx, doctree: nodes.document) -> None:
    docname = app.env.docname
    base = repository_url(app.config.lifeboat_root) if app.config.lifeboat_root else ""
    for node in list(doctree.findall(addnodes.pending_xref)):
        if node.get("reftype") != "myst":
            continue
        path = repository_path(docname, node["reftarget"])
        if path is None:
            continue
        text = node.astext()
        shown: list[nodes.Node] = [nodes.literal(text, text)]
        if path.rstrip("/") not in text and text.rstrip("/") not in path:
            shown += [nodes.Text(" ("), nodes.literal(path, path), nodes.Text(")")]
        if base:
            link = nodes.reference("", "", *shown, refuri=f"{base}/blob/HEAD/{path}", classes=["repository-file"])
            node.replace_self(link)
        else:
            node.replace_self(nodes.inline("", "", *shown, classes=["repository-file"]))


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("lifeboat_root", "", "env")
    app.connect("doctree-read", rewrite_outside_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
