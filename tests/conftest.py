# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Makes the checkout importable as ansible_collections.lifeboat.ops, wherever it was cloned."""

from __future__ import annotations

import os
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_ROOT = tempfile.mkdtemp(prefix="lifeboat-collections-")
os.makedirs(os.path.join(COLLECTIONS_ROOT, "ansible_collections", "lifeboat"))
os.symlink(REPO_ROOT, os.path.join(COLLECTIONS_ROOT, "ansible_collections", "lifeboat", "ops"))
sys.path.insert(0, COLLECTIONS_ROOT)
os.environ["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS_ROOT
