"""The bins of the observation space: edges on [0, 1], the bin of a score, and checks of bin probabilities.

Both coordinates of an observation, the newest PRM score ``r`` and the minimum ``m`` of the earlier ones, are
binned with the same edges ``0 = e_0 < e_1 < ... < e_n = 1``. Bin ``i`` is ``[e_i, e_{i+1})``, except that the
last bin also holds 1. A pair observation's flat index is ``i_r * n + i_m``; a first step's (no ``m``) is
``i_r``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trim_pomdp.constants import HIDDEN_CLASSES
from trim_pomdp.exceptions import InvalidParameterError

__all__ = ["ROW_TOL", "bin_index", "check_class_rows", "check_edges", "check_scores", "uniform_edges"]

#: How far from 1 a class's bin probabilities may sum.
ROW_TOL = 1e-9


def uniform_edges(n_bins: int) -> np.ndarray:
    """``n_bins + 1`` equally spaced edges on [0, 1]."""
    return np.linspace(0.0, 1.0, int(n_bins) + 1)


def check_edges(edges: Any) -> np.ndarray:
    """``edges`` as a float array, or :class:`InvalidParameterError` unless they increase strictly over [0, 1]."""
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
        raise InvalidParameterError("edges must be a strictly increasing 1-D array of at least 2 values")
    if abs(edges[0]) > 1e-12 or abs(edges[-1] - 1) > 1e-12:
        raise InvalidParameterError(f"edges must span [0, 1], got [{edges[0]}, {edges[-1]}]")
    return edges


def bin_index(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The bin of every value of ``x`` (scores in [0, 1]; 1 falls in the last bin)."""
    n = edges.size - 1
    return np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n - 1)


def check_class_rows(name: str, rows: np.ndarray) -> None:
    """Raise :class:`InvalidParameterError` unless every row (one per hidden class) is a distribution."""
    if not np.all(np.isfinite(rows)) or rows.min() < 0:
        raise InvalidParameterError(f"{name} must be finite and non-negative")
    sums = rows.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > ROW_TOL:
        raise InvalidParameterError(
            f"{name}[{HIDDEN_CLASSES[worst]}] sums to {sums[worst]!r}, not 1 (tolerance {ROW_TOL})"
        )


def check_scores(x: np.ndarray, name: str) -> None:
    """Raise :class:`InvalidParameterError` naming the first value of ``x`` that is not a score in [0, 1]."""
    ok = np.isfinite(x) & (x >= 0) & (x <= 1)
    if not np.all(ok):
        bad = x[~ok].ravel()[0]
        raise InvalidParameterError(f"{name} must be a PRM score in [0, 1], got {bad!r}")
