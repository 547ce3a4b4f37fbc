"""Locate the read-only shared data directory (``../shared/data`` relative to the repo root) for data tests.

Tests that need real data call :func:`require_shared_data`, which skips the test with a clear reason when the
data is absent (e.g. on a fresh clone or in CI without the data checkout).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["FIXTURES", "REPO_ROOT", "TESTS_DIR", "require_shared_data", "shared_data_dir"]

#: Root of the repository (the folder holding ``tests/``).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The ``tests/`` folder.
TESTS_DIR = REPO_ROOT / "tests"
#: Small committed fixture files (``tests/fixtures``).
FIXTURES = TESTS_DIR / "fixtures"


def shared_data_dir() -> Path | None:
    """Return ``<repo>/../shared/data`` if it exists, else ``None``.

    The environment variable ``TRIM_POMDP_SHARED_DATA`` overrides the location.
    """
    env = os.environ.get("TRIM_POMDP_SHARED_DATA")
    candidate = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def require_shared_data(sub: str | os.PathLike = "") -> Path:
    """Return ``shared_data_dir() / sub`` or ``pytest.skip`` the calling test when it is absent.

    Parameters
    ----------
    sub : str or path-like
        A file or folder inside the shared data directory, e.g. ``"processbench"``.
    """
    root = shared_data_dir()
    if root is None:
        pytest.skip(
            f"shared data directory {REPO_ROOT.parent / 'shared' / 'data'} is absent "
            "(set TRIM_POMDP_SHARED_DATA to its location to run this data test)"
        )
    path = root / sub if sub else root
    if not path.exists():
        pytest.skip(f"shared data {path} is absent (needed by this data test)")
    return path
