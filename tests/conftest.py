"""Fixtures shared by the whole suite.

The helpers behind them live in ``tests/_support``: the brute-force oracles (``oracles.py``), small models
(``models.py``, ``toys.py``), the shared-data locator (``data.py``), the wire-format fake servers (``servers/``) and
the fakes of Julia and SARSOP.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests._support.data import require_shared_data
from tests._support.models import tiger
from tests._support.toys import small_trim


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh seeded generator per test."""
    return np.random.default_rng(0)


@pytest.fixture
def shared_data() -> Path:
    """The shared data folder (skips the test when it is absent; ``TRIM_POMDP_SHARED_DATA`` overrides it)."""
    return require_shared_data()


@pytest.fixture
def tiger_pomdp():
    """The classic Tiger POMDP (γ = 0.95, uniform start)."""
    return tiger()


@pytest.fixture
def small_trim_pomdp():
    """A small TRIM-POMDP (H = 6, 5 × 5 bins) that every solver handles in milliseconds."""
    return small_trim()
