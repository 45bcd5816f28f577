# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dump request's trip through the library stays short (issue 31): bench/dump_trip.py runs postgresql_dump (and
the other dump modules) against the test bed under sys.setprofile. The PostgreSQL request enters at most 6 files and
comes back to none of them more than once; MongoDB and files, whose sources hand their stream to the same
write_archive, hold the same bound. Before write_archive: 5 files, 21 stays, 6 returns to _postgres and _archive each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOAL_FILES, GOAL_RETURNS = 6, 1


@pytest.mark.parametrize("engine", ["postgresql", "mongodb", "files"])
def test_a_dump_request_enters_few_files_and_comes_back_to_each_once_at_most(engine, tmp_path):
    figures = tmp_path / "trip.json"
    done = subprocess.run([sys.executable, os.path.join(REPO, "bench", "dump_trip.py"), "--engine", engine, "--json",
                           str(figures)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    trip = json.loads(figures.read_text())[0]["trip"]
    assert trip["files"] <= GOAL_FILES and trip["most_returns"] <= GOAL_RETURNS, trip
    assert trip["path"][0] == trip["path"][-1]  # the trip ends where it began: the module's home
