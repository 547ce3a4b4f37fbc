"""Geometry of beliefs shared by every solver: simplex grids, pointwise-dominance pruning, stochasticity checks.

A belief over ``n`` states is a point of the probability simplex. Value functions of POMDPs are piecewise-linear
and convex in it, given by *alpha vectors* (``V(b) = max_k alpha_k · b``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

__all__ = ["check_stochastic", "nondominated", "simplex_grid"]


def simplex_grid(n_states: int, resolution: int) -> np.ndarray:
    """Every belief over ``n_states`` states whose entries are multiples of ``1 / resolution``.

    Returns ``C(resolution + n_states - 1, n_states - 1)`` rows, in lexicographic order of the counts
    ``(resolution · b_0, resolution · b_1, …)`` from the largest first entry down.

    Raises
    ------
    ValueError
        When ``n_states < 1`` or ``resolution < 1``.
    """
    k, r = int(n_states), int(resolution)
    if k < 1 or r < 1:
        raise ValueError(
            f"a simplex grid needs n_states >= 1 and resolution >= 1, got {n_states}, {resolution}"
        )
    if k == 1:
        return np.ones((1, 1))
    rows = []
    for cuts in itertools.combinations(range(r + k - 1), k - 1):
        rows.append(np.diff(np.concatenate([[-1], cuts, [r + k - 1]])) - 1)
    return np.asarray(rows, dtype=float)[::-1] / r


def nondominated(vectors: np.ndarray, tol: float = 0.0, chunk: int = 512) -> np.ndarray:
    """Indices (ascending) of the rows that no other row dominates pointwise.

    Row ``j`` dominates row ``i`` when ``vectors[j] >= vectors[i] - tol`` everywhere. Among rows that dominate
    each other (duplicates within ``tol``) the one with the largest sum is kept (the first of equal sums).
    Dropping dominated alpha vectors never changes ``max_k alpha_k · b`` anywhere on the simplex, so the
    pruning is exact.
    """
    V = np.atleast_2d(np.asarray(vectors, dtype=float))
    if len(V) <= 1:
        return np.arange(len(V))
    order = np.argsort(-V.sum(axis=1), kind="stable")
    W = V[order]
    keep = np.ones(len(W), dtype=bool)
    for lo in range(0, len(W), chunk):
        hi = min(lo + chunk, len(W))
        dom = np.all(W[None, :hi, :] >= W[lo:hi, None, :] - tol, axis=2)  # dom[i, j]: row j dominates lo + i
        dom &= np.arange(hi)[None, :] < np.arange(lo, hi)[:, None]  # only rows earlier in the order count
        keep[lo:hi] = ~dom.any(axis=1)
    return np.sort(order[keep])


def check_stochastic(
    name: str,
    probs: np.ndarray,
    *,
    error: Callable[[str], Exception] = ValueError,
    atol: float = 1e-8,
    sum_tol: float = 1e-6,
) -> None:
    """Check that every entry of ``probs`` is a probability and that it sums to 1 along its last axis.

    Parameters
    ----------
    name : str
        What the array is, for the message (e.g. ``"T"``).
    probs : ndarray
        Probabilities with the distributions along the last axis.
    error : callable
        Exception class (or factory) raised with the message, e.g.
        :class:`~trim_pomdp.exceptions.ModelCheckError`.
    atol : float
        Tolerance on the range [0, 1].
    sum_tol : float
        Tolerance on the sums.

    Raises
    ------
    Exception
        ``error(message)``, where the message names the first offending index, e.g.
        ``"T[1, 17, :] sums to 0.93, not 1"``.
    """
    arr = np.asarray(probs, dtype=float)
    bad = np.argwhere(~np.isfinite(arr) | (arr < -atol) | (arr > 1 + atol))
    if bad.size:
        idx = tuple(int(i) for i in bad[0])
        raise error(f"{name}{list(idx)} = {float(arr[idx])!r} is not a probability in [0, 1]")
    sums = arr.sum(axis=-1)
    off = np.abs(sums - 1.0) > sum_tol
    if np.any(off):
        idx = tuple(int(i) for i in np.argwhere(off)[0]) if off.ndim else ()  # a 1-D array has one sum
        where = ", ".join(str(i) for i in idx)
        label = f"{name}[{where}, :]" if idx else name
        raise error(f"{label} sums to {float(sums[idx]):.6g}, not 1")
