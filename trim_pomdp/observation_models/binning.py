"""The bins of the observation space: edges on [0, 1], the bin of a score, and checks of bin probabilities.

Each coordinate of an observation, the newest PRM score ``r`` and the minimum ``m`` of the earlier ones, is binned
with its own edges ``0 = e_0 < e_1 < ... < e_n = 1`` (the same number ``n`` of bins on both axes; by default the
same edges). Bin ``i`` is ``[e_i, e_{i+1})``, except that the last bin also holds 1. A pair observation's flat
index is ``i_r * n + i_m``; a first step's (no ``m``) is ``i_r``.

**Edge schemes** (:func:`make_edges`; the choice and the edges are recorded in the observation model's card):

- ``"uniform"``: ``i / n``. Where a PRM's scores pile up near 1 (most steps of a good PRM score above 0.95), the
  top bin then holds most of the mass and hides the differences a decision turns on (0.96 against 0.999);
- ``"logit"``: equally spaced on the logit scale between ``logit(eps)`` and ``logit(1 - eps)`` (default
  ``eps = 1e-3``), with the outer bins reaching 0 and 1: fine near both ends, coarse in the middle;
- ``"quantile"``: per axis, at equally spaced quantiles of the training scores (``r`` of every step, ``m`` of
  steps with ``t >= 2``), so every bin holds about the same share of the data. Ties (scores stored at a fixed
  precision, many exactly 1) cannot be split: an edge sits halfway between two distinct values, and when ties
  leave fewer than ``n`` bins, the fullest bins that still hold two distinct values are split at their middle
  value (the widest bin is halved when none does) until there are ``n``.

**Density scale** (:func:`to_density_scale`). The class densities are kernel estimates, and a kernel of one
width cannot follow scores that pile up within 0.001 of 1 and also spread over [0, 0.9]. With ``"logit"`` the
densities are fitted on ``u = (logit(clip(x, eps, 1 - eps)) + L) / (2 L)``, ``L = logit(1 - eps)`` (default
``eps = 1e-4``), which maps [0, 1] onto [0, 1] monotonically, so the same reflected KDE on the unit square applies
and every bin's mass is exact on its transformed edges. Scores within ``eps`` of 0 or 1 fall on the box's faces,
where reflection keeps their mass. ``"score"`` (the models of earlier versions) fits on the scores themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trim_pomdp.constants import HIDDEN_CLASSES
from trim_pomdp.exceptions import InvalidParameterError

__all__ = [
    "BIN_SCHEMES",
    "DEFAULT_BINS",
    "DEFAULT_DENSITY_SCALE",
    "DEFAULT_LOGIT_EPS",
    "DEFAULT_SCALE_EPS",
    "DENSITY_SCALES",
    "ROW_TOL",
    "bin_index",
    "check_class_rows",
    "check_edges",
    "check_scores",
    "logit_edges",
    "make_edges",
    "quantile_edges",
    "to_density_scale",
    "uniform_edges",
]

#: How far from 1 a class's bin probabilities may sum.
ROW_TOL = 1e-9
#: The edge schemes of :func:`make_edges`.
BIN_SCHEMES = ("uniform", "logit", "quantile")
#: The edge scheme fits use unless told otherwise.
DEFAULT_BINS = "uniform"
#: Default ``eps`` of the logit scheme: the innermost edges are ``eps`` and ``1 - eps``.
DEFAULT_LOGIT_EPS = 1e-3
#: The coordinates the class densities can be fitted in (module docstring).
DENSITY_SCALES = ("score", "logit")
#: The density scale fits use unless told otherwise.
DEFAULT_DENSITY_SCALE = "score"
#: ``eps`` of the logit density scale: scores closer than this to 0 or 1 sit on the faces.
DEFAULT_SCALE_EPS = 1e-4


def to_density_scale(x: Any, scale: str = "score", eps: float = DEFAULT_SCALE_EPS) -> np.ndarray:
    """Scores (or bin edges) in the coordinate the densities are fitted in; NaN stays NaN (module docstring)."""
    x = np.asarray(x, dtype=float)
    if scale == "score":
        return x
    if scale != "logit":
        raise InvalidParameterError(f"density scale must be one of {DENSITY_SCALES}, got {scale!r}")
    if not 0 < eps < 0.5:
        raise InvalidParameterError(f"eps of the logit density scale must lie in (0, 0.5), got {eps!r}")
    half = np.log1p(-eps) - np.log(eps)
    c = np.clip(x, eps, 1 - eps)
    with np.errstate(invalid="ignore"):
        return np.clip((np.log(c) - np.log1p(-c) + half) / (2 * half), 0.0, 1.0)


def uniform_edges(n_bins: int) -> np.ndarray:
    """``n_bins + 1`` equally spaced edges on [0, 1]."""
    return np.linspace(0.0, 1.0, int(n_bins) + 1)


def _logit(x: np.ndarray) -> np.ndarray:
    return np.log(x) - np.log1p(-x)


def logit_edges(n_bins: int, eps: float = DEFAULT_LOGIT_EPS) -> np.ndarray:
    """``n_bins + 1`` edges: 0, then ``n_bins - 1`` logit-spaced values from ``eps`` to ``1 - eps``, then 1."""
    n = int(n_bins)
    if not 0 < eps < 0.5:
        raise InvalidParameterError(f"eps of the logit bins must lie in (0, 0.5), got {eps!r}")
    if n < 2:
        return uniform_edges(n)
    inner = 1.0 / (1.0 + np.exp(-np.linspace(_logit(np.array(eps)), _logit(np.array(1 - eps)), n - 1)))
    return np.concatenate([[0.0], inner, [1.0]])


def quantile_edges(values: Any, n_bins: int) -> np.ndarray:
    """``n_bins + 1`` edges at equally spaced quantiles of ``values`` (see the module docstring for ties)."""
    n = int(n_bins)
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise InvalidParameterError("quantile bins need training scores, got none")
    distinct = np.unique(x)
    inner: set[float] = set()
    for q in np.quantile(x, np.linspace(0, 1, n + 1)[1:-1]):
        j = int(np.searchsorted(distinct, q))
        if 0 < j < distinct.size:  # halfway between the two distinct values around the quantile
            inner.add(float(0.5 * (distinct[j - 1] + distinct[j])))
    edges = np.unique(np.concatenate([[0.0, 1.0], sorted(e for e in inner if 0 < e < 1)]))
    while edges.size < n + 1:
        edges = _split_fullest(edges, x, distinct)
    return edges


def _split_fullest(edges: np.ndarray, x: np.ndarray, distinct: np.ndarray) -> np.ndarray:
    """One more edge: inside the bin with the most training values among those holding two distinct ones, at
    the middle distinct value; when no bin can be split so, halve the widest bin."""
    counts = np.histogram(x, edges)[0]
    n_distinct = np.histogram(distinct, edges)[0]
    splittable = np.flatnonzero(n_distinct >= 2)
    if splittable.size:
        k = int(splittable[np.argmax(counts[splittable])])
        inside = distinct[(distinct >= edges[k]) & (distinct < edges[k + 1])]
        j = inside.size // 2
        mid = float(0.5 * (inside[j - 1] + inside[j]))
    else:
        k = int(np.argmax(np.diff(edges)))
        mid = float(0.5 * (edges[k] + edges[k + 1]))
    return np.insert(edges, k + 1, mid)


def make_edges(scheme: str, n_bins: int, values: Any = None, *, eps: float = DEFAULT_LOGIT_EPS) -> np.ndarray:
    """Edges of one axis under ``scheme`` (:data:`BIN_SCHEMES`); ``values`` are the training scores for quantiles."""
    if scheme == "uniform":
        return uniform_edges(n_bins)
    if scheme == "logit":
        return logit_edges(n_bins, eps)
    if scheme == "quantile":
        if values is None:
            raise InvalidParameterError("quantile bins need the training scores (values)")
        return quantile_edges(values, n_bins)
    raise InvalidParameterError(f"bin scheme must be one of {BIN_SCHEMES}, got {scheme!r}")


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
