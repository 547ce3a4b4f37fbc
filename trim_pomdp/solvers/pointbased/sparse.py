"""Sparse per-action form of a tabular POMDP and the initial bounds of the point-based solver.

* :class:`SparseModel` holds ``T[a]`` as CSR matrices (``S x S``), ``O[a]`` dense (``S x Z``) and
  ``R[s, a]``, and computes, for a sparse belief, the predicted next-state distribution and every
  observation's posterior (restricted to the support of the prediction, so nothing loops over all states).
* :func:`blind_lower_bound` — the value of each "always do a" policy (exact sparse linear solves).
* :func:`mdp_upper_bound` — the MDP value by policy iteration (exact sparse solves), a valid upper bound.
* :func:`fast_informed_bound` — FIB iteration started from the MDP Q-values; every iterate is an upper bound
  (the FIB operator is monotone and lies below the MDP operator), so it can be stopped at any time.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["SparseModel", "blind_lower_bound", "fast_informed_bound", "mdp_upper_bound"]


class SparseModel:
    """Per-action matrices of a :class:`TabularPOMDP` (``T[a]`` CSR ``S x S``, ``O[a]`` dense ``S x Z``)."""

    def __init__(self, model: TabularPOMDP):
        T = np.asarray(model.T, float)
        self.S, self.A, self.Z = model.n_states, model.n_actions, model.n_observations
        self.gamma = float(model.discount)
        self.T = [sp.csr_matrix(T[a]) for a in range(self.A)]
        # small models: dense rows are faster to slice than CSR
        self.T_dense = T if T.size <= 4_000_000 else None
        self.O = np.ascontiguousarray(np.asarray(model.O, float))
        # sparse copies of O (S x Z CSR per action) for the alpha backups' column-group sums and for the FIB
        self.O_sparse = [sp.csr_matrix(self.O[a]) for a in range(self.A)]
        self.o_is_sparse = sum(x.nnz for x in self.O_sparse) < 0.25 * self.O.size
        self.R = np.ascontiguousarray(np.asarray(model.R, float))
        self.b0 = np.asarray(model.b0, float)

    def predict(self, idx: np.ndarray, vals: np.ndarray, a: int) -> tuple[np.ndarray, np.ndarray]:
        """Support and values of ``b T_a`` for the sparse belief ``(idx, vals)``."""
        if self.T_dense is not None:
            bp = vals @ self.T_dense[a][idx]
        else:
            bp = self.T[a][idx].T @ vals
        nz = np.flatnonzero(bp > 0.0)
        return nz, bp[nz]

    def children(self, idx: np.ndarray, vals: np.ndarray, a: int):
        """Posterior beliefs after ``a`` for every observation of positive probability.

        Returns
        -------
        idx2 : ndarray of int
            Support of the predicted distribution; every child lives on it.
        obs : ndarray of int
            Observations with ``P(o | b, a) > 0``.
        p : ndarray
            ``P(o | b, a)`` for ``obs``.
        B : ndarray, shape (len(obs), len(idx2))
            Child beliefs restricted to ``idx2``.
        pred : ndarray
            The predicted distribution on ``idx2``.
        """
        idx2, pred = self.predict(idx, vals, a)
        M = pred[:, None] * self.O[a][idx2]
        p_all = M.sum(axis=0)
        obs = np.flatnonzero(p_all > 1e-300)
        p = p_all[obs]
        B = M.T[obs] / p[:, None]  # contiguous (n_obs, len(idx2))
        return idx2, obs, p, B, pred


def _solve(A: sp.spmatrix, rhs: np.ndarray) -> np.ndarray:
    x = spla.spsolve(sp.csc_matrix(A), rhs)
    return np.asarray(x, float).reshape(rhs.shape)


def blind_lower_bound(m: SparseModel) -> np.ndarray:
    """``(A, S)`` array: row ``a`` is the exact value of the blind policy "always do a"."""
    eye = sp.identity(m.S, format="csr")
    return np.stack([_solve(eye - m.gamma * m.T[a], m.R[:, a]) for a in range(m.A)])


def mdp_upper_bound(m: SparseModel, max_iter: int = 200) -> np.ndarray:
    """``(A, S)`` array of the fully observable MDP's optimal Q-values (policy iteration, exact solves)."""
    eye = sp.identity(m.S, format="csr")
    pi = m.R.argmax(axis=1)
    V = None
    for _ in range(max_iter):
        rows = [sp.diags((pi == a).astype(float)) @ m.T[a] for a in range(m.A)]
        T_pi = sum(rows[1:], rows[0])
        V = _solve(eye - m.gamma * T_pi, m.R[np.arange(m.S), pi])
        Q = np.stack([m.R[:, a] + m.gamma * (m.T[a] @ V) for a in range(m.A)])
        new = Q.argmax(axis=0)
        # keep the old action on ties so policy iteration terminates
        keep = Q[pi, np.arange(m.S)] >= Q[new, np.arange(m.S)] - 1e-12 * (1 + np.abs(V))
        new[keep] = pi[keep]
        if np.array_equal(new, pi):
            break
        pi = new
    return np.stack([m.R[:, a] + m.gamma * (m.T[a] @ V) for a in range(m.A)])


def fast_informed_bound(
    m: SparseModel, Q0: np.ndarray, tol: float = 1e-9, time_budget: float = 10.0, max_iter: int = 10_000
) -> tuple[np.ndarray, int]:
    """Iterate the fast informed bound from ``Q0`` (an upper bound with ``H_FIB Q0 <= Q0``, e.g. the MDP Q).

    Returns
    -------
    Q : ndarray, shape (A, S)
        A valid upper bound on the optimal Q-values (a FIB iterate; the fixed point if it converged).
    iterations : int
    """
    if m.gamma >= 1.0:
        raise InvalidParameterError("the fast informed bound needs a discount < 1")
    Q = Q0.copy()
    start = time.perf_counter()
    it = 0
    while it < max_iter:
        it += 1
        new = np.empty_like(Q)
        for a in range(m.A):
            best: Any = None
            for a2 in range(m.A):
                # X[s, o] = sum_s' T[s, s'] O[s', o] Q(s', a2)
                if m.o_is_sparse:
                    X = (m.T[a] @ m.O_sparse[a].multiply(Q[a2][:, None]).tocsr()).tocsr()
                    best = X if best is None else best.maximum(X)
                else:
                    X = m.T[a] @ (m.O[a] * Q[a2][:, None])
                    best = X if best is None else np.maximum(best, X)
            new[a] = m.R[:, a] + m.gamma * np.asarray(best.sum(axis=1)).ravel()
        new = np.minimum(new, Q)  # monotone: never loosen (guards against round-off)
        delta = float(np.max(Q - new))
        Q = new
        if delta <= tol * (1.0 + float(np.max(np.abs(Q)))) or time.perf_counter() - start > time_budget:
            break
    return Q, it
