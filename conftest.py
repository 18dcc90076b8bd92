"""Checks that span the whole test session (tests/ and lessons/): see tests/conftest.py
for the fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Issue 15: once the lessons have run, nothing new may sit outside ignored paths
    (every artifact a lesson writes goes to lessons/build/, which git ignores)."""
    import subprocess
    ran_notebooks = any(str(getattr(item, "path", "")).endswith(".ipynb")
                        for item in getattr(session, "items", ()))
    if not ran_notebooks or not (ROOT / ".git").exists():
        return
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "lessons"],
                            cwd=ROOT, capture_output=True, text=True)
    stray = [line[3:] for line in status.stdout.splitlines() if line.startswith("??")]
    if stray:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line("FAILED: the lessons left files outside lessons/build/: "
                                + ", ".join(stray[:20]), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
