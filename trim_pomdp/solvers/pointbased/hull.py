"""Convex-hull interpolation of upper-bound points on small supports (faces of the belief simplex).

The sawtooth bound of :class:`~trim_pomdp.solvers.pointbased.bounds.SawtoothUpper` combines the planes with one
stored point at a time. On a face of the simplex with few states (beliefs supported on ``k <= 3`` states, as
in models whose observations reveal all but a small hidden part of the state) the best bound that the stored
points imply is affordable instead: the lower convex envelope of the points. With the face's corners included
(their values from the planes), it is the maximum of the planes through the lower facets of the convex hull
of ``(b, v)``::

    V*(b) <= max_f w_f . b        for every belief b on the face,

valid because ``b`` is a convex combination of the vertices of the facet above it and ``V*`` is convex. The
facets come from Qhull (scipy.spatial.ConvexHull); a face whose points are degenerate (too few, coplanar) uses
the plane through its corners. Points on sub-faces (e.g. corners and edges of a triangle) join the hull of
every face that contains them.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["FaceHulls"]


class FaceHulls:
    """Stored (belief, upper value) points grouped by support, and the lower envelope of each group.

    Parameters
    ----------
    corner : ndarray, shape (S,)
        Valid upper bounds on ``V*`` at the corners ``e_s`` (e.g. the planes' maxima).
    max_support : int, default 3
        Only supports with at most this many states get a hull.
    """

    def __init__(self, corner: np.ndarray, max_support: int = 3):
        self.corner = np.asarray(corner, float).copy()
        self.max_support = int(max_support)
        self._pts: dict[tuple[int, ...], list[tuple[np.ndarray, float]]] = {}
        self._planes: dict[tuple[int, ...], np.ndarray] = {}
        self._dirty: set[tuple[int, ...]] = set()
        self._key = np.random.default_rng(0).integers(1, 2**62, size=len(self.corner), dtype=np.int64)
        self._by_key: dict[int, tuple[int, ...]] = {}
        self._lowered: set[int] = set()  # corners below their initial value (points on one state)

    def __len__(self) -> int:
        return sum(len(p) for p in self._pts.values())

    def add(self, idx: np.ndarray, vals: np.ndarray, v: float) -> None:
        """Store ``V*(b) <= v`` for the belief ``b`` on the support ``idx`` (ignored on large supports)."""
        k = len(idx)
        if k > self.max_support:
            return
        U = tuple(int(s) for s in idx)
        if k == 1:
            self.corner[U[0]] = min(self.corner[U[0]], v)
            self._lowered.add(U[0])
        else:
            self._pts.setdefault(U, []).append((np.asarray(vals, float).copy(), float(v)))
        # every face containing U must be rebuilt; only the ones already built are known
        for W in self._planes:
            if set(U) <= set(W):
                self._dirty.add(W)
        self._dirty.add(U)

    # ------------------------------------------------------------------------------------------------------
    def _build(self, U: tuple[int, ...]) -> np.ndarray:
        k = len(U)
        c = self.corner[list(U)]
        P, v = [np.eye(k)], [c]
        pos = {s: j for j, s in enumerate(U)}
        for r in range(2, k + 1):
            for sub in itertools.combinations(U, r):
                pts = self._pts.get(sub)
                if not pts:
                    continue
                cols = [pos[s] for s in sub]
                block = np.zeros((len(pts), k))
                block[:, cols] = np.array([p for p, _ in pts])
                P.append(block)
                v.append(np.array([val for _, val in pts]))
        P_all, v_all = np.vstack(P), np.concatenate(v)
        # drop points above the corners' plane: they can never be on the lower envelope
        keep = v_all < P_all @ c - 1e-15
        keep[:k] = True
        P_all, v_all = P_all[keep], v_all[keep]
        planes = _lower_facet_planes(P_all, v_all) if len(P_all) > k else np.zeros((0, k))
        if len(planes) == 0:  # no point below the corners' plane, or a degenerate set: the chord
            planes = c[None, :]
        self._planes[U] = planes
        self._dirty.discard(U)
        return planes

    def _has_points(self, U: tuple[int, ...]) -> bool:
        """Whether a point is stored on ``U`` or on one of its faces (a lowered corner counts)."""
        return any(s in self._lowered for s in U) or any(
            sub in self._pts for r in range(2, len(U) + 1) for sub in itertools.combinations(U, r)
        )

    def planes(self, U: tuple[int, ...]) -> np.ndarray:
        """``(F, k)`` planes over the states of ``U``; the bound on the face is ``max_f w_f . b``."""
        if U in self._dirty or U not in self._planes:
            return self._build(U)
        return self._planes[U]

    def values(self, idx: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Hull bound at each row of ``B`` (beliefs on ``idx``).

        ``inf`` where the support is too large, or where no point lies on the support or a face of it and no
        corner of it was lowered (the chord of the initial corners, the planes' maxima, is never below the
        planes).
        """
        out = np.full(len(B), np.inf)
        if len(B) == 0:
            return out
        nzB = B > 0
        size = nzB.sum(axis=1)
        ok = np.flatnonzero((size >= 2) & (size <= self.max_support))
        if len(ok) == 0:
            return out
        keys = nzB[ok].astype(np.int64) @ self._key[idx]  # wraps on overflow: still a fine hash
        uk, inv = np.unique(keys, return_inverse=True)
        for g, key in enumerate(uk):
            rows = ok[inv == g]
            U = self._by_key.get(int(key))
            if U is None:
                U = tuple(int(s) for s in idx[nzB[rows[0]]])
                self._by_key[int(key)] = U
            if not self._has_points(U):  # only the initial corners: their chord never beats the planes
                continue
            cols = np.searchsorted(idx, U)
            Bu = B[np.ix_(rows, cols)]
            exact = np.abs(Bu.sum(axis=1) - B[rows].sum(axis=1)) <= 1e-12  # hash collisions: skip
            if not exact.all():
                rows, Bu = rows[exact], Bu[exact]
            out[rows] = (Bu @ self.planes(U).T).max(axis=1)
        return out


def _lower_facet_planes(P: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Planes (over the ``k`` states) through the lower facets of the hull of ``(P[:, :k-1], v)``."""
    from scipy.spatial import ConvexHull, QhullError

    k = P.shape[1]
    X = np.column_stack([P[:, : k - 1], v])
    try:
        hull = ConvexHull(X)
    except (QhullError, ValueError):
        return np.zeros((0, k))
    eq = hull.equations  # n_x . x + n_v v + d = 0, outward unit normals
    nv = eq[:, k - 1]
    low = nv < -1e-9
    if not low.any():
        return np.zeros((0, k))
    alpha = -eq[low, : k - 1] / nv[low, None]
    alpha0 = -eq[low, k] / nv[low]
    W = np.empty((int(low.sum()), k))
    W[:, : k - 1] = alpha0[:, None] + alpha
    W[:, k - 1] = alpha0
    return W + 1e-12 * (1.0 + np.abs(v).max())  # round-off margin: never below the exact facet plane
