"""Exact finite-horizon value iteration with alpha-vector pruning (incremental pruning), for small POMDPs.

``V_0 = 0``; ``Γ_k = prune( ∪_a  R_a ⊕ prune(Γ_{a,o_1} ⊕ Γ_{a,o_2} ⊕ ...) )`` with the projections
``Γ_{a,o} = { γ T_a (O_a[:, o] ⊙ α) : α ∈ Γ_{k-1} }``. Pruning removes pointwise-dominated vectors and then keeps
exactly the vectors that are strictly maximal somewhere on the simplex: by an exact upper envelope for two
states, and by Lark's linear-programming filter (witness LPs, seeded with random sample beliefs) otherwise.
"""

from __future__ import annotations

import time

import numpy as np

from trim_pomdp._internal.simplex import nondominated
from trim_pomdp.exceptions import SolverError
from trim_pomdp.solvers.memory import MemoryBudget
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["exact_value_iteration", "prune"]


def _envelope_2states(V: np.ndarray, tol: float, min_len: float = 1e-9) -> np.ndarray:
    """Rows of ``V`` (K x 2) that are maximal on a sub-interval of positive length of the 1-simplex."""
    icpt, slope = V[:, 0], V[:, 1] - V[:, 0]
    f0 = icpt
    best = np.flatnonzero(f0 >= f0.max() - tol)
    cur = int(best[np.argmax(slope[best])])
    x = 0.0
    kept = []
    while True:
        higher = slope > slope[cur] + 1e-15
        if not higher.any():
            if 1.0 - x > min_len:
                kept.append(cur)
            break
        xs = np.full(len(V), np.inf)
        xs[higher] = (icpt[cur] - icpt[higher]) / (slope[higher] - slope[cur])
        xs = np.maximum(xs, x)
        x_next = xs.min()
        if x_next >= 1.0:
            if 1.0 - x > min_len:
                kept.append(cur)
            break
        if x_next - x > min_len:
            kept.append(cur)
        ties = np.flatnonzero(xs <= x_next + 1e-15)
        cur = int(ties[np.argmax(slope[ties])])
        x = x_next
    rows = np.array(sorted(set(kept)), dtype=np.int64)
    return rows[_drop_slivers(V[rows], tol)]


def _drop_slivers(V: np.ndarray, tol: float) -> np.ndarray:
    """Drop lines (K x 2) whose removal changes the upper envelope on [0, 1] by at most ``tol``."""
    alive = np.arange(len(V))
    while len(alive) > 1:
        icpt, slope = V[alive, 0], V[alive, 1] - V[alive, 0]
        ds = slope[:, None] - slope[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            xs = (icpt[None, :] - icpt[:, None]) / ds
        xs = xs[np.isfinite(xs) & (xs > 0) & (xs < 1)]
        X = np.concatenate([[0.0, 1.0], xs])
        F = icpt[:, None] + slope[:, None] * X[None, :]  # (E, P)
        top = F.argmax(axis=0)
        top1 = F[top, np.arange(F.shape[1])]
        F2 = F.copy()
        F2[top, np.arange(F.shape[1])] = -np.inf
        top2 = F2.max(axis=0)
        gap = np.where(np.arange(len(alive))[:, None] == top[None, :], F - top2, F - top1).max(axis=1)
        worst = int(np.argmin(gap))
        if gap[worst] > tol:
            break
        alive = np.delete(alive, worst)
    return alive


def _lark(V: np.ndarray, rng: np.random.Generator, tol: float) -> np.ndarray:
    from scipy.optimize import linprog

    K, S = V.shape
    samples = np.vstack([np.eye(S), rng.dirichlet(np.ones(S), size=min(4000, 100 * S))])
    win = set(np.unique((samples @ V.T).argmax(axis=1)).tolist())
    W = sorted(win)
    F = [i for i in range(K) if i not in win]
    c = np.zeros(S + 1)
    c[-1] = -1.0
    a_eq = np.ones((1, S + 1))
    a_eq[0, -1] = 0.0
    bounds = [(0.0, None)] * S + [(None, None)]
    while F:
        i = F.pop()
        a_ub = np.hstack([V[W] - V[i], np.ones((len(W), 1))])
        res = linprog(
            c, A_ub=a_ub, b_ub=np.zeros(len(W)), A_eq=a_eq, b_eq=[1.0], bounds=bounds, method="highs"
        )
        if res.status == 0 and -res.fun > tol:
            b = res.x[:S]
            cand = [*F, i]
            j = cand[int(np.argmax(V[cand] @ b))]
            W.append(j)
            if j != i:
                F.remove(j)
                F.append(i)
    return np.array(sorted(W), dtype=np.int64)


def prune(V: np.ndarray, rng: np.random.Generator, tol: float | None = None) -> np.ndarray:
    """Indices of a parsimonious subset of the rows of ``V`` (same upper envelope on the simplex)."""
    if len(V) <= 1:
        return np.arange(len(V))
    if tol is None:
        tol = 1e-9 * max(1.0, float(np.abs(V).max()))
    keep = nondominated(V, tol)
    if len(keep) <= 1 or V.shape[1] == 1:
        return keep[:1] if V.shape[1] == 1 else keep
    sub = V[keep]
    inner = _envelope_2states(sub, tol) if V.shape[1] == 2 else _lark(sub, rng, tol)
    return keep[inner]


def exact_value_iteration(
    model: TabularPOMDP,
    horizon: int,
    rng: np.random.Generator,
    deadline: float | None = None,
    budget: MemoryBudget | None = None,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Exact ``horizon``-step value function (zero terminal value) as pruned alpha vectors.

    Every cross-sum is checked against ``budget`` before it is formed (``ResourceLimitError`` otherwise), and
    the solve stops with ``SolverError`` once ``time.perf_counter()`` passes ``deadline``.

    Returns
    -------
    alphas : ndarray, shape (K, S)
    actions : ndarray of int, shape (K,)
        The first action of each vector's conditional plan.
    sizes : list of int
        Number of vectors after pruning at each step 1..horizon.
    """
    budget = budget if budget is not None else MemoryBudget(None, "exact value iteration")
    dense = model.to_dense(budget.limit)
    T, O, R = (np.asarray(x, float) for x in (dense.T, dense.O, dense.R))
    gamma = float(model.discount)
    A, S, Z = model.n_actions, model.n_states, model.n_observations
    G = np.zeros((1, S))
    acts = np.zeros(1, dtype=np.int64)
    sizes: list[int] = []
    for k in range(1, horizon + 1):
        cand_G, cand_a = [], []
        for a in range(A):
            acc = None
            for o in range(Z):
                col = O[a][:, o]
                if not col.any():
                    continue
                proj = gamma * (G * col) @ T[a].T  # proj[j, s] = γ Σ_s' T[s, s'] O[s', o] G[j, s']
                proj = proj[prune(proj, rng)]
                if acc is None:
                    acc = proj
                else:
                    budget.check(
                        8.0 * len(acc) * len(proj) * S,
                        f"step {k} of {horizon}: a cross-sum of {len(acc)} x {len(proj)} alpha vectors",
                    )
                    cross = (acc[:, None, :] + proj[None, :, :]).reshape(-1, S)
                    acc = cross[prune(cross, rng)]
                if deadline is not None and time.perf_counter() > deadline:
                    raise SolverError(
                        f"exact finite-horizon value iteration ran past the time limit at step {k} "
                        f"of {horizon}; use a shorter horizon or the discounted point-based mode"
                    )
            acc = (np.zeros((1, S)) if acc is None else acc) + R[:, a]
            cand_G.append(acc)
            cand_a.append(np.full(len(acc), a, dtype=np.int64))
        allG, allA = np.vstack(cand_G), np.concatenate(cand_a)
        keep = prune(allG, rng)
        G, acts = allG[keep], allA[keep]
        sizes.append(len(G))
    return G, acts, sizes
