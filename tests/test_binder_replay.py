"""Issue: a classroom opens the lessons on Binder and no cell waits for a build.

Replays the Binder build locally (binder/replay.py): fresh venv, fresh HOME,
requirements from binder/, postBuild, then every lesson top to bottom.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_lessons_build_nothing_after_post_build(tmp_path) -> None:
    report_path = tmp_path / "replay.json"
    done = subprocess.run([sys.executable, str(ROOT / "binder" / "replay.py"),
                           "--json", str(report_path)], capture_output=True, text=True,
                          timeout=3000)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["warm"]["builds"] == 0
    assert report["postbuild_builds"] >= 2  # the quick-mode sandbox and the lessons' cells
    assert report["cold"]["builds"] >= 1  # the cold run really built (the replay is not vacuous)
