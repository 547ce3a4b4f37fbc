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
import scipy.sparse as sp

from trim_pomdp.solvers.pointbased.hull import FaceHulls

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
        """The vectors, ``(K, S)`` (a view)."""
        return self._G[: self.K]

    @property
    def actions(self) -> np.ndarray:
        """The action of each vector, ``(K,)`` (a view)."""
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


def _residual_bound(
    FB: np.ndarray, phi_max: np.ndarray, v: np.ndarray, Fi: np.ndarray, exact: bool = True
) -> np.ndarray:
    """``min_{0 <= φ <= φ_max} φ v_i + max_a (FB[q, a] - φ Fi[i, a])`` for every query ``q`` and point ``i``.

    The function of φ is convex and piecewise linear, so its minimum is at ``φ_max`` or at a kink where
    two planes tie; ``φ = 0`` (the plain planes bound) is covered by the caller. With ``exact=False``
    only the kinks of the plane active at ``φ = 0`` are tried (``A`` candidates instead of ``1 +
    A(A-1)/2``): still a valid upper bound, possibly above the minimum when there are more than two
    planes.

    Parameters
    ----------
    FB : (Q, A) plane values ``fib[a] . b`` of the queries.
    phi_max : (Q, n) largest φ with ``b - φ b_i >= 0`` (0 where ``b_i``'s support is not inside ``b``'s).
    v : (n,) stored upper values; Fi : (n, A) plane values ``fib[a] . b_i`` of the points.
    """
    A = FB.shape[1]
    cands = [phi_max]
    if exact or A <= 2:
        pairs = [(a, a2) for a in range(A) for a2 in range(a + 1, A)]
        for a, a2 in pairs:
            den = Fi[:, a] - Fi[:, a2]
            with np.errstate(divide="ignore", invalid="ignore"):
                kink = (FB[:, a] - FB[:, a2])[:, None] / den[None, :]
            cands.append(np.clip(np.where(np.isfinite(kink), kink, 0.0), 0.0, phi_max))
    else:
        a0 = FB.argmax(axis=1)  # active plane at φ = 0
        f0 = FB[np.arange(len(FB)), a0]  # (Q,)
        fi0 = Fi.T[a0]  # (Q, n): Fi[i, a0(q)]
        for a in range(A):
            with np.errstate(divide="ignore", invalid="ignore"):
                kink = (f0 - FB[:, a])[:, None] / (fi0 - Fi[None, :, a])
            cands.append(np.clip(np.where(np.isfinite(kink), kink, 0.0), 0.0, phi_max))
    phi = np.stack(cands, axis=-1)  # (Q, n, C)
    g = phi * v[None, :, None] + (FB[:, None, None, :] - phi[..., None] * Fi[None, :, None, :]).max(axis=-1)
    return g.min(axis=-1)


def _residual_pairs(
    FBq: np.ndarray, phi_max: np.ndarray, v: np.ndarray, Fi: np.ndarray, exact: bool = True
) -> np.ndarray:
    """:func:`_residual_bound` for a list of (query, point) pairs: row ``p`` pairs ``FBq[p]`` with ``Fi[p]``.

    Parameters
    ----------
    FBq : (P, A) plane values of each pair's query; phi_max : (P,); v : (P,) the points' values;
    Fi : (P, A) plane values of each pair's point.
    """
    A = FBq.shape[1]
    cands = [phi_max]
    if exact or A <= 2:
        for a in range(A):
            for a2 in range(a + 1, A):
                with np.errstate(divide="ignore", invalid="ignore"):
                    kink = (FBq[:, a] - FBq[:, a2]) / (Fi[:, a] - Fi[:, a2])
                cands.append(np.clip(np.where(np.isfinite(kink), kink, 0.0), 0.0, phi_max))
    else:
        rows = np.arange(len(FBq))
        a0 = FBq.argmax(axis=1)
        f0, fi0 = FBq[rows, a0], Fi[rows, a0]
        for a in range(A):
            with np.errstate(divide="ignore", invalid="ignore"):
                kink = (f0 - FBq[:, a]) / (fi0 - Fi[:, a])
            cands.append(np.clip(np.where(np.isfinite(kink), kink, 0.0), 0.0, phi_max))
    phi = np.stack(cands, axis=-1)  # (P, C)
    g = phi * v[:, None] + (FBq[:, None, :] - phi[..., None] * Fi[:, None, :]).max(axis=-1)
    return g.min(axis=-1)


class _DensePoints:
    """Stored upper-bound points as dense rows (for models with few states)."""

    def __init__(self, S: int, A: int, capacity: int = 512):
        self.S, self.N = S, 0
        self._P = np.zeros((capacity, S))
        self._v = np.empty(capacity)
        self._F = np.empty((capacity, A))
        self._n_supp = np.empty(capacity, dtype=np.int64)

    def phi(self, idx: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points with support inside ``idx`` that help a row of ``B``, and ``φ_i(b)`` (0 if not inside)."""
        n = self.N
        P = self._P[:n]
        inside = np.count_nonzero(P[:, idx], axis=1) == self._n_supp[:n]
        pts = np.flatnonzero(inside)
        if len(pts) == 0:
            return pts, np.zeros((len(B), 0))
        Pi = P[np.ix_(pts, idx)]  # (n, k)
        # a point helps a belief only if its support lies inside the belief's support
        ok = ((B > 0).astype(float) @ (Pi > 0).T.astype(float)) >= self._n_supp[pts] - 0.5  # (Q, n)
        cols = np.flatnonzero(ok.any(axis=0))
        Pi, ok, pts = Pi[cols], ok[:, cols], pts[cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = B[:, None, :] / Pi[None, :, :]  # b(s)/b_i(s): inf or nan off the support of b_i
        phi = np.fmin.reduce(ratio, axis=2) if len(pts) else np.zeros((len(B), 0))
        phi[~ok] = 0.0
        return pts, phi

    def phi_new(self, idx: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored points whose support contains ``idx`` and ``φ_new(b_i) = min_s b_i(s) / new(s)``."""
        n = self.N
        sub = self._P[:n][:, idx]
        cand = np.flatnonzero(np.all(sub > 0, axis=1))
        return cand, (sub[cand] / vals).min(axis=1)

    def add(self, idx: np.ndarray, vals: np.ndarray, v: float, F: np.ndarray) -> None:
        if self.N == len(self._v):
            self._P = np.vstack([self._P, np.zeros_like(self._P)])
            self._v = np.concatenate([self._v, np.empty_like(self._v)])
            self._F = np.vstack([self._F, np.empty_like(self._F)])
            self._n_supp = np.concatenate([self._n_supp, np.empty_like(self._n_supp)])
        self._P[self.N] = 0.0
        self._P[self.N, idx] = vals
        self._v[self.N], self._F[self.N], self._n_supp[self.N] = v, F, len(idx)
        self.N += 1

    def drop(self, drop: np.ndarray) -> None:
        n = self.N
        keep = ~drop
        m = int(keep.sum())
        self._P[:m] = self._P[:n][keep]
        self._v[:m], self._F[:m], self._n_supp[:m] = (
            self._v[:n][keep],
            self._F[:n][keep],
            self._n_supp[:n][keep],
        )
        self.N = m


class _SparsePoints:
    """Stored upper-bound points packed as CSR-like arrays (for large, sparse-belief models)."""

    def __init__(self, S: int, A: int, capacity: int = 1024):
        self.S, self.N, self.nnz = S, 0, 0
        self._ptr = np.zeros(capacity + 1, dtype=np.int64)
        self._v = np.empty(capacity)
        self._F = np.empty((capacity, A))
        self._idx = np.empty(8 * capacity, dtype=np.int64)
        self._val = np.empty(8 * capacity)
        self._inv = np.empty(8 * capacity)
        self._owner = np.empty(8 * capacity, dtype=np.int64)
        self._pos = np.full(S, -1, dtype=np.int64)

    def _inside(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The points whose support lies inside ``idx``, with their entries located in ``idx``.

        Returns ``(pts, lens, offs, cols, sel)``: the points, their support sizes and offsets in the packed
        selection, and for each selected entry its column in ``idx`` and its position in the packed arrays.
        """
        n = self.nnz
        pos = self._pos
        pos[idx] = np.arange(len(idx))
        col = pos[self._idx[:n]]
        pos[idx] = -1
        usable = np.ones(self.N, bool)
        missing = col < 0
        if missing.any():
            usable[self._owner[:n][missing]] = False
        pts = np.flatnonzero(usable)
        starts, ends = self._ptr[pts], self._ptr[pts + 1]
        lens = ends - starts
        offs = np.concatenate([[0], np.cumsum(lens)[:-1]])
        sel = np.repeat(starts - offs, lens) + np.arange(int(lens.sum()))
        return pts, lens, offs, col[sel], sel

    def phi(self, idx: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points with support inside ``idx`` and ``φ_i(b)`` for each row of ``B``."""
        pts, _, offs, cols, sel = self._inside(idx)
        if len(pts) == 0:
            return pts, np.zeros((len(B), 0))
        ratio = B[:, cols] * self._inv[sel]  # (Q, nnz)
        return pts, np.minimum.reduceat(ratio, offs, axis=1)  # (Q, n_usable)

    def pairs(self, idx: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (query, point) pairs where the point's support lies inside the query's, and ``φ`` for each.

        Sparse in both directions: the work grows with the number of such pairs, not with ``Q x N``
        (beliefs of layered models sit on small supports, and each meets only the points of its own).
        """
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        if self.nnz == 0 or len(B) == 0:
            return empty
        pts, lens, offs, cols_e, sel = self._inside(idx)
        if len(pts) == 0:
            return empty
        inv_e = self._inv[sel]
        k = len(idx)
        inc_p = sp.csr_matrix(
            (np.ones(len(sel)), (cols_e, np.repeat(np.arange(len(pts)), lens))), shape=(k, len(pts))
        )
        inc_q = sp.csr_matrix((B > 0).astype(float))
        C = (inc_q @ inc_p).tocoo()
        ok = np.abs(C.data - lens[C.col]) < 0.5  # every state of the point's support is in the query's
        q, j = C.row[ok].astype(np.int64), C.col[ok].astype(np.int64)
        if len(q) == 0:
            return empty
        lj = lens[j]
        pair_offs = np.concatenate([[0], np.cumsum(lj)[:-1]])
        e = np.repeat(offs[j] - pair_offs, lj) + np.arange(int(lj.sum()))
        ratio = B[np.repeat(q, lj), cols_e[e]] * inv_e[e]
        return q, pts[j], np.minimum.reduceat(ratio, pair_offs)

    def phi_new(self, idx: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, N = self.nnz, self.N
        dense_new = np.zeros(self.S)
        dense_new[idx] = vals
        hit = dense_new[self._idx[:n]] > 0
        cnt = np.bincount(self._owner[:n][hit], minlength=N)
        cand = np.flatnonzero(cnt == len(idx))
        if len(cand) == 0:
            return cand, np.zeros(0)
        ratio = np.full(n, np.inf)
        ratio[hit] = self._val[:n][hit] / dense_new[self._idx[:n]][hit]
        return cand, np.minimum.reduceat(ratio, self._ptr[:N])[cand]

    def add(self, idx: np.ndarray, vals: np.ndarray, v: float, F: np.ndarray) -> None:
        k = len(idx)
        if self.N + 1 >= len(self._v):
            grow = len(self._v)
            self._ptr = np.concatenate([self._ptr, np.zeros(grow, dtype=np.int64)])
            self._v = np.concatenate([self._v, np.empty(grow)])
            self._F = np.vstack([self._F, np.empty_like(self._F)])
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
        self.N += 1
        self.nnz = hi
        self._ptr[self.N] = hi

    def drop(self, drop: np.ndarray) -> None:
        n, N = self.nnz, self.N
        keep_pts = ~drop
        keep_nz = keep_pts[self._owner[:n]]
        lens = np.diff(self._ptr[: N + 1])[keep_pts]
        m = int(keep_pts.sum())
        nn = int(keep_nz.sum())
        for arr in (self._idx, self._val, self._inv):
            arr[:nn] = arr[:n][keep_nz]
        self._owner[:nn] = np.repeat(np.arange(m), lens)
        self._v[:m], self._F[:m] = self._v[:N][keep_pts], self._F[:N][keep_pts]
        self._ptr[1 : m + 1] = np.cumsum(lens)
        self.N, self.nnz = m, nn


class SawtoothUpper:
    """Upper bound from upper-bound planes and stored (belief, value) points, by convexity.

    With planes ``fib`` (``V*(b) <= F(b) = max_a fib[a] . b``, e.g. the fast informed bound) and stored points
    ``V*(b_i) <= v_i``, convexity gives for every ``0 <= φ <= φ_i(b) = min_{s in supp b_i} b(s) / b_i(s)``::

        V*(b) <= φ v_i + (1 - φ) V*(r) <= φ v_i + F(b - φ b_i),     r = (b - φ b_i) / (1 - φ),

    and the bound is ``min(F(b), min_i min_φ [φ v_i + F(b - φ b_i)])``. It is the sawtooth interpolation
    of HSVI2 and SARSOP with the residual bounded by the planes instead of by the corner values, hence
    never looser. A new point drops the stored points it dominates at every belief (exact: ``F`` is
    subadditive).

    Parameters
    ----------
    fib : ndarray, shape (A, S)
        Valid upper-bound planes.
    dense : bool, optional
        Store points as dense rows (fast for few states) or packed sparse (default: dense when ``S <= 256``).
    exact : bool, optional
        Minimise over φ exactly (all plane kinks) or try only the kinks of the plane active at ``b``
        (cheaper with many planes; default: exact for at most three planes). The dominance drop is exact
        only in exact mode.
    hull_max_support : int, default 0
        Also bound beliefs on at most this many states by the convex hull of the stored points on their face
        (:class:`~trim_pomdp.solvers.pointbased.hull.FaceHulls`); below 2: off.
    """

    def __init__(
        self,
        fib: np.ndarray,
        dense: bool | None = None,
        exact: bool | None = None,
        hull_max_support: int = 0,
    ):
        self.fib = np.asarray(fib, float)
        self.hulls = FaceHulls(self.fib.max(axis=0), hull_max_support) if hull_max_support >= 2 else None
        self.exact = self.fib.shape[0] <= 3 if exact is None else bool(exact)
        self.S = self.fib.shape[1]
        A = self.fib.shape[0]
        if dense is None:
            dense = self.S <= 256
        self.points = _DensePoints(self.S, A) if dense else _SparsePoints(self.S, A)
        self.n_dropped = 0

    @property
    def corner(self) -> np.ndarray:
        """Upper bounds at the corners ``e_s`` implied by the planes alone."""
        return self.fib.max(axis=0)

    @property
    def n_points(self) -> int:
        """Number of stored (belief, value) points."""
        return self.points.N

    def values(self, idx: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Upper bound at each row of ``B`` (beliefs on support ``idx``)."""
        FB = B @ self.fib[:, idx].T  # (Q, A)
        out = FB.max(axis=1)
        if self.hulls is not None and len(self.hulls):
            out = np.minimum(out, self.hulls.values(idx, B))
        if not self.points.N:
            return out
        if isinstance(self.points, _SparsePoints):
            q, i, phi = self.points.pairs(idx, B)
            if len(q):
                pv = self.points
                h = _residual_pairs(FB[q], phi, pv._v[i], pv._F[i], exact=self.exact)
                np.minimum.at(out, q, h)
            return out
        pts, phi = self.points.phi(idx, B)
        if len(pts) == 0:
            return out
        h = _residual_bound(FB, phi, self.points._v[pts], self.points._F[pts], exact=self.exact)
        return np.minimum(out, h.min(axis=1))

    def value(self, idx: np.ndarray, vals: np.ndarray) -> float:
        """Upper bound at the single belief ``vals`` on support ``idx``."""
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
        """
        if v >= (self.value(idx, vals) if current is None else current) - min_gain:
            return False
        F = vals @ self.fib[:, idx].T  # (A,)
        if self.hulls is not None:
            self.hulls.add(idx, vals, v)
        if self.points.N:
            cand, psi = self.points.phi_new(idx, vals)
            if len(cand):
                # h_new(b_i) <= v_i  =>  the new point's bound lies below point i's at every belief
                # each candidate b_i as a query against the new point alone
                h = _residual_bound(self.points._F[cand], psi[:, None], np.array([v]), F[None, :])[:, 0]
                drop = np.zeros(self.points.N, bool)
                drop[cand] = h <= self.points._v[cand] + 1e-15
                k = int(drop.sum())
                if k:
                    self.points.drop(drop)
                    self.n_dropped += k
        self.points.add(idx, vals, v, F)
        return True
