"""The two value-function bounds of the point-based solver.

* :class:`AlphaSet` — lower bound ``V(b) = max_k alpha_k . b`` with one action per vector; pointwise-dominance
  pruning on insertion and pruning to the vectors that are maximal at a set of witness beliefs.
* :class:`SawtoothUpper` — upper bound: ``min`` of the fast-informed-bound planes and the sawtooth
  interpolation of corner values and stored belief/value points (HSVI2/SARSOP).

Batches of beliefs are passed as ``(idx, B)``: a common support ``idx`` (global state indices) and a matrix
``B`` whose rows are beliefs restricted to that support, so no computation touches states outside it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AlphaSet", "SawtoothUpper"]


class AlphaSet:
    """A growable set of alpha vectors with actions (the lower bound)."""

    def __init__(self, n_states: int, capacity: int = 256):
        self.S = n_states
        self._G = np.empty((capacity, n_states))
        self._act = np.empty(capacity, dtype=np.int64)
        self.K = 0

    @property
    def alphas(self) -> np.ndarray:
        return self._G[: self.K]

    @property
    def actions(self) -> np.ndarray:
        return self._act[: self.K]

    def values(self, idx: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Max value and argmax vector of each row of ``B`` (beliefs on support ``idx``)."""
        V = B @ self._G[: self.K, idx].T
        k = V.argmax(axis=1)
        return V[np.arange(len(k)), k], k

    def add(self, alpha: np.ndarray, action: int, tol: float = 1e-10) -> bool:
        """Insert unless pointwise dominated; drop vectors the new one dominates. Returns whether inserted."""
        G = self._G[: self.K]
        if self.K and np.any(np.all(G >= alpha - tol, axis=1)):
            return False
        if self.K:
            keep = ~np.all(alpha >= G - tol, axis=1)
            if not keep.all():
                n = int(keep.sum())
                self._G[:n] = G[keep]
                self._act[:n] = self._act[: self.K][keep]
                self.K = n
        if self.K == len(self._G):
            self._G = np.concatenate([self._G, np.empty_like(self._G)])
            self._act = np.concatenate([self._act, np.empty_like(self._act)])
        self._G[self.K] = alpha
        self._act[self.K] = action
        self.K += 1
        return True

    def prune_to_witnesses(self, W) -> int:
        """Keep only vectors maximal at some witness belief (columns of the sparse ``S x n`` matrix ``W``)."""
        if self.K <= 1:
            return 0
        V = W.T @ self._G[: self.K].T  # (n_witnesses, K)
        V = np.asarray(V)
        keep = np.zeros(self.K, bool)
        keep[V.argmax(axis=1)] = True
        n_removed = int(self.K - keep.sum())
        if n_removed:
            n = int(keep.sum())
            self._G[:n] = self._G[: self.K][keep]
            self._act[:n] = self._act[: self.K][keep]
            self.K = n
        return n_removed


class _DensePoints:
    """Stored upper-bound points as dense rows (for models with few states)."""

    def __init__(self, S: int, capacity: int = 512):
        self.S, self.N = S, 0
        self._P = np.zeros((capacity, S))
        self._v = np.empty(capacity)
        self._c = np.empty(capacity)
        self._n_supp = np.empty(capacity, dtype=np.int64)

    def recompute_c(self, corner: np.ndarray) -> None:
        n = self.N
        self._c[:n] = self._v[:n] - self._P[:n] @ corner

    def min_phi_c(self, idx: np.ndarray, B: np.ndarray) -> np.ndarray:
        n = self.N
        P = self._P[:n]
        inside = np.count_nonzero(P[:, idx], axis=1) == self._n_supp[:n]
        pts = np.flatnonzero(inside & (self._c[:n] < 0))
        if len(pts) == 0:
            return np.zeros(len(B))
        Pi = P[np.ix_(pts, idx)]  # (n, k)
        # a point helps a belief only if its support lies inside the belief's support
        ok = ((B > 0).astype(float) @ (Pi > 0).T.astype(float)) >= self._n_supp[pts] - 0.5  # (Q, n)
        cols = np.flatnonzero(ok.any(axis=0))
        if len(cols) == 0:
            return np.zeros(len(B))
        Pi, ok, pts = Pi[cols], ok[:, cols], pts[cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = B[:, None, :] / Pi[None, :, :]  # b(s)/b_i(s): inf or nan off the support of b_i
        phi = np.fmin.reduce(ratio, axis=2)  # nan-ignoring min over the support of b_i
        phi[~ok] = 0.0
        return np.minimum(0.0, np.min(phi * self._c[pts], axis=1))

    def add(self, idx: np.ndarray, vals: np.ndarray, v: float, c: float) -> None:
        if self.N == len(self._v):
            self._P = np.vstack([self._P, np.zeros_like(self._P)])
            self._v = np.concatenate([self._v, np.empty_like(self._v)])
            self._c = np.concatenate([self._c, np.empty_like(self._c)])
            self._n_supp = np.concatenate([self._n_supp, np.empty_like(self._n_supp)])
        self._P[self.N] = 0.0
        self._P[self.N, idx] = vals
        self._v[self.N], self._c[self.N], self._n_supp[self.N] = v, c, len(idx)
        self.N += 1

    def drop_dominated(self, idx: np.ndarray, vals: np.ndarray, c_new: float) -> int:
        """Remove stored points that the new point (support ``idx``) dominates everywhere."""
        n = self.N
        if n == 0:
            return 0
        phi = (self._P[:n][:, idx] / vals).min(axis=1)  # φ_new(b_i)
        drop = phi * c_new <= self._c[:n] + 1e-15
        k = int(drop.sum())
        if k:
            keep = ~drop
            m = n - k
            self._P[:m] = self._P[:n][keep]
            self._v[:m], self._c[:m], self._n_supp[:m] = (
                self._v[:n][keep],
                self._c[:n][keep],
                self._n_supp[:n][keep],
            )
            self.N = m
        return k


class _SparsePoints:
    """Stored upper-bound points packed as CSR-like arrays (for large, sparse-belief models)."""

    def __init__(self, S: int, capacity: int = 1024):
        self.S, self.N, self.nnz = S, 0, 0
        self._ptr = np.zeros(capacity + 1, dtype=np.int64)
        self._v = np.empty(capacity)
        self._c = np.empty(capacity)
        self._idx = np.empty(8 * capacity, dtype=np.int64)
        self._val = np.empty(8 * capacity)
        self._inv = np.empty(8 * capacity)
        self._owner = np.empty(8 * capacity, dtype=np.int64)
        self._pos = np.full(S, -1, dtype=np.int64)

    def recompute_c(self, corner: np.ndarray) -> None:
        if self.N:
            n = self.nnz
            bv = np.add.reduceat(self._val[:n] * corner[self._idx[:n]], self._ptr[: self.N])
            self._c[: self.N] = self._v[: self.N] - bv

    def min_phi_c(self, idx: np.ndarray, B: np.ndarray) -> np.ndarray:
        n = self.nnz
        pos = self._pos
        pos[idx] = np.arange(len(idx))
        col = pos[self._idx[:n]]
        pos[idx] = -1
        usable = self._c[: self.N] < 0
        missing = col < 0
        if missing.any():
            usable[self._owner[:n][missing]] = False
        pts = np.flatnonzero(usable)
        if len(pts) == 0:
            return np.zeros(len(B))
        starts, ends = self._ptr[pts], self._ptr[pts + 1]
        lens = ends - starts
        offs = np.concatenate([[0], np.cumsum(lens)[:-1]])
        sel = np.repeat(starts - offs, lens) + np.arange(int(lens.sum()))
        ratio = B[:, col[sel]] * self._inv[sel]  # (Q, nnz)
        phi = np.minimum.reduceat(ratio, offs, axis=1)  # (Q, n_usable)
        return np.minimum(0.0, np.min(phi * self._c[pts], axis=1))

    def add(self, idx: np.ndarray, vals: np.ndarray, v: float, c: float) -> None:
        k = len(idx)
        if self.N + 1 >= len(self._v):
            grow = len(self._v)
            self._ptr = np.concatenate([self._ptr, np.zeros(grow, dtype=np.int64)])
            self._v = np.concatenate([self._v, np.empty(grow)])
            self._c = np.concatenate([self._c, np.empty(grow)])
        if self.nnz + k > len(self._idx):
            grow = max(len(self._idx), k)
            self._idx = np.concatenate([self._idx, np.empty(grow, dtype=np.int64)])
            self._val = np.concatenate([self._val, np.empty(grow)])
            self._inv = np.concatenate([self._inv, np.empty(grow)])
            self._owner = np.concatenate([self._owner, np.empty(grow, dtype=np.int64)])
        lo, hi = self.nnz, self.nnz + k
        self._idx[lo:hi], self._val[lo:hi], self._inv[lo:hi] = idx, vals, 1.0 / vals
        self._owner[lo:hi] = self.N
        self._v[self.N], self._c[self.N] = v, c
        self.N += 1
        self.nnz = hi
        self._ptr[self.N] = hi

    def drop_dominated(self, idx: np.ndarray, vals: np.ndarray, c_new: float) -> int:
        n, N = self.nnz, self.N
        if N == 0:
            return 0
        # φ_new(b_i) = min_{s in supp(new)} b_i(s) / new(s); 0 unless supp(new) ⊆ supp(b_i)
        dense_new = np.zeros(self.S)
        dense_new[idx] = vals
        hit = dense_new[self._idx[:n]] > 0
        cnt = np.bincount(self._owner[:n][hit], minlength=N)
        cand = np.flatnonzero(cnt == len(idx))
        if len(cand) == 0:
            return 0
        ratio = np.full(n, np.inf)
        ratio[hit] = self._val[:n][hit] / dense_new[self._idx[:n]][hit]
        phi = np.minimum.reduceat(ratio, self._ptr[:N])
        drop = np.zeros(N, bool)
        drop[cand] = phi[cand] * c_new <= self._c[:N][cand] + 1e-15
        k = int(drop.sum())
        if k:
            keep_pts = ~drop
            keep_nz = keep_pts[self._owner[:n]]
            lens = np.diff(self._ptr[: N + 1])[keep_pts]
            m = N - k
            nn = int(keep_nz.sum())
            for arr in (self._idx, self._val, self._inv):
                arr[:nn] = arr[:n][keep_nz]
            self._owner[:nn] = np.repeat(np.arange(m), lens)
            self._v[:m], self._c[:m] = self._v[:N][keep_pts], self._c[:N][keep_pts]
            self._ptr[1 : m + 1] = np.cumsum(lens)
            self.N, self.nnz = m, nn
        return k


class SawtoothUpper:
    """Upper bound ``min(max_a fib[a] . b, sawtooth(b))`` from corner values and stored belief-value points.

    Parameters
    ----------
    fib : ndarray, shape (A, S)
        Valid upper-bound planes (``V*(b) <= max_a fib[a] . b``), e.g. fast-informed-bound Q-vectors.
    dense : bool, optional
        Store points as dense rows (fast for few states) or packed sparse (default: dense when ``S <= 256``).
    """

    def __init__(self, fib: np.ndarray, dense: bool | None = None):
        self.fib = np.asarray(fib, float)
        self.corner = self.fib.max(axis=0).copy()  # V(e_s) <= corner[s]
        self.S = self.fib.shape[1]
        if dense is None:
            dense = self.S <= 256
        self.points = _DensePoints(self.S) if dense else _SparsePoints(self.S)
        self.n_dropped = 0

    @property
    def n_points(self) -> int:
        return self.points.N

    def values(self, idx: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Upper bound at each row of ``B`` (beliefs on support ``idx``)."""
        vc = B @ self.corner[idx]
        fib = (B @ self.fib[:, idx].T).max(axis=1)
        out = np.minimum(vc, fib)
        if not self.points.N:
            return out
        return np.minimum(out, vc + self.points.min_phi_c(idx, B))

    def value(self, idx: np.ndarray, vals: np.ndarray) -> float:
        return float(self.values(idx, vals[None, :])[0])

    def add(
        self,
        idx: np.ndarray,
        vals: np.ndarray,
        v: float,
        min_gain: float = 1e-12,
        current: float | None = None,
    ) -> bool:
        """Store the point ``(b, v)`` (``b`` on support ``idx``) if it tightens the bound at ``b``.

        ``current`` may pass the bound's present value at ``b`` when the caller has it.

        Stored points that the new one dominates everywhere are dropped (exact: ``φ_new(b_i) c_new <= c_i``
        implies the new point's sawtooth lies below point ``i``'s at every belief).
        """
        if len(idx) == 1:
            s = int(idx[0])
            if v < self.corner[s] - min_gain:
                self.corner[s] = v
                self.points.recompute_c(self.corner)
                return True
            return False
        if v >= (self.value(idx, vals) if current is None else current) - min_gain:
            return False
        c = v - float(vals @ self.corner[idx])
        self.n_dropped += self.points.drop_dominated(idx, vals, c)
        self.points.add(idx, vals, v, c)
        return True
