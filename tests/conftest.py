"""Shared fixtures: real builds with componentize-py, shared between tests.

Builds go to one test cache that persists across runs on the same machine
(``$WASI_MAGIC_TEST_CACHE`` or ``<user cache>/wasi-magic-tests``), so a second
run of the suite rebuilds nothing. Tests that check cold behaviour use a
temporary cache of their own.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import platformdirs
import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What the test cache keeps between runs on one machine (a run adds several GiB).
TEST_CACHE_LIMIT = 20 << 30
GUESTS = Path(__file__).resolve().parent / "guests"


def _test_cache_root() -> Path:
    override = os.environ.get("WASI_MAGIC_TEST_CACHE")
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("wasi-magic-tests", appauthor=False))


@pytest.fixture(scope="session", autouse=True)
def shared_cache() -> Path:
    """Point wasi-magic at the shared test cache for the whole session."""
    root = _test_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("WASI_MAGIC_CACHE")
    os.environ["WASI_MAGIC_CACHE"] = str(root)
    # Tier-up swaps a component between two runs whenever its background compile ends:
    # tests that check how a run found its component would depend on timing. It is on
    # only in the tests about it (tests/test_tierup.py).
    os.environ["WASI_MAGIC_TIER_UP"] = "0"
    # The session's shared builds must stay while it runs (no eviction mid-session); the
    # cache that persists between runs is trimmed once, before anything is built.
    from wasi_magic.cache import Cache
    Cache(root).trim(TEST_CACHE_LIMIT)
    os.environ["WASI_MAGIC_CACHE_LIMIT"] = "0"
    yield root
    if old is None:
        os.environ.pop("WASI_MAGIC_CACHE", None)
    else:
        os.environ["WASI_MAGIC_CACHE"] = old


@pytest.fixture(scope="session")
def quick_ready(shared_cache: Path):
    """The quick-mode sandbox, built and compiled into the shared cache before any test
    that interrupts or times a quick cell (so an Interrupt meets a guest, not a build)."""
    from wasi_magic.quick import quick_sandbox
    from wasi_magic.runtime import default_runtime
    artifact = quick_sandbox()
    default_runtime().component(artifact)
    return artifact


def prepare_cell(body: str, quick: bool = False):
    """Build and compile what a ``%%wasi`` cell with ``body`` runs, into the shared cache."""
    from wasi_magic import build
    from wasi_magic.quick import quick_sandbox
    from wasi_magic.runtime import default_runtime
    artifact = quick_sandbox() if quick else build(body)
    default_runtime().component(artifact)
    return artifact


@pytest.fixture()
def cold_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty cache for tests of cold behaviour; in-memory caches forgotten too."""
    from wasi_magic.builder import forget_memo
    from wasi_magic.runtime import default_runtime
    from wasi_magic.sandbox.supervisor import forget_everywhere
    root = tmp_path / "cold-cache"
    monkeypatch.setenv("WASI_MAGIC_CACHE", str(root))
    forget_memo()
    default_runtime().forget()
    forget_everywhere()
    yield root
    forget_memo()
    default_runtime().forget()
    forget_everywhere()


@pytest.fixture(scope="session")
def probe(shared_cache: Path):
    """The probe guest (tests/guests/probe.py) built once: one operation per argv."""
    from wasi_magic import build
    return build(GUESTS / "probe.py")


@pytest.fixture()
def sandbox(tmp_path: Path) -> Path:
    """A working folder with a granted dir ``data`` and a canary file beside it."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "input.txt").write_text("hello file\n")
    (data / "sub").mkdir()
    (tmp_path / "secret.txt").write_text("canary: the guest must never see this\n")
    return tmp_path


def python_child(code: str, env: dict[str, str] | None = None, timeout: float = 300):
    """Run ``code`` in a fresh Python process (a 'kernel restart'); returns CompletedProcess."""
    import subprocess
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def session_ready(shared_cache: Path):
    """The session component, built and compiled (plain, and metering fuel) into the
    shared cache before any test uses it."""
    from wasi_magic.runtime import default_runtime
    from wasi_magic.sessions import session_component
    artifact = session_component()
    default_runtime().component(artifact)
    default_runtime().component(artifact, fuel=True)
    return artifact

