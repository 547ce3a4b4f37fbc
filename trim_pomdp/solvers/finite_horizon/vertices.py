"""Low-rank dynamics with ``K ≥ 3`` vertex distributions, stick-breaking coordinates and tensor-grid upper bounds.

If every transition row is a convex combination of ``K`` vertex distributions, ``transition[a] = M[a] @ V``, every
predicted belief from epoch 2 on is ``λ @ V`` for a point ``λ`` of the ``(K − 1)``-simplex, and the value before an
observation is a convex function of ``λ``. The TRIM-POMDP with ``D`` difficulty classes has ``K = D + 1``: one
vertex per class (the class's next proposal, right with probability ``p_w(d)``) and the shared "prefix lost" state.

Upper bounds live on rectilinear grids in *stick-breaking* coordinates ``x ∈ [0, 1]^(K−1)``::

    λ_1 = x_1,  λ_k = x_k (1 − x_1) … (1 − x_{k−1}),  λ_K = (1 − x_1) … (1 − x_{K−1}).

Each ``λ_k`` is affine in each ``x_j`` when the others are fixed, so a function convex in ``λ`` is convex along
every coordinate axis of ``x``, and multilinear interpolation of such a function on any rectilinear grid lies above
it (by induction over the axes: the chord along one axis is above the function, and the weights are
non-negative). Interpolating *upper bounds* at the grid nodes therefore gives an upper bound everywhere, which is
what makes the solver's upper bound certified (:mod:`~.vertex_solver`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import nnls

from trim_pomdp.exceptions import InvalidParameterError

__all__ = [
    "TensorGrid",
    "VertexFactorization",
    "from_stick",
    "stick_columns",
    "to_stick",
    "vertex_factorization",
]


@dataclass
class VertexFactorization:
    """``transition[a] = M[a] @ V``: every transition row is a mixture of the ``K`` rows of ``V``.

    Attributes
    ----------
    V : ndarray, shape (K, n_hidden)
        The vertex distributions.
    M : ndarray, shape (n_actions, n_hidden, K)
        ``M[a, z]``: the mixture weights of row ``transition[a, z]`` (non-negative, summing to 1).
    """

    V: np.ndarray
    M: np.ndarray

    @property
    def n_vertices(self) -> int:
        """``K``, the number of vertex distributions."""
        return int(self.V.shape[0])


def _convex_weights(rows: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative weights summing to 1 with ``weights @ rows ≈ target``, and the residual (NNLS)."""
    scale = 1e3  # weight of the sum-to-one row
    A = np.vstack([rows.T, scale * np.ones(rows.shape[0])])
    b = np.concatenate([target, [scale]])
    w, _ = nnls(A, b)
    return w, float(np.abs(w @ rows - target).max() + abs(w.sum() - 1.0))


def vertex_factorization(
    transition: np.ndarray, vertices: np.ndarray | None = None, tol: float = 1e-9, max_vertices: int = 6
) -> VertexFactorization | None:
    """Factorise ``transition[a] = M[a] @ V`` with few vertex distributions, or return ``None``.

    Parameters
    ----------
    transition : ndarray, shape (n_actions, n_hidden, n_hidden)
    vertices : ndarray, shape (K, n_hidden), optional
        The vertex distributions to use (their order fixes the stick-breaking coordinates: the first vertex is
        the first coordinate). Default: the extreme points of the set of transition rows, in order of appearance.
    tol : float
        Largest reconstruction error accepted.
    max_vertices : int
        Give up (return ``None``) beyond this many vertices.

    Returns
    -------
    VertexFactorization or None
        ``None`` when some row is not a mixture of the vertices, or there are more than ``max_vertices``.
    """
    T = np.asarray(transition, dtype=float)
    rows = T.reshape(-1, T.shape[-1])
    if vertices is None:
        uniq: list[np.ndarray] = []
        for r in rows:
            if not any(np.abs(r - u).max() <= tol for u in uniq):
                uniq.append(r)
        cand = np.array(uniq)
        keep = []
        for k in range(len(cand)):
            others = np.delete(cand, k, axis=0)
            if others.shape[0] == 0 or _convex_weights(others, cand[k])[1] > tol:
                keep.append(k)
        V = cand[keep]
    else:
        V = np.asarray(vertices, dtype=float)
        if V.ndim != 2 or V.shape[1] != T.shape[-1]:
            raise InvalidParameterError(f"vertices must have shape (K, {T.shape[-1]}), got {V.shape}")
    if V.shape[0] > max_vertices:
        return None
    M = np.empty((rows.shape[0], V.shape[0]))
    for j, r in enumerate(rows):
        w, err = _convex_weights(V, r)
        if err > max(tol, 1e-12) * 10:
            return None
        M[j] = np.clip(w, 0.0, None) / max(w.sum(), 1e-300)
    return VertexFactorization(V, M.reshape((*T.shape[:2], V.shape[0])))


def to_stick(lam: np.ndarray) -> np.ndarray:
    """Stick-breaking coordinates ``x (…, K − 1)`` of points ``λ (…, K)`` of the simplex (rows summing to 1)."""
    lam = np.asarray(lam, dtype=float)
    K = lam.shape[-1]
    x = np.empty((*lam.shape[:-1], K - 1))
    rest = np.ones(lam.shape[:-1])
    for k in range(K - 1):
        ok = rest > 1e-15
        x[..., k] = np.where(ok, lam[..., k] / np.where(ok, rest, 1.0), 0.0)
        rest = rest - lam[..., k]
    return np.clip(x, 0.0, 1.0)


def stick_columns(lam: np.ndarray, total: np.ndarray) -> list[np.ndarray]:
    """Stick-breaking coordinates, one array per axis, of unnormalised points given as rows ``lam (K, n)``
    with masses ``total (n,)`` (``λ / total`` need not be formed)."""
    rest = np.array(total, dtype=float, copy=True)
    out = []
    for k in range(lam.shape[0] - 1):
        ok = rest > 1e-15 * total
        x = np.divide(lam[k], rest, out=np.zeros_like(rest), where=ok)
        np.clip(x, 0.0, 1.0, out=x)
        out.append(x)
        rest -= lam[k]
    return out


def from_stick(x: np.ndarray) -> np.ndarray:
    """Points ``λ (…, K)`` of the simplex from stick-breaking coordinates ``x (…, K − 1)``."""
    x = np.asarray(x, dtype=float)
    K = x.shape[-1] + 1
    lam = np.empty((*x.shape[:-1], K))
    rest = np.ones(x.shape[:-1])
    for k in range(K - 1):
        lam[..., k] = x[..., k] * rest
        rest = rest * (1.0 - x[..., k])
    lam[..., K - 1] = rest
    return lam


class TensorGrid:
    """A rectilinear grid on ``[0, 1]^m`` (one sorted axis per dimension, each from 0 to 1) and its nodes.

    Parameters
    ----------
    axes : sequence of 1-D arrays
        Grid coordinates per dimension; each must start at 0, end at 1 and increase strictly.
    """

    def __init__(self, axes: Sequence[Any]):
        self.axes = [np.asarray(a, dtype=float) for a in axes]
        for a in self.axes:
            if a.ndim != 1 or a.size < 2 or a[0] != 0.0 or a[-1] != 1.0 or np.any(np.diff(a) <= 0):
                raise InvalidParameterError("every grid axis must increase strictly from 0 to 1")
        self.shape = tuple(a.size for a in self.axes)
        self.strides = np.array([int(np.prod(self.shape[j + 1 :])) for j in range(len(self.shape))])
        m = len(self.axes)
        self._corners = np.array([[(c >> j) & 1 for j in range(m)] for c in range(2**m)], dtype=np.int64)

    @property
    def ndim(self) -> int:
        """Number of dimensions ``m``."""
        return len(self.axes)

    @property
    def size(self) -> int:
        """Number of nodes."""
        return int(np.prod(self.shape))

    def nodes(self) -> np.ndarray:
        """Coordinates ``(size, m)`` of the nodes, in C order of :attr:`shape`."""
        mesh = np.meshgrid(*self.axes, indexing="ij")
        return np.stack([g.reshape(-1) for g in mesh], axis=1)

    def locate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat node indices ``(n, 2^m)`` of the cell around each point of ``x (n, m)`` and their multilinear
        weights ``(n, 2^m)`` (non-negative, summing to 1). Corner ``c`` has bit ``j`` set on the upper side of
        axis ``j``."""
        x = np.asarray(x, dtype=float)
        idx, w = self.locate_columns([x[:, j] for j in range(self.ndim)])
        return idx.T, w.T

    def locate_columns(self, cols: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`locate` with the coordinates given as one array per axis, and the results transposed:
        ``(2^m, n)`` indices and weights (rows are contiguous, which is what the backups need)."""
        n = cols[0].shape[0]
        nc = 1 << self.ndim
        idx = np.empty((nc, n), dtype=np.int64)
        w = np.empty((nc, n))
        base = np.zeros(n, dtype=np.int64)
        fracs = []
        for j, a in enumerate(self.axes):
            xj = cols[j]
            k = a.searchsorted(xj, side="right")
            k -= 1
            np.clip(k, 0, a.size - 2, out=k)
            lo = a[k]
            f = xj - lo
            f /= a[k + 1] - lo
            np.clip(f, 0.0, 1.0, out=f)
            base += k * int(self.strides[j])
            fracs.append(f)
        idx[0] = base
        w[0] = 1.0
        width = 1
        for j, f in enumerate(fracs):
            np.add(idx[:width], int(self.strides[j]), out=idx[width : 2 * width])
            np.multiply(w[:width], f, out=w[width : 2 * width])
            w[:width] *= 1.0 - f
            width *= 2
        return idx, w

    def interpolate(self, values: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Multilinear interpolation of node ``values (size,)`` at the points ``x (n, m)``."""
        idx, w = self.locate_columns([np.asarray(x, dtype=float)[:, j] for j in range(self.ndim)])
        return (values[idx] * w).sum(axis=0)
