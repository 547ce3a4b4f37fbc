"""Rank-2 dynamics and one-dimensional value functions: segment factorisation and upper envelopes of lines.

If every transition row lies on one segment of the simplex, ``transition[a] = M[a] @ V`` with two vertex
distributions ``V = (v1, v2)``, every predicted belief from epoch 2 on is ``g v1 + (1 − g) v2`` for a scalar
``g ∈ [0, 1]``. An alpha vector ``α`` then becomes the line ``g ↦ α·v2 + (α·v1 − α·v2) g`` and a value function
the upper envelope of such lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError

__all__ = ["SegmentFactorization", "eval_envelope", "segment_factorization", "upper_envelope"]


@dataclass
class SegmentFactorization:
    """``transition[a] = M[a] @ V``: every transition row is a mixture of the two rows of ``V``.

    Attributes
    ----------
    V : ndarray, shape (2, n_hidden)
        The vertex distributions ``v1`` (g = 1) and ``v2`` (g = 0).
    M : ndarray, shape (n_actions, n_hidden, 2)
        ``M[a, z] = (g, 1 − g)``: the weight of ``v1`` in row ``transition[a, z]``.
    """

    V: np.ndarray
    M: np.ndarray


def segment_factorization(
    transition: np.ndarray, anchor: np.ndarray | None = None, tol: float = 1e-9
) -> SegmentFactorization | None:
    """Factorise ``transition[a] = M[a] @ V`` with two vertex distributions, or return ``None``.

    Parameters
    ----------
    transition : ndarray, shape (n_actions, n_hidden, n_hidden)
        Transition probabilities ``transition[a, z, z']``.
    anchor : ndarray, optional
        A belief; the vertex closest to it becomes ``v1`` (so that it has ``g`` close to 1).
    tol : float
        Largest reconstruction error accepted.

    Returns
    -------
    SegmentFactorization or None
        ``None`` when some transition row is off the segment by more than ``tol``.
    """
    T = np.asarray(transition, dtype=float)
    rows = T.reshape(-1, T.shape[-1])
    centre = rows.mean(axis=0)
    dev = rows - centre
    if np.abs(dev).max() <= tol:  # all rows equal: any g works; use v1 = v2 = that row
        V = np.stack([rows[0], rows[0]])
        M = np.zeros((*T.shape[:2], 2))
        M[..., 0] = 1.0
        return SegmentFactorization(V, M)
    _, _, vt = np.linalg.svd(dev, full_matrices=False)
    proj = dev @ vt[0]
    v_hi, v_lo = rows[int(np.argmax(proj))], rows[int(np.argmin(proj))]
    if anchor is not None and np.linalg.norm(np.asarray(anchor) - v_lo) < np.linalg.norm(
        np.asarray(anchor) - v_hi
    ):
        v_hi, v_lo = v_lo, v_hi
    d = v_hi - v_lo
    g = (rows - v_lo) @ d / float(d @ d)
    recon = g[:, None] * v_hi + (1 - g[:, None]) * v_lo
    if np.abs(recon - rows).max() > tol or g.min() < -tol or g.max() > 1 + tol:
        return None
    g = np.clip(g, 0.0, 1.0)
    M = np.stack([g, 1 - g], axis=-1).reshape((*T.shape[:2], 2))
    return SegmentFactorization(np.stack([v_hi, v_lo]), M)


def upper_envelope(at1: Any, at0: Any) -> tuple[np.ndarray, np.ndarray]:
    """Upper envelope on ``[0, 1]`` of lines ``f_k(g) = at0[k] + (at1[k] − at0[k]) g``.

    Parameters
    ----------
    at1, at0 : array-like, shape (n_lines,)
        Values of the lines at ``g = 1`` and ``g = 0``.

    Returns
    -------
    keep : ndarray of int
        Indices of the lines on the envelope, ordered left to right.
    breaks : ndarray, shape (len(keep) - 1,)
        Interior breakpoints; line ``keep[i]`` is maximal on ``[breaks[i-1], breaks[i]]``.
    """
    at1 = np.asarray(at1, dtype=float)
    at0 = np.asarray(at0, dtype=float)
    if at1.size == 0:
        raise InvalidParameterError("upper_envelope needs at least one line")
    slope = at1 - at0
    scale = max(1.0, float(np.abs(at0).max()), float(np.abs(at1).max()))
    eps = 1e-13 * scale
    # sort by slope, then intercept (descending) so that the first of equal slopes is the best
    order = np.lexsort((-at0, slope))
    hull: list[int] = []
    starts: list[float] = []  # g from which hull[i] is maximal
    last_slope = None
    for k in order:
        s_k, b_k = slope[k], at0[k]
        if last_slope is not None and abs(s_k - last_slope) <= eps:
            continue  # same slope, lower-or-equal intercept
        last_slope = s_k
        while hull:
            j = hull[-1]
            # intersection of line j and k: b_j + s_j g = b_k + s_k g
            x = (at0[j] - b_k) / (s_k - slope[j])
            if x <= starts[-1] + 1e-15 or (len(hull) == 1 and x <= 0.0):
                hull.pop()
                starts.pop()
                continue
            break
        if not hull:
            hull.append(int(k))
            starts.append(-np.inf)
            continue
        j = hull[-1]
        x = (at0[j] - b_k) / (s_k - slope[j])
        if x >= 1.0:
            continue  # line k only wins right of 1
        hull.append(int(k))
        starts.append(float(x))
    # drop lines that are maximal only left of 0
    starts_arr = np.asarray(starts[1:], dtype=float)
    first = int(np.searchsorted(starts_arr, 0.0, side="right"))
    keep = np.asarray(hull[first:], dtype=np.int64)
    breaks = starts_arr[first:]
    return keep, breaks


def eval_envelope(at1: np.ndarray, at0: np.ndarray, breaks: np.ndarray, x: Any) -> tuple[Any, Any]:
    """Value of the envelope ``(at1, at0, breaks)`` of :func:`upper_envelope` at ``x``, and the line used there."""
    k = np.searchsorted(breaks, x, side="right")
    return at0[k] + (at1[k] - at0[k]) * x, k
