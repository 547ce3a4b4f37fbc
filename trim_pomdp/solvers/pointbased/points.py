"""Stores of the (belief, upper value) points of the sawtooth upper bound.

* :class:`DensePoints` — dense rows, for models with few states; computes the whole sawtooth bound of a batch
  of beliefs in one fused pass (:meth:`DensePoints.bound`), which is what small models spend their time on.
* :class:`SparsePoints` — packed like CSR rows, for large models whose beliefs live on small supports; finds the
  (query, point) pairs whose supports nest without looking at the others.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DensePoints", "SparsePoints"]

#: The value of a disabled point: its bound ``φ v + ...`` is never the minimum (and ``0 · _DEAD`` is 0).
_DEAD = 1e300


class _ByBelief:
    """The index from a stored belief (its support and values as bytes) to its point, kept through compactions.

    The same belief is backed up many times (every trial through a node, every revisit of a merged one); its
    new, lower value replaces the old one in place instead of adding a point and testing every stored point
    for dominance (Tiger's 1,000 backups leave 37 beliefs).
    """

    def __init__(self) -> None:
        self._where: dict[bytes, int] = {}
        self._keys: list[bytes] = []

    _v: np.ndarray  # the stores' values, one per point

    def find(self, key: bytes) -> int | None:
        """Index of the live point stored at the belief ``key``, if any."""
        return self._where.get(key)

    def lower(self, i: int, v: float) -> None:
        """Give point ``i`` the lower value ``v`` (a new bound at the same belief dominates the old one)."""
        self._v[i] = min(float(self._v[i]), v)

    def _remember(self, key: bytes) -> None:
        self._where[key] = len(self._keys)
        self._keys.append(key)

    def _forget(self, drop: np.ndarray) -> None:
        for i in np.flatnonzero(drop).tolist():
            self._where.pop(self._keys[i], None)

    def _renumber(self, keep: np.ndarray) -> None:
        self._keys = [k for k, kept in zip(self._keys, keep.tolist(), strict=True) if kept]
        self._where = {k: i for i, k in enumerate(self._keys)}


class DensePoints(_ByBelief):
    """Stored upper-bound points as dense rows (for models with few states), with a fused sawtooth bound.

    Besides each point ``b_i``, its value and plane values, it keeps ``1 / b_i`` on the support and ``inf`` off
    it (so that ``φ_i(b) = min_s b(s) / b_i(s)`` is one product and one ``fmin``, which skips the ``0 · inf``
    of states outside both supports) and, per pair of planes, ``1 / (F_i[a] - F_i[a'])`` for the kinks of the
    residual bound. Dropped points are first only disabled (value ``+huge``, which never wins the minimum) and
    removed in batches.
    """

    def __init__(self, S: int, A: int, capacity: int = 512):
        super().__init__()
        self.S, self.A, self.N = S, A, 0
        ia, ib = np.triu_indices(A, k=1)
        self.pairs = (ia, ib)
        self._P = np.zeros((capacity, S))
        self._Pinv = np.zeros((capacity, S))
        self._v = np.empty(capacity)
        self.n_dead = 0
        self._F = np.empty((capacity, A))
        self._Dinv = np.zeros((capacity, len(ia)))
        self._n_supp = np.empty(capacity, dtype=np.int64)

    @property
    def live(self) -> int:
        """Number of stored points that are not disabled."""
        return self.N - self.n_dead

    def bound(self, Bf: np.ndarray, FB: np.ndarray, exact: bool) -> np.ndarray:
        """``min_i min_{0 <= φ <= φ_i(b)} φ v_i + max_a (FB[a] - φ F_i[a])`` for each full-length row of ``Bf``.

        Same as :func:`~trim_pomdp.solvers.pointbased.bounds._residual_bound` over all stored points (a point
        whose support is not inside the belief's gets ``φ_i = 0``, i.e. the planes' bound), in a dozen array
        operations.
        """
        n, S = self.N, self.S
        Pinv = self._Pinv[:n]
        with np.errstate(invalid="ignore"):  # 0 * inf off both supports: fmin skips the nan
            if S <= 8:  # numpy reduces short last axes slowly: loop over the few states instead
                phi = Bf[:, 0, None] * Pinv[None, :, 0]
                for s in range(1, S):
                    np.fmin(phi, Bf[:, s, None] * Pinv[None, :, s], out=phi)
            else:
                phi = np.fmin.reduce(Bf[:, None, :] * Pinv[None], axis=2)  # (Q, n)
        Fi, v = self._F[:n], self._v[:n]
        if exact or self.A <= 2:
            ia, ib = self.pairs
            kink = (FB[:, ia] - FB[:, ib])[:, None, :] * self._Dinv[None, :n]  # (Q, n, pairs)
            kink = np.minimum(np.maximum(kink, 0.0), phi[:, :, None])
            Phi = np.concatenate([phi[:, :, None], kink], axis=2)  # (Q, n, C)
        else:  # φ = φ_i(b) only
            Phi = phi[:, :, None]
        # g = Phi v + max_a (FB[a] - Phi F_i[a]), the max over the (few) planes as a loop of maxima
        FiT = Fi.T
        g = FB[:, 0, None, None] - Phi * FiT[0][None, :, None]
        for a in range(1, self.A):
            np.maximum(g, FB[:, a, None, None] - Phi * FiT[a][None, :, None], out=g)
        g += Phi * v[None, :, None]
        return g.reshape(len(Bf), -1).min(axis=1)

    def phi_new(self, idx: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored points whose support contains ``idx`` and ``φ_new(b_i) = min_s b_i(s) / new(s)``."""
        n = self.N
        sub = self._P[:n][:, idx]
        cand = np.flatnonzero(np.all(sub > 0, axis=1))
        return cand, (sub[cand] / vals).min(axis=1)

    def dominated(self, idx: np.ndarray, vals: np.ndarray, v: float, F: np.ndarray) -> np.ndarray:
        """Which stored points the new point ``(b, v)`` (plane values ``F``) dominates at every belief.

        Point ``i`` is dominated when the new point's residual bound at ``b_i`` is at most ``v_i`` (exact over
        all plane kinks); ``φ_new(b_i) = min_{s in supp b} b_i(s) / b(s)`` is 0 unless ``supp b ⊆ supp b_i``.
        """
        n = self.N
        psi = (self._P[:n][:, idx] * (1.0 / vals)).min(axis=1)  # (n,)
        Fi = self._F[:n]
        ia, ib = self.pairs
        den = F[ia] - F[ib]
        dinv = np.divide(1.0, den, out=np.zeros(len(den)), where=den != 0)
        kink = np.minimum(np.maximum((Fi[:, ia] - Fi[:, ib]) * dinv, 0.0), psi[:, None])  # (n, pairs)
        Phi = np.concatenate([psi[:, None], kink], axis=1)  # (n, C)
        g = Fi[:, 0, None] - Phi * F[0]
        for a in range(1, self.A):
            np.maximum(g, Fi[:, a, None] - Phi * F[a], out=g)
        h = (g + Phi * v).min(axis=1)
        live = self._v[:n]
        return (h <= live + 1e-15) & (live < _DEAD)

    def add(self, idx: np.ndarray, vals: np.ndarray, v: float, F: np.ndarray, key: bytes) -> None:
        """Store the point ``(b, v)`` with plane values ``F``; ``key`` identifies ``b`` (see :meth:`find`)."""
        if self.N == len(self._v):
            for name in ("_P", "_Pinv", "_F", "_Dinv"):
                arr = getattr(self, name)
                setattr(self, name, np.vstack([arr, np.zeros_like(arr)]))
            self._v = np.concatenate([self._v, np.empty_like(self._v)])
            self._n_supp = np.concatenate([self._n_supp, np.empty_like(self._n_supp)])
        i = self.N
        self._P[i] = 0.0
        self._P[i, idx] = vals
        self._Pinv[i] = np.inf
        self._Pinv[i, idx] = 1.0 / vals
        ia, ib = self.pairs
        den = F[ia] - F[ib]
        self._Dinv[i] = np.divide(1.0, den, out=np.zeros(len(den)), where=den != 0)
        self._v[i], self._F[i], self._n_supp[i] = v, F, len(idx)
        self._remember(key)
        self.N += 1

    def drop(self, drop: np.ndarray) -> None:
        """Disable the points in ``drop`` (their value becomes huge); compact once a quarter are disabled."""
        self._v[: self.N][drop] = _DEAD
        self._forget(drop)
        self.n_dead += int(drop.sum())
        if self.n_dead * 4 < self.N:
            return
        n = self.N
        keep = self._v[:n] < _DEAD
        m = int(keep.sum())
        for name in ("_P", "_Pinv", "_v", "_F", "_Dinv", "_n_supp"):
            arr = getattr(self, name)
            arr[:m] = arr[:n][keep]
        self._renumber(keep)
        self.N, self.n_dead = m, 0


class SparsePoints(_ByBelief):
    """Stored upper-bound points packed as CSR-like arrays (for large, sparse-belief models).

    Each point also keeps the first and last state of its support: a point can lie inside a query's support only
    if both are in it, a test that costs one lookup per point and leaves only the points near the query (the
    beliefs of a factored model with an observed variable sit in one block of states, and meet only the points
    of their block) for the entry-by-entry check.
    """

    def __init__(self, S: int, A: int, capacity: int = 1024):
        super().__init__()
        self.S, self.N, self.nnz = S, 0, 0
        self._ptr = np.zeros(capacity + 1, dtype=np.int64)
        self._v = np.empty(capacity)
        self._F = np.empty((capacity, A))
        self._lo = np.empty(capacity, dtype=np.int64)
        self._hi = np.empty(capacity, dtype=np.int64)
        self._alive = np.ones(capacity, dtype=bool)
        self.n_dead = 0
        self._idx = np.empty(8 * capacity, dtype=np.int64)
        self._val = np.empty(8 * capacity)
        self._inv = np.empty(8 * capacity)
        self._owner = np.empty(8 * capacity, dtype=np.int64)
        self._pos = np.full(S, -1, dtype=np.int64)

    @staticmethod
    def _entries(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions in the packed arrays of the entries of the points ``starts, lens``, and their offsets."""
        offs = np.cumsum(lens) - lens
        return np.repeat(starts - offs, lens) + np.arange(int(lens.sum())), offs

    def _inside(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The points whose support lies inside ``idx``, with their entries located in ``idx``.

        Returns ``(pts, lens, offs, cols, sel)``: the points, their support sizes and offsets in the packed
        selection, and for each selected entry its column in ``idx`` and its position in the packed arrays.
        """
        N, pos = self.N, self._pos
        pos[idx] = np.arange(len(idx))
        try:
            pts = np.flatnonzero((pos[self._lo[:N]] >= 0) & (pos[self._hi[:N]] >= 0) & self._alive[:N])
            lens = self._ptr[pts + 1] - self._ptr[pts]
            sel, offs = self._entries(self._ptr[pts], lens)
            col = pos[self._idx[sel]]
        finally:
            pos[idx] = -1
        missing = col < 0
        if missing.any():  # a state between the first and the last is not in idx
            owner = np.repeat(np.arange(len(pts)), lens)
            bad = np.zeros(len(pts), bool)
            bad[owner[missing]] = True
            keep_e = ~bad[owner]
            pts, lens, sel, col = pts[~bad], lens[~bad], sel[keep_e], col[keep_e]
            offs = np.cumsum(lens) - lens
        return pts, lens, offs, col, sel

    def pairs(self, idx: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (query, point) pairs where the point's support lies inside the query's, and ``φ`` for each.

        Only the points inside ``idx`` are looked at, and of those only the ones whose first and last state
        lie between the query's first and last: the work grows with the number of such pairs, not with
        ``Q x N`` (the beliefs of factored and layered models sit on small supports, and each meets only the
        points of its own). A pair whose ``φ`` is 0 (the point's support is not inside the query's after all)
        adds nothing to the planes' bound and is left out.
        """
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        if self.nnz == 0 or len(B) == 0:
            return empty
        pts, lens, offs, cols_e, sel = self._inside(idx)
        if len(pts) == 0:
            return empty
        nz = B > 0
        first = nz.argmax(axis=1)
        last = nz.shape[1] - 1 - nz[:, ::-1].argmax(axis=1)
        near = (cols_e[offs][None, :] >= first[:, None]) & (cols_e[offs + lens - 1][None, :] <= last[:, None])
        q, j = np.nonzero(near)
        if len(q) == 0:
            return empty
        lj = lens[j]
        e, pair_offs = self._entries(offs[j], lj)
        flat = np.ascontiguousarray(B).ravel()
        ratio = flat[np.repeat(q * B.shape[1], lj) + cols_e[e]] * self._inv[sel[e]]
        phi = np.minimum.reduceat(ratio, pair_offs)
        ok = phi > 0
        return q[ok], pts[j[ok]], phi[ok]

    def phi_new(self, idx: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored points whose support contains ``idx`` and ``φ_new(b_i) = min_s b_i(s) / new(s)``."""
        N = self.N
        near = np.flatnonzero((self._lo[:N] <= idx[0]) & (self._hi[:N] >= idx[-1]) & self._alive[:N])
        if len(near) == 0:
            return near, np.zeros(0)
        lens = self._ptr[near + 1] - self._ptr[near]
        sel, offs = self._entries(self._ptr[near], lens)
        dense_new = np.zeros(self.S)
        dense_new[idx] = vals
        mine = dense_new[self._idx[sel]]
        hit = mine > 0
        ok = np.add.reduceat(hit.astype(np.int64), offs) == len(idx)
        if not ok.any():
            return near[:0], np.zeros(0)
        ratio = np.full(len(sel), np.inf)
        ratio[hit] = self._val[sel][hit] / mine[hit]
        return near[ok], np.minimum.reduceat(ratio, offs)[ok]

    def add(self, idx: np.ndarray, vals: np.ndarray, v: float, F: np.ndarray, key: bytes) -> None:
        """Store the point ``(b, v)`` with plane values ``F``; ``key`` identifies ``b`` (see :meth:`find`)."""
        k = len(idx)
        if self.N + 1 >= len(self._v):
            grow = len(self._v)
            self._ptr = np.concatenate([self._ptr, np.zeros(grow, dtype=np.int64)])
            self._v = np.concatenate([self._v, np.empty(grow)])
            self._F = np.vstack([self._F, np.empty_like(self._F)])
            self._lo = np.concatenate([self._lo, np.empty_like(self._lo)])
            self._hi = np.concatenate([self._hi, np.empty_like(self._hi)])
            self._alive = np.concatenate([self._alive, np.ones_like(self._alive)])
        if self.nnz + k > len(self._idx):
            grow = max(len(self._idx), k)
            self._idx = np.concatenate([self._idx, np.empty(grow, dtype=np.int64)])
            self._val = np.concatenate([self._val, np.empty(grow)])
            self._inv = np.concatenate([self._inv, np.empty(grow)])
            self._owner = np.concatenate([self._owner, np.empty(grow, dtype=np.int64)])
        lo, hi = self.nnz, self.nnz + k
        self._idx[lo:hi], self._val[lo:hi], self._inv[lo:hi] = idx, vals, 1.0 / vals
        self._owner[lo:hi] = self.N
        self._v[self.N], self._F[self.N] = v, F
        self._lo[self.N], self._hi[self.N] = idx[0], idx[-1]
        self._alive[self.N] = True
        self._remember(key)
        self.N += 1
        self.nnz = hi
        self._ptr[self.N] = hi

    @property
    def live(self) -> int:
        """Number of stored points that are not disabled."""
        return self.N - self.n_dead

    def drop(self, drop: np.ndarray) -> None:
        """Disable the points in ``drop``; compact the packed arrays once a quarter are disabled."""
        N = self.N
        self._alive[:N][drop] = False
        self._forget(drop)
        self.n_dead += int(drop.sum())
        if self.n_dead * 4 >= N:
            self._compact(self._alive[:N].copy())

    def _compact(self, keep_pts: np.ndarray) -> None:
        n, N = self.nnz, self.N
        keep_nz = keep_pts[self._owner[:n]]
        lens = np.diff(self._ptr[: N + 1])[keep_pts]
        m = int(keep_pts.sum())
        nn = int(keep_nz.sum())
        for arr in (self._idx, self._val, self._inv):
            arr[:nn] = arr[:n][keep_nz]
        self._owner[:nn] = np.repeat(np.arange(m), lens)
        self._v[:m], self._F[:m] = self._v[:N][keep_pts], self._F[:N][keep_pts]
        self._lo[:m], self._hi[:m] = self._lo[:N][keep_pts], self._hi[:N][keep_pts]
        self._ptr[1 : m + 1] = np.cumsum(lens)
        self._alive[:m] = True
        self._renumber(keep_pts)
        self.N, self.nnz, self.n_dead = m, nn, 0
