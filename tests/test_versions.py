"""wasi_magic.versions: the versions the caches are keyed by, read without importlib.metadata."""

from __future__ import annotations

import importlib.metadata

import pytest

from wasi_magic.versions import installed_version


@pytest.mark.parametrize("module, distribution", [("wasmtime", "wasmtime"),
                                                  ("componentize_py", "componentize-py"),
                                                  ("IPython", "ipython")])
def test_the_version_is_the_one_importlib_metadata_reads(module: str, distribution: str) -> None:
    assert installed_version(module, distribution) == importlib.metadata.version(distribution)


def test_a_missing_package_raises_package_not_found() -> None:
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        installed_version("no_such_module_here", "no-such-distribution")
