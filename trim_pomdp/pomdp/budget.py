"""A hard per-query cap on strong tokens for the TRIM-POMDP: the budget-aware model and its plan.

:class:`StrongTokenPlan` turns a cap of ``N`` strong tokens into the budget-aware TRIM-POMDP that
:func:`~trim_pomdp.solvers.finite_horizon.budget.solve_budgeted` solves with certified bounds:

* the remaining budget is counted in units ``u = N / levels`` and rounded **down**, so the plan never assumes
  budget it lacks (``level = floor(tokens_left / u)``);
* a regeneration in token bucket ``c`` costs ``ceil(strong_tokens[c] / u)`` units (at least one), where
  ``strong_tokens`` are the model's expected M_s tokens of a regeneration (:attr:`TrimParams.strong_tokens`);
  it is unavailable when it does not fit the level;
* ``V_t^B`` is solved for every level ``B`` (the ordinary backup; the regenerate branch reads ``B − cost``).

The plan answers per-action values at ``(t, bucket, final, belief, tokens_left)``. ``mode="clip"`` gives the
baseline the planner is compared with: the uncapped policy's values, with a regeneration refused once the
budget cannot pay its expected tokens (a clip applied after the fact).

The router (:class:`~trim_pomdp.routers.belief.BeliefRouter` with ``max_strong_tokens``) keeps the tokens left
of each query: the generation loop reports what each strong step actually spent and never lets M_s write more
than is left (:mod:`trim_pomdp.generation.loop`), so router and loop together never exceed ``N``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError, SolverError
from trim_pomdp.solvers.finite_horizon.budget import BudgetedPolicy, solve_budgeted

__all__ = ["CAP_MODES", "StrongTokenPlan", "strong_token_plan"]

#: ``plan``: the budget-aware TRIM-POMDP; ``clip``: the uncapped policy, regenerations refused once unaffordable.
CAP_MODES = ("plan", "clip")


def _check_cap(max_strong_tokens: Any) -> float | None:
    """``None`` for no cap (``None`` or ``inf``), else the cap as a float ``>= 0``."""
    if max_strong_tokens is None:
        return None
    try:
        n = float(max_strong_tokens)
    except (TypeError, ValueError):
        n = float("nan")
    if isinstance(max_strong_tokens, bool) or math.isnan(n) or n < 0:
        raise InvalidParameterError(
            f"max_strong_tokens must be a number of strong tokens >= 0 (or None for no cap), "
            f"got {max_strong_tokens!r}"
        )
    return None if math.isinf(n) else n


class StrongTokenPlan:
    """Routing values under a hard cap of ``max_strong_tokens`` M_s tokens per query.

    Parameters
    ----------
    trim_pomdp : TrimPOMDP
        The pooled model (one difficulty class).
    max_strong_tokens : float
        The cap ``N`` (``>= 0``).
    mode : {"plan", "clip"}, default "plan"
        ``plan`` solves the budget-aware model; ``clip`` uses ``policy`` and only refuses what does not fit.
    levels : int, default 32
        Budget units ``N`` is divided into (at most ``N`` units: a unit is at least one token).
    grid_points : int, default 33
        Grid points per epoch and level of the solver (more tighten the certified bounds).
    policy : TrimPolicy, optional
        The uncapped policy, required for ``mode="clip"``.

    Attributes
    ----------
    unit : float
        Tokens per budget unit.
    cost : ndarray of int, shape (n_buckets,)
        Units a regeneration costs per bucket.
    solution : BudgetedPolicy or None
        The solver's output (``mode="plan"``).
    """

    def __init__(
        self,
        trim_pomdp: Any,
        max_strong_tokens: float,
        *,
        mode: str = "plan",
        levels: int = 32,
        grid_points: int = 33,
        policy: Any = None,
    ) -> None:
        n = _check_cap(max_strong_tokens)
        if n is None:
            raise InvalidParameterError(
                "StrongTokenPlan needs a finite max_strong_tokens (None means no cap)"
            )
        if mode not in CAP_MODES:
            raise InvalidParameterError(f"cap mode must be one of {CAP_MODES}, got {mode!r}")
        if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
            raise InvalidParameterError(f"budget levels must be an integer >= 1, got {levels!r}")
        if mode == "clip" and policy is None:
            raise InvalidParameterError("cap mode 'clip' needs the uncapped policy")
        self.trim_pomdp = trim_pomdp
        self.max_strong_tokens = n
        self.mode = mode
        self.policy = policy
        self.strong_tokens = np.asarray(trim_pomdp.params.strong_tokens, dtype=float)
        units = max(1, min(int(levels), math.floor(n))) if n >= 1 else 1
        self.n_units = units if n >= 1 else 0
        self.unit = n / units if n >= 1 else 1.0
        self.cost = np.maximum(1, np.ceil(self.strong_tokens / self.unit - 1e-9)).astype(np.int64)
        self.solution: BudgetedPolicy | None = None
        if mode == "plan":
            if getattr(trim_pomdp, "n_classes", 1) != 1:
                raise InvalidParameterError(
                    "max_strong_tokens plans on the pooled TRIM-POMDP only (one difficulty class); this model "
                    f"has {trim_pomdp.n_classes} classes: solve it without difficulty classes, or use "
                    "cap mode 'clip'"
                )
            try:
                self.solution = solve_budgeted(
                    trim_pomdp.structured(), np.repeat(self.cost, 2), self.n_units + 1, grid_points
                )
            except SolverError as exc:  # pragma: no cover - the pooled model is rank 2
                raise InvalidParameterError(str(exc)) from exc

    def __repr__(self) -> str:
        return (
            f"StrongTokenPlan(N={self.max_strong_tokens:g}, mode={self.mode!r}, units={self.n_units}, "
            f"unit={self.unit:.3g} tokens)"
        )

    def level(self, tokens_left: float) -> int:
        """The budget level of ``tokens_left`` strong tokens (rounded down, at most the full budget)."""
        return int(min(self.n_units, max(0, math.floor(float(tokens_left) / self.unit + 1e-9))))

    def fits(self, bucket: int, tokens_left: float) -> bool:
        """Whether a regeneration in ``bucket`` fits the budget left (planned cost, or expected tokens)."""
        if self.mode == "clip":
            return bool(self.strong_tokens[int(bucket)] <= tokens_left + 1e-9) and tokens_left >= 1
        return bool(self.cost[int(bucket)] <= self.level(tokens_left))

    def bounds(self) -> tuple[float, float]:
        """Certified ``(lower, upper)`` bounds on the optimal capped value at the start (``mode="plan"``).

        The lower bound is the value the plan's greedy policy earns at least; the upper bound is at least the
        value of any policy that respects the cap.
        """
        if self.solution is None:
            raise InvalidParameterError("bounds are those of the budget-aware plan (cap mode 'plan')")
        return float(self.solution.start_lower[-1]), float(self.solution.start_upper[-1])

    def action_values(
        self, t: int, bucket: int, final: bool, belief: Any, tokens_left: float, uncapped: Any = None
    ) -> tuple[float, float]:
        """Values of (continue, regenerate) with ``tokens_left``; ``-inf`` for a regeneration that does not fit.

        ``uncapped`` (the uncapped policy's values at the same point) is what ``mode="clip"`` starts from;
        computed from :attr:`policy` when not given.
        """
        ctx = 2 * int(bucket) + int(bool(final))
        if self.solution is not None:
            return self.solution.action_values(t, ctx, belief, self.level(tokens_left))
        if uncapped is None:
            uncapped = self.policy.action_values(t, bucket, final, np.asarray(belief, dtype=float))
        q0, q1 = float(uncapped[0]), float(uncapped[1])
        return q0, (q1 if self.fits(bucket, tokens_left) else -math.inf)

    def actions_batch(
        self, t: Any, bucket: Any, final: Any, beliefs: Any, tokens_left: Any, uncapped: Any = None
    ) -> np.ndarray:
        """Actions (0/1) of many rows with their own ``tokens_left``; ``uncapped``: the uncapped policy's actions
        (``mode="clip"`` keeps them where the regeneration fits)."""
        t, bucket = np.asarray(t, dtype=np.int64), np.asarray(bucket, dtype=np.int64)
        final, left = np.asarray(final, dtype=bool), np.asarray(tokens_left, dtype=float)
        if self.solution is None:
            if uncapped is None:
                uncapped = self.policy.action_batch(t, bucket, final, beliefs)
            fits = (self.strong_tokens[bucket] <= left + 1e-9) & (left >= 1)
            return (np.asarray(uncapped, dtype=np.int64) * fits).astype(np.int64)
        out = np.zeros(t.size, dtype=np.int64)
        for j in range(t.size):
            q0, q1 = self.action_values(int(t[j]), int(bucket[j]), bool(final[j]), beliefs[j], float(left[j]))
            out[j] = int(q1 > q0)
        return out


def strong_token_plan(trim_pomdp: Any, max_strong_tokens: Any, **kwargs: Any) -> StrongTokenPlan | None:
    """A :class:`StrongTokenPlan`, or ``None`` when ``max_strong_tokens`` is ``None`` or infinite (no cap)."""
    n = _check_cap(max_strong_tokens)
    return None if n is None else StrongTokenPlan(trim_pomdp, n, **kwargs)
