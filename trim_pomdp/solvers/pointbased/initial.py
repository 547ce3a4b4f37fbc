"""Initial bounds of the point-based solver; each is valid whenever it stops (time limits cover set-up).

* :func:`blind_lower_bound` — the value of each "always do a" policy (exact sparse linear solves); an action
  left when time runs out gets the constant ``min R / (1 - γ)``, the value no policy can fall below.
* :func:`mdp_upper_bound` — the fully observable MDP's Q-values by policy iteration; if it is stopped before it
  converges, the last value function is lifted by its Bellman residual ``max(HV - V) / (1 - γ)`` into a valid
  upper bound.
* :func:`fast_informed_bound` — FIB iterations from any upper bound; every iterate is an upper bound (the FIB
  operator is monotone and lies above the POMDP's Bellman operator), so it can be stopped at any time. Its
  matrices pair every transition with the observations of the state it reaches (rows ``(s, o)``), so one
  iteration is one sparse-times-dense product per action.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from trim_pomdp.exceptions import InvalidParameterError, ResourceLimitError
from trim_pomdp.solvers.memory import MemoryBudget
from trim_pomdp.solvers.pointbased.sparse import SparseModel, gather_rows

__all__ = ["blind_lower_bound", "fast_informed_bound", "fib_matrices", "mdp_upper_bound"]


#: Models with at most this many states (and a dense copy of ``T``) get dense linear solves: on Tiger-sized
#: models a sparse solve costs its set-up many times over (the initial bounds were a sixth of mini-hall2's
#: 0.15-s solve).
DENSE_SOLVE_STATES = 512


def _solve(A: sp.spmatrix | np.ndarray, rhs: np.ndarray) -> np.ndarray:
    if isinstance(A, np.ndarray):
        return np.linalg.solve(A, rhs)
    x = spla.spsolve(sp.csc_matrix(A), rhs)
    return np.asarray(x, float).reshape(rhs.shape)


def _dense_T(m: SparseModel) -> np.ndarray | None:
    """``T`` as an ``(A, S, S)`` array when the model is small enough for dense solves."""
    return m.T_dense if m.T_dense is not None and m.S <= DENSE_SOLVE_STATES else None


def _policy_matrix(m: SparseModel, pi: np.ndarray) -> sp.spmatrix | np.ndarray:
    """``I - γ T_π`` for the deterministic policy ``π`` (dense for small models)."""
    Td = _dense_T(m)
    if Td is not None:
        return np.eye(m.S) - m.gamma * Td[pi, np.arange(m.S)]
    rows = [sp.diags((pi == a).astype(float)) @ m.T[a] for a in range(m.A)]
    return sp.identity(m.S, format="csr") - m.gamma * sum(rows[1:], rows[0])


def _late(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() > deadline


def blind_lower_bound(m: SparseModel, deadline: float | None = None) -> np.ndarray:
    """``(A, S)`` array: row ``a`` is the exact value of the blind policy "always do a" (or a constant bound)."""
    floor = float(m.R.min()) / (1.0 - m.gamma)
    rows = []
    for a in range(m.A):
        if _late(deadline):
            rows.append(np.full(m.S, floor))
        else:
            rows.append(_solve(_policy_matrix(m, np.full(m.S, a)), m.R[:, a]))
    return np.stack(rows)


def _q(m: SparseModel, V: np.ndarray) -> np.ndarray:
    Td = _dense_T(m)
    if Td is not None:
        return m.R.T + m.gamma * (Td @ V)
    return np.stack([m.R[:, a] + m.gamma * (m.T[a] @ V) for a in range(m.A)])


def _lifted(m: SparseModel, V: np.ndarray) -> np.ndarray:
    """``R + γ T U`` with ``U = V + max(HV - V)⁺ / (1 - γ)``, capped by ``R + γ max R / (1 - γ)`` (both valid)."""
    residual = max(0.0, float((_q(m, V).max(axis=0) - V).max()))
    Q = _q(m, V + residual / (1.0 - m.gamma))
    return np.minimum(Q, m.R.T + m.gamma * float(m.R.max()) / (1.0 - m.gamma))


def mdp_upper_bound(m: SparseModel, max_iter: int = 200, deadline: float | None = None) -> np.ndarray:
    """``(A, S)`` upper bound on the Q-values: the MDP's optimal Q-values (policy iteration, exact solves).

    Stopped by ``deadline`` before convergence, it returns ``R + γ T U`` with ``U = V + max(HV - V)⁺ / (1 - γ)``
    (``V`` the last policy's value), which dominates ``V*`` by the contraction of the Bellman operator, capped by
    ``R + γ max R / (1 - γ)``, which no policy exceeds (a first, poor policy's lift can be far above it:
    RockSample_11_11 stopped after one evaluation gave 497 where the cap is 200).
    """
    if m.gamma >= 1.0:
        raise InvalidParameterError("the MDP upper bound needs a discount < 1")
    pi = m.R.argmax(axis=1)
    V = np.full(m.S, float(m.R.max()) / (1.0 - m.gamma))  # valid if nothing else gets done
    for _ in range(max_iter):
        if _late(deadline):
            return _lifted(m, V)
        V = _solve(_policy_matrix(m, pi), m.R[np.arange(m.S), pi])
        Q = _q(m, V)
        new = Q.argmax(axis=0)
        # keep the old action on ties so policy iteration terminates
        keep = Q[pi, np.arange(m.S)] >= Q[new, np.arange(m.S)] - 1e-12 * (1 + np.abs(V))
        new[keep] = pi[keep]
        if np.array_equal(new, pi):
            return Q
        pi = new
    return _lifted(m, V)


def fib_matrices(
    m: SparseModel, budget: MemoryBudget | None = None
) -> tuple[sp.csr_matrix, np.ndarray] | None:
    """``M[(a, s, o), s'] = T[a][s, s'] O[a][s', o]`` over the reachable ``(a, s, o)``, and each row's ``a·S + s``.

    All actions are stacked so that one FIB iteration is one sparse-times-dense product. ``None`` when the
    matrix would not fit in ``budget`` (the solver then starts from the MDP bound).
    """
    rows, cols, vals, keys = [], [], [], []
    offset = 0
    for a in range(m.A):
        Ta = m.T[a].tocoo()
        s, s2 = Ta.row.astype(np.int64), Ta.col.astype(np.int64)
        total = float(np.diff(m.O_sparse[a].indptr)[s2].sum())
        if budget is not None:
            try:
                budget.charge(40.0 * total, "the fast-informed-bound matrices")
            except ResourceLimitError:
                return None
        rowk, ocol, w = gather_rows(m.O_sparse[a], s2, Ta.data)
        k, inv = np.unique(s[rowk] * m.Z + ocol, return_inverse=True)
        rows.append(inv + offset)
        cols.append(s2[rowk])
        vals.append(w)
        keys.append(a * m.S + k // m.Z)
        offset += len(k)
    M = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(offset, m.S)
    )
    return M, np.concatenate(keys)


def fast_informed_bound(
    m: SparseModel,
    Q0: np.ndarray,
    tol: float = 1e-9,
    time_budget: float = 10.0,
    max_iter: int = 10_000,
    matrices: tuple[sp.csr_matrix, np.ndarray] | None = None,
) -> tuple[np.ndarray, int]:
    """Iterate the fast informed bound from ``Q0`` (any upper bound on the Q-values, e.g. the MDP's).

    Returns
    -------
    Q : ndarray, shape (A, S)
        A valid upper bound on the optimal Q-values (a FIB iterate; the fixed point if it converged).
    iterations : int
    """
    if m.gamma >= 1.0:
        raise InvalidParameterError("the fast informed bound needs a discount < 1")
    mats = fib_matrices(m) if matrices is None else matrices
    assert mats is not None
    M, row_of = mats
    base = np.ascontiguousarray(m.R.T).ravel()  # R[s, a] laid out as (a, s)
    Q = Q0.copy()
    start = time.perf_counter()
    it = 0
    while it < max_iter and time.perf_counter() - start <= time_budget:
        it += 1
        best = (M @ np.ascontiguousarray(Q.T)).max(axis=1)  # max over the next action, per (a, s, o)
        new = (base + m.gamma * np.bincount(row_of, best, minlength=m.A * m.S)).reshape(m.A, m.S)
        np.minimum(new, Q, out=new)  # min of two upper bounds: never loosen (and guards against round-off)
        delta = float(np.max(Q - new))
        Q = new
        if delta <= tol * (1.0 + float(np.max(np.abs(Q)))):
            break
    return Q, it
