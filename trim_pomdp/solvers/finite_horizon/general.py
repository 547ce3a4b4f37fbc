"""The simplex-grid fallback for finite-horizon POMDPs without rank-2 dynamics (at most a few hidden states).

Upper bounds come from piecewise-linear interpolation on a Freudenthal triangulation of the belief simplex
(Lovejoy 1991): interpolating the vertex values of a convex function over a triangulation over-estimates it, and
the Bellman operator is monotone, so the interpolated values bound ``V*`` from above. Lower bounds come from
point-based alpha-vector backups at the grid's vertices (each vector is the value of a conditional plan). The
resolution doubles until the gap at ``b0`` meets the precision, the time limit is reached, or the grid would
exceed ``max_grid`` points.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from trim_pomdp._internal.simplex import nondominated, simplex_grid
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.finite_horizon.policy import EpochPolicy
from trim_pomdp.solvers.finite_horizon.problem import FiniteHorizonPOMDP

__all__ = ["FiniteHorizonAlphaPolicy", "solve_general"]


class _Freudenthal:
    """Piecewise-linear interpolation on the Freudenthal triangulation of the simplex (Lovejoy 1991).

    Interpolating vertex values of a convex function over any triangulation over-estimates it, which makes the
    interpolated values an upper bound.
    """

    def __init__(self, n: int, resolution: int):
        self.n, self.r = int(n), int(resolution)
        self.points = simplex_grid(self.n, self.r)
        counts = np.rint(self.points * self.r).astype(np.int64)
        self._base = self.r + 1
        keys = (counts * self._base ** np.arange(self.n)).sum(axis=1)
        self._order = np.argsort(keys)
        self._keys = keys[self._order]

    def _index(self, counts: np.ndarray) -> np.ndarray:
        keys = (counts * self._base ** np.arange(self.n)).sum(axis=-1)
        pos = np.searchsorted(self._keys, keys)
        return self._order[np.clip(pos, 0, len(self._keys) - 1)]

    def vertices(self, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(m, n)`` of the grid vertices around beliefs ``B (m, n)`` and their barycentric weights."""
        B = np.clip(np.asarray(B, dtype=float), 0.0, None)
        B = B / B.sum(axis=1, keepdims=True)
        n, r = self.n, self.r
        x = r * np.cumsum(B[:, ::-1], axis=1)[:, ::-1]  # x_i = r * sum_{j >= i} b_j, x_0 = r
        x[:, 0] = r
        v = np.floor(x + 1e-12)
        v = np.minimum(v, r)
        d = np.clip(x - v, 0.0, 1.0)
        d[:, 0] = 0.0
        order = np.argsort(-d[:, 1:], axis=1, kind="stable") + 1  # sort fractional parts (excluding x_0) desc
        ds = np.take_along_axis(d, order, axis=1)  # (m, n-1)
        verts = np.empty((B.shape[0], n, n))
        verts[:, 0] = v
        rows = np.arange(B.shape[0])
        for k in range(1, n):
            verts[:, k] = verts[:, k - 1]
            verts[rows, k, order[:, k - 1]] += 1.0
        w = np.empty((B.shape[0], n))
        full = np.concatenate([np.ones((B.shape[0], 1)), ds, np.zeros((B.shape[0], 1))], axis=1)
        for k in range(n):
            w[:, k] = full[:, k] - full[:, k + 1]
        counts = np.rint(verts - np.concatenate([verts[:, :, 1:], np.zeros((B.shape[0], n, 1))], axis=2))
        counts = counts.astype(np.int64)
        return self._index(counts), w

    def interpolate(self, values: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Interpolated ``values`` (one per grid point) at each row of ``B``."""
        idx, w = self.vertices(B)
        return (values[idx] * w).sum(axis=1)


def _prune_alphas(alphas: np.ndarray) -> np.ndarray:
    """Drop duplicate and pointwise-dominated alpha vectors (exact: the max over the simplex is unchanged).

    The survivors are returned with the largest sum first.
    """
    a = np.unique(np.round(alphas, 14), axis=0)
    a = a[np.argsort(-a.sum(axis=1))]
    return a[nondominated(a)]


class FiniteHorizonAlphaPolicy(EpochPolicy):
    """Solution of a :class:`~.problem.FiniteHorizonPOMDP` without rank-2 structure (simplex-grid fallback).

    Same query interface as :class:`~.policy.FiniteHorizonPolicy`: ``alpha_sets[i]`` (for ``W`` of epoch index
    ``i``) are pre-observation alpha vectors; ``uvals[i]`` upper-bound values on the Freudenthal grid of
    resolution ``resolution``.
    """

    def __init__(
        self,
        model: FiniteHorizonPOMDP,
        alphas: list[Any],
        uvals: list[Any],
        resolution: int,
        info: SolveInfo | None = None,
    ):
        self._keep(model, info)
        self.transition = model.transition
        self.alpha_sets = alphas
        self.uvals = uvals
        self.resolution = int(resolution)
        self._grid = _Freudenthal(model.n_hidden, resolution)

    def action_values(self, t: int, context: int, belief: Any, upper: bool = False) -> np.ndarray:
        """Per-action lower-bound (policy) values, or certified upper bounds with ``upper=True``."""
        self._check(t, context)
        b = np.asarray(belief, dtype=float)
        single = b.ndim == 1
        b = np.atleast_2d(b)
        i = int(t) - 1
        q = b @ self.reward[i, context]
        if not self.terminal[i, context]:
            s = b.sum(axis=1)
            for a in range(q.shape[1]):
                y = b @ self.transition[a]
                if upper:
                    ys = y / np.where(s > 0, s, 1.0)[:, None]
                    last = i + 1 >= self.horizon
                    fut = 0.0 * s if last else s * self._grid.interpolate(self.uvals[i + 1], ys)
                else:
                    fut = (y @ self.alpha_sets[i + 1].T).max(axis=1)
                q[:, a] += self.discount * fut
        return q[0] if single else q

    def alphas(self, t: int, context: int) -> tuple[np.ndarray, np.ndarray]:
        """Explicit post-observation alpha vectors and actions at ``(t, context)``."""
        self._check(t, context)
        i = int(t) - 1
        r = self.reward[i, context]
        A = r.shape[1]
        if self.terminal[i, context]:
            return r.T.copy(), np.arange(A)
        out, acts = [], []
        for a in range(A):
            out.append(r[:, a][None, :] + self.discount * self.alpha_sets[i + 1] @ self.transition[a].T)
            acts.append(np.full(len(self.alpha_sets[i + 1]), a))
        return np.concatenate(out), np.concatenate(acts)


def _future_values(
    model: FiniteHorizonPOMDP, i: int, post: np.ndarray, grid: _Freudenthal, TA: list[np.ndarray], next_u: Any
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per action at the unnormalised posteriors ``post`` (G·n_o, Z) of epoch index ``i``.

    Returns the value and index of the best next alpha vector (``TA[a]`` holds them propagated through
    ``transition[a]``), the lower bound, and the interpolated next upper bound.
    """
    fl, fu, ks = [], [], []
    for a in range(model.n_actions):
        vals = post @ TA[a].T  # (G*n_o, N)
        k = vals.argmax(axis=1)
        fl.append(vals[np.arange(len(k)), k])
        ks.append(k)
        if i + 1 < model.horizon:
            y = post @ model.transition[a]
            s = y.sum(axis=1)
            ok = s > 0
            up = np.zeros(len(s))
            up[ok] = s[ok] * grid.interpolate(next_u, y[ok] / s[ok, None])
            fu.append(up)
        else:
            fu.append(np.zeros(len(post)))
    return fl, fu, ks


def _backup(
    model: FiniteHorizonPOMDP, i: int, beta: np.ndarray, grid: _Freudenthal, nxt: np.ndarray, next_u: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Bellman backups at the predicted beliefs ``beta`` (G, Z) of epoch index ``i``.

    Returns the point-based lower-bound alpha vectors (G, Z) and the upper-bound values (G,).
    """
    Z, A = model.n_hidden, model.n_actions
    gamma = float(model.discount)
    O = model.observation[i]
    pc, term, R = model.context_probs[i], model.terminal[i], model.reward[i]
    TA = [nxt @ model.transition[a].T for a in range(A)]  # (N, Z): T_a alpha_k
    u = beta[:, :, None] * O[None]  # (G, Z, n_o)
    G, n_o = u.shape[0], u.shape[2]
    post = np.transpose(u, (0, 2, 1)).reshape(-1, Z)  # (G*n_o, Z), unnormalised
    fl, fu, ks = _future_values(model, i, post, grid, TA, next_u)
    fl = [f.reshape(G, n_o) for f in fl]
    fu = [f.reshape(G, n_o) for f in fu]
    ks = [k.reshape(G, n_o) for k in ks]
    new_alpha = np.zeros((G, Z))
    u_new = np.zeros(G)
    for c in np.flatnonzero(pc > 0):
        w = 0.0 if term[c] else gamma
        ql = np.stack([np.einsum("gzo,z->go", u, R[c, :, a]) + w * fl[a] for a in range(A)])
        qu = np.stack([np.einsum("gzo,z->go", u, R[c, :, a]) + w * fu[a] for a in range(A)])
        u_new += pc[c] * qu.max(axis=0).sum(axis=1)
        best = ql.argmax(axis=0)  # (G, n_o)
        for a in range(A):
            m = (best == a).astype(float)
            vec = R[c, :, a][None, None, :] + w * TA[a][ks[a]]  # (G, n_o, Z)
            new_alpha += pc[c] * np.einsum("go,zo,goz->gz", m, O, vec)
    return new_alpha, u_new


def _grid_pass(model: FiniteHorizonPOMDP, grid: _Freudenthal) -> tuple[list[Any], list[Any], float, float]:
    """Backward induction on one grid: per-epoch alpha sets and upper values, and the bounds at ``b0``."""
    H, Z = model.horizon, model.n_hidden
    P = grid.points
    alphas: list[Any] = [None] * (H + 1)
    uvals: list[Any] = [None] * (H + 1)
    alphas[H] = np.zeros((1, Z))
    uvals[H] = np.zeros(len(P))
    lo = hi = 0.0
    for i in range(H - 1, -1, -1):
        beta = model.b0[None, :] if i == 0 else P
        new_alpha, u_new = _backup(model, i, beta, grid, alphas[i + 1], uvals[i + 1])
        if i == 0:
            lo = float(new_alpha[0] @ model.b0)
            hi = float(max(u_new[0], lo))
        else:
            alphas[i] = _prune_alphas(new_alpha)
            uvals[i] = np.maximum(u_new, (P @ alphas[i].T).max(axis=1))
    return alphas, uvals, lo, hi


def solve_general(
    model: FiniteHorizonPOMDP,
    *,
    precision: float,
    time_limit: float | None,
    mode: str,
    grid_size: int,
    max_grid: int,
    name: str,
) -> FiniteHorizonAlphaPolicy:
    """Solve ``model`` on Freudenthal grids of doubling resolution (one pass at ``grid_size`` in ``grid`` mode).

    The keyword arguments are the settings of :class:`~.solver.FiniteHorizonSolver`; ``name`` is the solver name
    written into the report.
    """
    start = time.perf_counter()
    deadline = None if time_limit is None else start + float(time_limit)
    Z = model.n_hidden
    res = max(2, grid_size if mode == "grid" else 4)
    iterations = 0
    while True:
        iterations += 1
        grid = _Freudenthal(Z, res)
        alphas, uvals, lo, hi = _grid_pass(model, grid)
        timed_out = deadline is not None and time.perf_counter() >= deadline
        if mode == "grid" or hi - lo <= precision or timed_out or len(simplex_grid(Z, 2 * res)) > max_grid:
            break
        res *= 2
    H = model.horizon
    info = SolveInfo(
        solver=name,
        seconds=time.perf_counter() - start,
        iterations=iterations,
        lower_bound=lo,
        upper_bound=hi,
        converged=bool(hi - lo <= precision + 1e-12),
        sizes={
            "states": Z,
            "actions": model.n_actions,
            "observations": int(max(o.shape[1] for o in model.observation)),
            "alpha_vectors": int(sum(len(a) for a in alphas[1:H])),
            "horizon": H,
            "contexts": model.n_contexts,
            "grid_points": len(grid.points),
            "resolution": res,
        },
        extra={"mode": "simplex", "precision": precision, "time_limit": time_limit},
    )
    return FiniteHorizonAlphaPolicy(model, alphas, uvals, res, info)
