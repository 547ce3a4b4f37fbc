"""The two value-function bounds of the point-based solver.

* :class:`AlphaSet` — lower bound ``V(b) = max_k alpha_k . b`` with one action per vector; pointwise-dominance
  pruning on insertion and pruning to the vectors that are maximal at a set of witness beliefs.
* :class:`SawtoothUpper` — upper bound: ``min`` of the fast-informed-bound planes and the sawtooth
  interpolation of corner values and stored belief/value points (HSVI2/SARSOP).

Batches of beliefs are passed as ``(idx, B)``: a common support ``idx`` (global state indices) and a matrix
``B`` whose rows are beliefs restricted to that support, so no computation touches states outside it.
"""

from __future__ import annotations

import itertools

import numpy as np

from trim_pomdp.solvers.pointbased.hull import FaceHulls
from trim_pomdp.solvers.pointbased.points import DensePoints, SparsePoints

__all__ = ["AlphaSet", "SawtoothUpper"]


class AlphaSet:
    """A growable set of alpha vectors with actions (the lower bound).

    The vectors are stored as the columns of an ``(S, capacity)`` array, so that the rows of a belief's
    support are contiguous: valuing beliefs on 256 of 12,800 states reads 256 short rows.

    Parameters
    ----------
    n_states : int
    capacity : int, default 256
        Vectors allocated at first (the set doubles when full).
    dominance_check : bool, default True
        Refuse a vector that another dominates pointwise, and drop the ones it dominates (costs ``K x S`` per
        insertion; with many states the solver leaves this to :meth:`prune_to_witnesses`).
    """

    def __init__(self, n_states: int, capacity: int = 256, dominance_check: bool = True):
        self.S = n_states
        self._GT = np.empty((n_states, max(1, capacity)))
        self._act = np.empty(max(1, capacity), dtype=np.int64)
        self.K = 0
        self.dominance_check = bool(dominance_check)

    @property
    def alphas(self) -> np.ndarray:
        """The vectors, ``(K, S)`` (a view)."""
        return self._GT[:, : self.K].T

    @property
    def actions(self) -> np.ndarray:
        """The action of each vector, ``(K,)`` (a view)."""
        return self._act[: self.K]

    def entries(self, states: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """``alpha_{vectors[i]}(states[i])`` for every ``i``."""
        return self._GT[states, vectors]

    def values(self, idx: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Max value and argmax vector of each row of ``B`` (beliefs on support ``idx``).

        When ``idx`` is a few runs of consecutive states (as the supports of factored models are), the rows of
        each run are read in place instead of being gathered.
        """
        K = self.K
        if len(idx) == self.S:
            V = B @ self._GT[:, :K]
        else:
            breaks = np.flatnonzero(np.diff(idx) != 1) + 1
            if len(breaks) < 8:
                bounds = [0, *breaks.tolist(), len(idx)]
                V = np.zeros((len(B), K))
                for lo, hi in itertools.pairwise(bounds):
                    V += B[:, lo:hi] @ self._GT[idx[lo] : idx[hi - 1] + 1, :K]
            else:
                V = B @ self._GT[idx, :K]
        k = V.argmax(axis=1)
        return V[np.arange(len(k)), k], k

    def _keep(self, keep: np.ndarray) -> None:
        """Keep the vectors in ``keep``: the kept ones beyond the new count fill the holes before it.

        Moves as many columns as there are holes (a prune that drops a few of 800 vectors on 12,800 states
        copies a few columns, not the whole set); the order of the vectors changes, which nothing relies on.
        """
        n = int(keep.sum())
        holes = np.flatnonzero(~keep[:n])
        if len(holes):
            fill = n + np.flatnonzero(keep[n:])
            self._GT[:, holes] = self._GT[:, fill]
            self._act[holes] = self._act[fill]
        self.K = n

    def add(self, alpha: np.ndarray, action: int, tol: float = 1e-10) -> bool:
        """Insert unless pointwise dominated; drop vectors the new one dominates. Returns whether inserted."""
        if self.K and self.dominance_check:
            GT = self._GT[:, : self.K]  # (S, K): the method forms skip numpy's wrappers (Tiger adds ~1,000)
            if (GT >= (alpha - tol)[:, None]).all(axis=0).any():
                return False
            keep = np.asarray(~(GT <= (alpha + tol)[:, None]).all(axis=0))
            if not keep.all():
                self._keep(keep)
        if self.K == self._GT.shape[1]:
            grown = np.empty((self.S, 2 * self.K))
            grown[:, : self.K] = self._GT
            self._GT = grown
            self._act = np.concatenate([self._act, np.empty_like(self._act)])
        self._GT[:, self.K] = alpha
        self._act[self.K] = action
        self.K += 1
        return True

    def prune_to_witnesses(self, W) -> int:
        """Keep only vectors maximal at some witness belief (columns of the sparse ``S x n`` matrix ``W``)."""
        if self.K <= 1:
            return 0
        V = np.asarray(W.T @ self._GT[:, : self.K])  # (n_witnesses, K)
        keep = np.zeros(self.K, bool)
        keep[V.argmax(axis=1)] = True
        n_removed = int(self.K - keep.sum())
        if n_removed:
            self._keep(keep)
        return n_removed


def _residual_bound(
    FB: np.ndarray, phi_max: np.ndarray, v: np.ndarray, Fi: np.ndarray, exact: bool = True
) -> np.ndarray:
    """``min_{0 <= φ <= φ_max} φ v_i + max_a (FB[q, a] - φ Fi[i, a])`` for every query ``q`` and point ``i``.

    The function of φ is convex and piecewise linear, so its minimum is at ``φ_max`` or at a kink where
    two planes tie; ``φ = 0`` (the plain planes bound) is covered by the caller. With ``exact=False``
    only ``φ_max`` is tried (one candidate instead of ``1 + A(A-1)/2``, as the corner-value sawtooth of
    HSVI2 and SARSOP does): still a valid upper bound, possibly above the minimum when there are more than
    two planes. On RockSample_7_8 (13 planes) this cheaper bound left a tighter upper bound after 60 s
    (24.58 against 24.72, more points in the time), on TagAvoid (5 planes) too (-2.84 against -2.74 was the
    one loss, with a tighter lower bound from the extra backups: gap 3.62 against 3.75).

    Parameters
    ----------
    FB : (Q, A) plane values ``fib[a] . b`` of the queries.
    phi_max : (Q, n) largest φ with ``b - φ b_i >= 0`` (0 where ``b_i``'s support is not inside ``b``'s).
    v : (n,) stored upper values; Fi : (n, A) plane values ``fib[a] . b_i`` of the points.
    """
    A = FB.shape[1]
    if not exact and A > 2:
        g = (FB[:, None, :] - phi_max[..., None] * Fi[None, :, :]).max(axis=-1)
        return phi_max * v[None, :] + g
    cands = [phi_max]
    for a in range(A):
        for a2 in range(a + 1, A):
            den = Fi[:, a] - Fi[:, a2]
            with np.errstate(divide="ignore", invalid="ignore"):
                kink = (FB[:, a] - FB[:, a2])[:, None] / den[None, :]
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
    if not exact and A > 2:
        return phi_max * v + (FBq - phi_max[:, None] * Fi).max(axis=1)
    cands = [phi_max]
    for a in range(A):
        for a2 in range(a + 1, A):
            with np.errstate(divide="ignore", invalid="ignore"):
                kink = (FBq[:, a] - FBq[:, a2]) / (Fi[:, a] - Fi[:, a2])
            cands.append(np.clip(np.where(np.isfinite(kink), kink, 0.0), 0.0, phi_max))
    phi = np.stack(cands, axis=-1)  # (P, C)
    g = phi * v[:, None] + (FBq[:, None, :] - phi[..., None] * Fi[:, None, :]).max(axis=-1)
    return g.min(axis=-1)


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
        Minimise over φ exactly (all plane kinks) or take ``φ = φ_i(b)`` only (cheaper with many planes;
        default: exact for at most six planes with dense points, three with sparse ones). Outside exact mode a
        new point drops only the points it dominates at the largest ``φ`` (a sufficient test).
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
        self.S = self.fib.shape[1]
        A = self.fib.shape[0]
        if dense is None:
            dense = self.S <= 256
        # exact minimisation over φ costs a kink per pair of planes: cheap in the fused dense pass
        self.exact = A <= (6 if dense else 3) if exact is None else bool(exact)
        self.points = DensePoints(self.S, A) if dense else SparsePoints(self.S, A)
        self.n_dropped = 0

    @property
    def corner(self) -> np.ndarray:
        """Upper bounds at the corners ``e_s`` implied by the planes alone."""
        return self.fib.max(axis=0)

    @property
    def n_points(self) -> int:
        """Number of stored (belief, value) points."""
        return int(getattr(self.points, "live", self.points.N))

    def values(self, idx: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Upper bound at each row of ``B`` (beliefs on support ``idx``)."""
        if isinstance(self.points, DensePoints):
            if len(idx) == self.S:
                Bf = B
            else:
                Bf = np.zeros((len(B), self.S))
                Bf[:, idx] = B
            FB = Bf @ self.fib.T  # (Q, A)
        else:
            FB = B @ self.fib[:, idx].T
        out = FB.max(axis=1)
        if self.hulls is not None and len(self.hulls):
            out = np.minimum(out, self.hulls.values(idx, B))
        if not self.points.N:
            return out
        if isinstance(self.points, SparsePoints):
            q, i, phi = self.points.pairs(idx, B)
            if len(q):
                pv = self.points
                h = _residual_pairs(FB[q], phi, pv._v[i], pv._F[i], exact=self.exact)
                np.minimum.at(out, q, h)
            return out
        return np.minimum(out, self.points.bound(Bf, FB, self.exact))

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
        if self.hulls is not None:
            self.hulls.add(idx, vals, v)
        key = idx.tobytes() + vals.tobytes()
        same = self.points.find(key)
        if same is not None:  # a lower value at a stored belief: it dominates the old point, replace it
            self.points.lower(same, v)
            return True
        F = vals @ self.fib[:, idx].T  # (A,)
        if isinstance(self.points, DensePoints) and self.points.N:
            drop = self.points.dominated(idx, vals, v, F)
            k = int(drop.sum())
            if k:
                self.points.drop(drop)
                self.n_dropped += k
        elif self.points.N:
            cand, psi = self.points.phi_new(idx, vals)
            if len(cand):
                # h_new(b_i) <= v_i  =>  the new point's bound lies below point i's at every belief
                # each candidate b_i as a query against the new point alone
                h = _residual_bound(
                    self.points._F[cand], psi[:, None], np.array([v]), F[None, :], exact=self.exact
                )[:, 0]
                drop = np.zeros(self.points.N, bool)
                drop[cand] = h <= self.points._v[cand] + 1e-15
                k = int(drop.sum())
                if k:
                    self.points.drop(drop)
                    self.n_dropped += k
        self.points.add(idx, vals, v, F, key)
        return True
