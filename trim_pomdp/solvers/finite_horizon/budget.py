"""Certified backward induction for a finite-horizon POMDP with a hard budget on one action.

The budget is a fully observed, deterministic part of the state: ``B ∈ {0 … n_levels − 1}`` units remain; the
budgeted action (index 1, ``regenerate`` in the TRIM-POMDP) at context ``c`` costs ``cost[c] ≥ 1`` units and is
unavailable when ``cost[c] > B``; every other action keeps ``B``. The value ``W_t^B`` of each level is then the
ordinary backup of the model in which the budgeted action's future reads level ``B − cost[c]``.

With rank-2 dynamics (:mod:`~.segments`) every predicted belief from epoch 2 on is ``g v1 + (1 − g) v2``, so each
``W_t^B`` is a convex function of one variable ``g ∈ [0, 1]``. Per epoch and level, on a fixed grid of ``g``:

* **upper bound** ``U_t^B``: the exact Bellman backup of the piecewise-linear interpolation of ``U_{t+1}`` at the
  grid points (chords over-estimate a convex function and the backup is monotone, so ``U_t^B ≥ W_t^B``);
* **lower bound** ``L_t^B``: one alpha vector per grid point, the value of an actual conditional plan built from
  those of ``t + 1`` (point-based backups), so the upper envelope of their lines is ``≤ W_t^B``; the policy that
  is greedy with respect to ``L_{t+1}`` achieves at least ``L_t`` (the returned policy).

At epoch 1 both bounds are computed at ``b0`` itself (which need not lie on the segment).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError, SolverError
from trim_pomdp.solvers.finite_horizon.problem import FiniteHorizonPOMDP
from trim_pomdp.solvers.finite_horizon.segments import eval_envelope, segment_factorization, upper_envelope

__all__ = ["BudgetedPolicy", "solve_budgeted"]

#: The action the budget limits.
BUDGETED_ACTION = 1


@dataclass
class _Lines:
    """The lower bound of one ``(epoch, level)``: the upper envelope of lines ``at0 + (at1 − at0) g``."""

    at1: np.ndarray
    at0: np.ndarray
    breaks: np.ndarray
    alphas: np.ndarray  # (n_lines, Z): the alpha vectors the lines come from

    @classmethod
    def of(cls, alphas: np.ndarray, V: np.ndarray) -> _Lines:
        at1, at0 = alphas @ V[0], alphas @ V[1]
        keep, breaks = upper_envelope(at1, at0)
        return cls(at1[keep], at0[keep], breaks, alphas[keep])

    def __call__(self, x: Any) -> tuple[Any, Any]:
        return eval_envelope(self.at1, self.at0, self.breaks, x)


@dataclass
class BudgetedPolicy:
    """The solution of :func:`solve_budgeted`: per epoch and budget level, certified bounds on the value.

    Attributes
    ----------
    cost : ndarray of int, shape (n_contexts,)
        Units the budgeted action costs at each context.
    n_levels : int
        Budget levels ``0 … n_levels − 1``.
    grid : ndarray, shape (G,)
        The grid of the segment coordinate ``g`` on which every epoch ``t ≥ 2`` is solved.
    start_lower, start_upper : ndarray, shape (n_levels,)
        Bounds on the optimal value at ``b0`` with each level at the start: the lower bound is what the greedy
        policy earns at least, the upper bound is at least the optimal value.
    seconds : float
        Solve time.
    """

    reward: np.ndarray
    terminal: np.ndarray
    discount: float
    V: np.ndarray
    M: np.ndarray
    cost: np.ndarray
    n_levels: int
    grid: np.ndarray
    lines: list[list[_Lines]]  # [epoch index][level], epochs 1 … H-1 (index 0 is unused: epoch 1 is b0)
    upper: list[np.ndarray]  # [epoch index] (n_levels, G) upper-bound values on the grid
    start_lower: np.ndarray
    start_upper: np.ndarray
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return int(self.reward.shape[0])

    def gap(self, level: int | None = None) -> float:
        """Certified gap ``upper − lower`` at ``b0`` (at the highest level by default)."""
        b = self.n_levels - 1 if level is None else int(level)
        return float(self.start_upper[b] - self.start_lower[b])

    def action_values(
        self, t: int, ctx: int, belief: Any, level: int, *, upper: bool = False
    ) -> tuple[float, float]:
        """Q-values of (action 0, budgeted action) at epoch ``t``, context ``ctx``, posterior ``belief``, ``level``.

        The lower-bound values by default (the greedy policy's); ``upper=True`` gives upper bounds. An action
        that does not fit the level is ``-inf``.
        """
        i, c, B = int(t) - 1, int(ctx), int(level)
        if not (0 <= i < self.horizon) or not (0 <= B < self.n_levels):
            raise InvalidParameterError(
                f"t must be in 1..{self.horizon} and level in 0..{self.n_levels - 1}, got t={t}, level={level}"
            )
        b = np.asarray(belief, dtype=float)
        s = float(b.sum())
        out = []
        for a in (0, BUDGETED_ACTION):
            nxt = B - int(self.cost[c]) if a == BUDGETED_ACTION else B
            if nxt < 0:
                out.append(-np.inf)
                continue
            q = float(b @ self.reward[i, c, :, a])
            if not self.terminal[i, c] and s > 0:
                x = min(1.0, max(0.0, float(b @ self.M[a, :, 0]) / s))
                if upper:
                    f = float(np.interp(x, self.grid, self.upper[i + 1][nxt]))
                else:
                    f = float(self.lines[i + 1][nxt](x)[0])
                q += self.discount * s * f
            out.append(q)
        return out[0], out[1]


def _epoch(
    model: FiniteHorizonPOMDP,
    i: int,
    beta: np.ndarray,
    cost: np.ndarray,
    M: np.ndarray,
    nxt_lines: list[_Lines] | None,
    nxt_upper: np.ndarray | None,
    grid: np.ndarray,
    n_levels: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Backups of every level at predicted beliefs ``beta`` (P, Z) of epoch index ``i``.

    Returns the upper-bound values (n_levels, P) and one lower-bound alpha vector per level and belief
    (n_levels, P, Z). What does not depend on the level (immediate rewards, the next beliefs' coordinates, the
    next epoch's bounds there) is computed once.
    """
    O = model.observation[i]  # (Z, n_o)
    p = model.context_probs[i]
    ctx = np.flatnonzero(p > 0)
    pc, nt = p[ctx], ~model.terminal[i, ctx]
    R = model.reward[i][ctx]  # (c, Z, A)
    gamma = float(model.discount)
    P, Z = beta.shape
    n_c, n_o = ctx.size, O.shape[1]
    u = beta[:, :, None] * O[None, :, :]  # (P, Z, n_o)
    uz = u.transpose(1, 0, 2).reshape(Z, P * n_o)
    sig = u.sum(axis=1)  # (P, n_o)
    safe = np.where(sig > 0, sig, 1.0)
    imm = [(R[:, :, a] @ uz).reshape(n_c, P, n_o) for a in (0, 1)]
    # per action and next level: lower value, its line's ends, upper value (each (P, n_o), times sig)
    fut: list[list[tuple[np.ndarray, ...]]] = [[], []]
    if nxt_lines is not None and nt.any():
        assert nxt_upper is not None
        for a in (0, 1):
            x = np.clip((M[a, :, 0] @ uz).reshape(P, n_o) / safe, 0.0, 1.0)
            for level in range(n_levels):
                lines = nxt_lines[level]
                lv, k = lines(x)
                uv = np.interp(x, grid, nxt_upper[level])
                fut[a].append((gamma * sig * lv, lines.at1[k], lines.at0[k], gamma * sig * uv))
    # everything per level at once (in chunks of levels, to bound memory): (levels, c, P, n_o) arrays
    ROt = [R[:, :, a][:, None, :] * O.T[None, :, :] for a in (0, 1)]  # (c, n_o, Z): R[c, z, a] O[z, o]
    d_imm = ROt[1] - ROt[0]
    base0 = pc @ R[:, :, 0]  # (Z,): the value of continuing everywhere, immediate part (rows of O sum to 1)
    wnt = pc * gamma * nt  # (c,)
    upper = np.empty((n_levels, P))
    alphas = np.empty((n_levels, P, Z))
    has_future = bool(fut[0])
    if has_future:
        F = [np.stack([f[k] for f in fut[a]]) for a in (0, 1) for k in (0, 3)]  # lower/upper, per level
        E = [np.stack([f[k] for f in fut[a]]) for a in (0, 1) for k in (1, 2)]  # line ends, per level
    chunk = max(1, int(4_000_000 // max(1, n_c * P * n_o)))
    for lo in range(0, n_levels, chunk):
        Bs = np.arange(lo, min(n_levels, lo + chunk))
        idx1 = Bs[:, None] - cost[ctx][None, :]  # (L, c) next level of the budgeted action
        fits = idx1 >= 0
        j1 = np.maximum(idx1, 0)
        ql0 = np.broadcast_to(imm[0], (Bs.size, n_c, P, n_o)).copy()
        ql1 = np.broadcast_to(imm[1], (Bs.size, n_c, P, n_o)).copy()
        qu0, qu1 = ql0.copy(), ql1.copy()
        if has_future:
            ntb = nt[None, :, None, None]
            ql0 += np.where(ntb, F[0][Bs][:, None], 0.0)
            qu0 += np.where(ntb, F[1][Bs][:, None], 0.0)
            ql1 += np.where(ntb, F[2][j1], 0.0)
            qu1 += np.where(ntb, F[3][j1], 0.0)
        ql1[~fits] = -np.inf
        qu1[~fits] = -np.inf
        upper[Bs] = np.einsum("c,lcpo->lp", pc, np.maximum(qu0, qu1))
        best = ql1 > ql0  # ties continue
        del qu0, qu1, ql0, ql1
        m = best.transpose(0, 2, 1, 3).reshape(Bs.size * P, n_c * n_o).astype(float)
        alpha = base0[None] + m @ (pc[:, None, None] * d_imm).reshape(n_c * n_o, Z)
        alpha = alpha.reshape(Bs.size, P, Z)
        if has_future:
            wm = wnt[None, :, None, None] * best  # (L, c, P, n_o)
            w1 = wm.sum(axis=1)
            w0 = wnt.sum() - w1
            alpha += M[0, :, 0] * ((w0 * E[0][Bs]) @ O.T) + M[0, :, 1] * ((w0 * E[1][Bs]) @ O.T)
            alpha += M[1, :, 0] * ((wm * E[2][j1]).sum(axis=1) @ O.T)
            alpha += M[1, :, 1] * ((wm * E[3][j1]).sum(axis=1) @ O.T)
        alphas[Bs] = alpha
    return upper, alphas


def solve_budgeted(
    model: FiniteHorizonPOMDP, cost: Any, n_levels: int, grid_points: int = 65
) -> BudgetedPolicy:
    """Solve ``model`` with a hard budget of ``n_levels − 1`` units on action 1 (see the module docstring).

    Parameters
    ----------
    model : FiniteHorizonPOMDP
        Two actions, rank-2 dynamics (the pooled TRIM-POMDP).
    cost : array-like of int, shape (n_contexts,)
        Units action 1 costs at each context (each ``≥ 1``).
    n_levels : int
        Number of budget levels (``≥ 1``); level ``n_levels − 1`` is the full budget.
    grid_points : int, default 65
        Points of the uniform grid of ``g`` per epoch and level (``≥ 2``); more points tighten the bounds.

    Returns
    -------
    BudgetedPolicy

    Raises
    ------
    SolverError
        The dynamics are not rank 2 (e.g. the TRIM-POMDP with difficulty classes).
    """
    start = time.perf_counter()
    model.check()
    if model.n_actions != 2:
        raise InvalidParameterError(f"the budgeted solver takes two actions, the model has {model.n_actions}")
    cost = np.asarray(cost, dtype=np.int64).reshape(-1)
    if cost.shape != (model.n_contexts,) or np.any(cost < 1):
        raise InvalidParameterError(
            f"cost must give every one of the {model.n_contexts} contexts an integer number of units >= 1, "
            f"got {cost.tolist()}"
        )
    n_levels, grid_points = int(n_levels), int(grid_points)
    if n_levels < 1 or grid_points < 2:
        raise InvalidParameterError(f"need n_levels >= 1 and grid_points >= 2, got {n_levels}, {grid_points}")
    factor = segment_factorization(model.transition, anchor=model.b0)
    if factor is None:
        raise SolverError(
            "the budget-aware planner needs rank-2 dynamics (the pooled TRIM-POMDP, one difficulty class); "
            "this model's transitions do not lie on one segment"
        )
    V, M = factor.V, factor.M
    H = model.horizon
    grid = np.linspace(0.0, 1.0, grid_points)
    beta = grid[:, None] * V[0][None] + (1.0 - grid[:, None]) * V[1][None]
    lines: list[list[_Lines]] = [[] for _ in range(H)]
    upper: list[np.ndarray] = [np.empty(0)] * H
    nxt_lines: list[_Lines] | None = None
    nxt_upper: np.ndarray | None = None
    for i in range(H - 1, 0, -1):
        ups, alphas = _epoch(model, i, beta, cost, M, nxt_lines, nxt_upper, grid, n_levels)
        lines[i] = [_Lines.of(alphas[B], V) for B in range(n_levels)]
        upper[i] = ups
        nxt_lines, nxt_upper = lines[i], ups
    u0, a0 = _epoch(model, 0, model.b0[None], cost, M, nxt_lines, nxt_upper, grid, n_levels)
    hi, lo = u0[:, 0].copy(), a0[:, 0, :] @ model.b0
    return BudgetedPolicy(
        reward=model.reward,
        terminal=model.terminal,
        discount=float(model.discount),
        V=V,
        M=M,
        cost=cost,
        n_levels=n_levels,
        grid=grid,
        lines=lines,
        upper=upper,
        start_lower=lo,
        start_upper=hi,
        seconds=time.perf_counter() - start,
        meta=dict(model.meta),
    )
