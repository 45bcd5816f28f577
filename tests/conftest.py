# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Makes the checkout importable as ansible_collections.lifeboat.ops, wherever it was cloned, and keeps the host's
default signing key of every test in a directory of this session."""

from __future__ import annotations

import os
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_ROOT = tempfile.mkdtemp(prefix="lifeboat-collections-")
os.makedirs(os.path.join(COLLECTIONS_ROOT, "ansible_collections", "lifeboat"))
os.symlink(REPO_ROOT, os.path.join(COLLECTIONS_ROOT, "ansible_collections", "lifeboat", "ops"))
sys.path.insert(0, COLLECTIONS_ROOT)
# Helpers shared by the unit and integration tests (and bench/), e.g. local_ports.
sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "shared"))
os.environ["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS_ROOT

# Signed by default (issue 28): a backup with no signing_key_file makes and uses this host's key, by default
# /etc/lifeboat/signing_key. No test may write the host's /etc: every module, role and `lifeboat` run of the session
# (they inherit the environment) signs with and trusts this key instead, as one host would. A test that means another
# layout gives signing_key_file, or its own LIFEBOAT_SIGNING_KEY_FILE.
if not os.environ.get("LIFEBOAT_SIGNING_KEY_FILE"):
    os.environ["LIFEBOAT_SIGNING_KEY_FILE"] = os.path.join(tempfile.mkdtemp(prefix="lifeboat-host-key-"), "signing_key")
