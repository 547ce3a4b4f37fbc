"""``BeliefRouter``: a TRIM-POMDP policy plus a belief filter, with optional gated online re-planning.

Per proposed step the router

1. predicts the belief over ``(S0, S1, S2)`` with the action it returned at the previous step,
2. updates it with the PRM observation ``(r_t, m_t)`` (binned like the solver's model, or with the continuous
   KDE likelihood on request),
3. applies the gate of the paper (Appendix B): the policy is consulted only when ``b(S2)`` is within
   ``delta`` of ``max_z b(z)``; otherwise the router answers ``continue``,
4. answers the policy's action at ``(t, bucket(c_t), final, belief)`` — or, with a ``replan_solver``, the
   action of a policy solved again from the current belief (any :class:`~trim_pomdp.solvers.base.Solver`:
   the native finite-horizon solver gets the remaining-horizon structured model, any other solver gets
   ``trim_pomdp.flatten(start=(t, bucket, final, belief))``).

The native solver's policy is optimal for every belief at once, so re-planning with it changes nothing;
re-planning pays off with budgeted solvers (point-based, SARSOP) whose policies are good only near the beliefs
they were solved from.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp.constants import ACTIONS, S2
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.pomdp.belief import BeliefFilter
from trim_pomdp.pomdp.budget import strong_token_plan
from trim_pomdp.pomdp.policy import TrimPolicy
from trim_pomdp.solvers.finite_horizon import FiniteHorizonPOMDP, FiniteHorizonSolver
from trim_pomdp.types import BatchObservation, StepObservation

__all__ = ["BeliefRouter", "gate_open"]


def gate_open(belief: np.ndarray, delta: float, z_class: Any = None) -> np.ndarray | bool:
    """The paper's re-planning gate: ``max_z b(z) - b(S2) <= delta`` (per row for a 2-D array).

    With difficulty classes pass the model's ``z_class``: ``b(z)`` is then the total over the classes.
    """
    b = np.asarray(belief, dtype=float)
    if z_class is not None and b.shape[-1] != 3:
        b = np.stack([b[..., np.asarray(z_class) == z].sum(axis=-1) for z in range(3)], axis=-1)
    out = b.max(axis=-1) - b[..., S2] <= delta
    return bool(out) if out.ndim == 0 else out


class BeliefRouter:
    """The TRIM-POMDP router to embed in a generation loop.

    Parameters
    ----------
    policy : TrimPolicy
        A solved policy (:func:`~trim_pomdp.pomdp.solve_trim`, or ``TrimPolicy.load``).
    trim_pomdp : TrimPOMDP, optional
        The model the policy was solved for (its filter, token buckets and, for re-planning, its arrays).
        Default: rebuilt from the parameters and observation arrays stored in the policy.
    replan_solver : Solver, optional
        Re-solve from the current belief at every (gated) decision with this solver. ``None``: use ``policy``.
    delta : float, default 0.375
        Gate width (the paper uses 0.35–0.40).
    gate : bool, default True
        Apply the gate. ``False`` consults the policy (or re-plans) at every step.
    continuous_likelihood : bool, default False
        Update the belief with the continuous KDE density of ``(r, m)`` instead of its bin (needs an
        observation model with ``likelihood(r, m, continuous=True)``, e.g. a fitted
        :class:`~trim_pomdp.observation_models.observation.ObservationModel`). The default uses the same bins
        as the solver, so plan and filter agree.
    floor : float, optional
        Floor on likelihoods (see :class:`~trim_pomdp.pomdp.belief.BeliefFilter`); ``None`` raises
        :class:`~trim_pomdp.exceptions.ZeroLikelihoodError` on an observation no class explains.
    replan : Solver, optional
        Alias of ``replan_solver``.
    replan_cache : bool or "auto", default "auto"
        Re-use the remaining-horizon solution of an epoch across re-plans (native solver only; other solvers
        re-solve ``flatten(start=...)`` every time). The first re-plan at epoch ``t`` always solves afresh
        from the current belief; later ones at the same epoch re-use that solution when it is valid for the
        new belief: in the native ``"exact"`` and ``"grid"`` modes the solution does not depend on the start
        belief at all, and in ``"auto"`` mode it is re-used only while its certified gap at the new belief and
        context is within the solver's ``precision`` — the guarantee a fresh solve would give — else solved
        again. ``"auto"`` (default) does this; ``True`` re-uses without the certificate check; ``False``
        always re-solves.
    max_strong_tokens : float, optional
        A hard cap on M_s output tokens per query. The router then plans with the remaining budget: the
        budget-aware TRIM-POMDP of :mod:`trim_pomdp.pomdp.budget`, solved with certified bounds when the router
        is made (for the shipped model, 3–8 s on a busy 2-core machine, ``python benchmarks/budget.py``). It
        never orders a regeneration whose planned cost does not fit what is left, and the generation loop never
        lets M_s write more than is left. ``None`` (or ``inf``): no cap. Not combined with ``replan_solver``.
    cap_mode : {"plan", "clip"}, default "plan"
        ``"clip"``: the uncapped policy, with regenerations refused once the budget cannot pay their expected
        tokens (the after-the-fact baseline the planner is compared with).
    budget_levels, budget_grid : int, default 32, 33
        Units the cap is divided into, and grid points per epoch and level of the budget-aware solver.

    Attributes
    ----------
    belief : ndarray of shape (3,)
        Posterior over (S0, S1, S2) after the last observation (the prior before the first).
    last_decision : dict
        ``t``, ``bucket``, ``final``, ``predicted`` (belief before the observation), ``belief`` (after),
        ``gate_open``, ``source`` (``"gate"``, ``"policy"`` or ``"replan"``), ``values`` (per-action values
        the decision used; the policy's when the gate closed), ``action`` and, after a re-plan,
        ``replan_seconds``.

    Examples
    --------
    >>> router = BeliefRouter.load("policies/lam-5e-04")            # doctest: +SKIP
    >>> router.reset()                                               # doctest: +SKIP
    >>> router.decide(StepObservation(1, (0.93,), 118, False))       # doctest: +SKIP
    'continue'
    """

    def __init__(
        self,
        policy: TrimPolicy,
        trim_pomdp: Any = None,
        replan_solver: Any = None,
        delta: float = 0.375,
        gate: bool = True,
        continuous_likelihood: bool = False,
        *,
        floor: float | None = None,
        replan: Any = None,
        replan_cache: bool | str = "auto",
        max_strong_tokens: float | None = None,
        cap_mode: str = "plan",
        budget_levels: int = 32,
        budget_grid: int = 33,
    ) -> None:
        if not isinstance(policy, TrimPolicy):
            raise InvalidParameterError(
                "policy must be a TrimPolicy (solve_trim(...) or TrimPolicy.load(dir)), "
                f"got {type(policy).__name__}"
            )
        if replan is not None and replan_solver is not None and replan is not replan_solver:
            raise InvalidParameterError(
                "pass the re-planning solver once: replan_solver=... (replan is its alias)"
            )
        replan_solver = replan_solver if replan_solver is not None else replan
        if replan_solver is not None and not callable(getattr(replan_solver, "solve", None)):
            raise InvalidParameterError(
                f"replan_solver must have a solve(model) method, got {type(replan_solver).__name__}"
            )
        if not (isinstance(delta, (int, float, np.floating)) and 0.0 <= delta <= 1.0):
            raise InvalidParameterError(f"delta must be a float in [0, 1], got {delta!r}")
        self.policy = policy
        self.trim_pomdp = trim_pomdp if trim_pomdp is not None else policy.trim_pomdp()
        if self.trim_pomdp.horizon != policy.horizon or self.trim_pomdp.n_buckets != policy.n_buckets:
            raise InvalidParameterError(
                f"the policy (H={policy.horizon}, K={policy.n_buckets}) was not solved for this model "
                f"(H={self.trim_pomdp.horizon}, K={self.trim_pomdp.n_buckets})"
            )
        self.replan_solver = replan_solver
        if replan_cache not in (True, False, "auto"):
            raise InvalidParameterError(f"replan_cache must be True, False or 'auto', got {replan_cache!r}")
        native = isinstance(replan_solver, FiniteHorizonSolver)
        if not native or replan_cache is False:
            self._cache_mode = "off"
        elif replan_cache is True or replan_solver.mode in ("exact", "grid"):
            self._cache_mode = "always"
        else:
            self._cache_mode = "certified"
        self.replan_cache = replan_cache
        self._replan_memo: dict[int, Any] = {}
        self.n_replans_cached = 0
        self.delta = float(delta)
        self.gate = bool(gate)
        self.continuous_likelihood = bool(continuous_likelihood)
        self.filter = BeliefFilter(self.trim_pomdp, floor=floor, continuous=self.continuous_likelihood)
        self.floor = floor
        self._bucket_edges = [float(x) for x in np.asarray(self.trim_pomdp.params.bucket_edges)]
        self._z_class = [int(z) for z in getattr(self.trim_pomdp, "z_class", range(3))]
        self._structured: FiniteHorizonPOMDP | None = None
        self.n_replans = 0
        self.replan_seconds = 0.0
        # -- hard cap on strong tokens (trim_pomdp/pomdp/budget.py) --
        if max_strong_tokens is not None and replan_solver is not None:
            raise InvalidParameterError("max_strong_tokens plans with its own solver: drop replan_solver")
        self._budget_args: dict[str, Any] = {
            "mode": cap_mode,
            "levels": budget_levels,
            "grid_points": budget_grid,
        }
        self.budget = strong_token_plan(
            self.trim_pomdp, max_strong_tokens, policy=policy, **self._budget_args
        )
        # -- end of the cap --
        self.reset()

    # -- construction -----
    @classmethod
    def load(cls, directory: str | Path, *, observation_model: Any = None, **kwargs: Any) -> BeliefRouter:
        """A router from ``trim-pomdp solve`` output (``DIR/policy.npz`` + ``DIR/policy.json``).

        The model is rebuilt from the parameters and observation-model arrays stored with the policy.
        ``observation_model`` (an object or a path for ``ObservationModel.load``) replaces the stored arrays'
        model, e.g. for ``continuous_likelihood=True``; it must have the same bins. Other keyword arguments go
        to the constructor.
        """
        d = Path(directory)
        if d.is_dir() and not (d / "policy.npz").exists():
            subs = sorted(p.parent.name for p in d.glob("*/policy.npz"))
            if subs:
                raise InvalidParameterError(
                    f"{d} holds a λ sweep, not one policy: pass one of its sub-directories, "
                    f"e.g. {d / subs[0]} "
                    f"(available: {', '.join(subs[:8])}{' ...' if len(subs) > 8 else ''})"
                )
        policy = TrimPolicy.load(directory)
        trim = policy.trim_pomdp()
        if observation_model is not None:
            if isinstance(observation_model, (str, Path)):
                from trim_pomdp.observation_models.observation import ObservationModel

                observation_model = ObservationModel.load(observation_model)
            from trim_pomdp.pomdp.problem import TrimPOMDP

            new = TrimPOMDP(trim.params, observation_model)
            for t in (1, 2):
                a, b = np.asarray(new.observation_probs(t)), np.asarray(trim.observation_probs(t))
                if a.shape != b.shape or not np.allclose(a, b, atol=1e-9):
                    raise InvalidParameterError(
                        "the observation model passed to BeliefRouter.load differs from the one the policy "
                        "was solved with; solve again with it (trim-pomdp solve --obs ...)"
                    )
            trim = new
        return cls(policy, trim, **kwargs)

    @classmethod
    def from_defaults(
        cls, lam: float = 5e-4, *, solver: Any = None, observation_model: Any = None, **kwargs: Any
    ) -> BeliefRouter:
        """Solve the shipped default TRIM-POMDP for ``lam`` (native solver unless ``solver`` is given).

        ``observation_model`` (an object, or a path for ``ObservationModel.load``) replaces the shipped one.
        Other keyword arguments go to the constructor (``gate``, ``delta``, ``replan_solver``, ...).
        """
        from trim_pomdp.pomdp.defaults import default_observation_model, load_default_params
        from trim_pomdp.pomdp.policy import solve_trim
        from trim_pomdp.pomdp.problem import build_trim_pomdp

        if observation_model is None:
            observation_model = default_observation_model()
        elif isinstance(observation_model, (str, Path)):
            from trim_pomdp.observation_models.observation import ObservationModel

            observation_model = ObservationModel.load(observation_model)
        trim = build_trim_pomdp(load_default_params(lam=float(lam)), observation_model)
        return cls(solve_trim(trim, solver), trim, **kwargs)

    def with_max_strong_tokens(self, max_strong_tokens: float | None) -> BeliefRouter:
        """The same router (policy, model, gate, filter) planning with a cap of ``max_strong_tokens`` per query."""
        return type(self)(
            self.policy,
            self.trim_pomdp,
            None,
            self.delta,
            self.gate,
            self.continuous_likelihood,
            floor=self.floor,
            max_strong_tokens=max_strong_tokens,
            cap_mode=self._budget_args["mode"],
            budget_levels=self._budget_args["levels"],
            budget_grid=self._budget_args["grid_points"],
        )

    @property
    def max_strong_tokens(self) -> float | None:
        """The cap on M_s tokens per query (``None``: none)."""
        return None if self.budget is None else self.budget.max_strong_tokens

    @property
    def strong_tokens_left(self) -> float | None:
        """M_s tokens the current query may still spend, the step just ordered included (``None``: no cap)."""
        return None if self.budget is None else max(0.0, self._strong_left)

    def spent_strong(self, tokens: int) -> None:
        """Called by the loop with the M_s tokens a regeneration actually spent (replaces the expected charge)."""
        self._strong_left -= float(tokens)
        self._charge = 0.0

    def __repr__(self) -> str:
        rp = "" if self.replan_solver is None else f", replan_solver={type(self.replan_solver).__name__}"
        cap = "" if self.budget is None else f", max_strong_tokens={self.budget.max_strong_tokens:g}"
        return f"BeliefRouter(λ={self.policy.lam:g}, delta={self.delta}, gate={self.gate}{rp}{cap})"

    @property
    def lam(self) -> float:
        return self.policy.lam

    # -- single-query API -----
    def reset(self) -> None:
        """Start a new query: the belief returns to the prior ``(p_w, 0, 1 - p_w)`` (with difficulty classes,
        ``π(d) p_w(d)`` on ``S0|d`` and ``π(d) (1 − p_w(d))`` on ``S2|d``)."""
        prior = self.filter.prior()
        self._post = tuple(float(x) for x in prior)
        self._t = 0
        self._a: int | None = None
        self._last: dict[str, Any] = {}
        self._strong_left = math.inf if self.budget is None else self.budget.max_strong_tokens
        self._charge = 0.0  # expected tokens of a regeneration the loop has not reported yet

    @property
    def belief(self) -> np.ndarray:
        return np.array(self._post)

    @property
    def last_decision(self) -> dict[str, Any]:
        return dict(self._last)

    def decide(self, obs: StepObservation) -> str:
        """Update the belief with ``obs`` and return ``"continue"`` or ``"regenerate"``."""
        t = obs.t
        if t != self._t + 1:
            raise InvalidParameterError(
                f"BeliefRouter expected step t = {self._t + 1} but got t = {t}: call reset() before each "
                "query and decide() once per proposed step"
            )
        if t > self.trim_pomdp.horizon:
            raise InvalidParameterError(
                f"step t = {t} is beyond the model's horizon H = {self.trim_pomdp.horizon}: the episode "
                "should have ended (the caller truncates solutions at H steps)"
            )
        r, m = obs.score, obs.prefix_min
        if not (0.0 <= r <= 1.0) or (m is not None and not (0.0 <= m <= 1.0)):
            raise InvalidParameterError(f"PRM scores must lie in [0, 1], got r = {r!r}, m = {m!r}")
        # 1.-2. predict with the action returned at the previous step, correct with the observation
        pred, b, _ = self.filter.update_floats(self._post, self._a, t, r, m)
        # 3.-4. gate, then the policy or a re-plan
        bucket = bisect_right(self._bucket_edges, float(obs.tokens))
        final = bool(obs.final)
        if len(b) == 3:
            is_open = (max(b) - b[2]) <= self.delta
        else:  # difficulty classes: the gate looks at the totals of S0, S1, S2
            zb = [0.0, 0.0, 0.0]
            for z, x in zip(self._z_class, b, strict=True):
                zb[z] += x
            is_open = (max(zb) - zb[2]) <= self.delta
        decision: dict[str, Any] = {}
        if self.replan_solver is not None and (is_open or not self.gate):
            values, decision["replan_seconds"] = self._replan(t, bucket, final, np.array(b))
            source = "replan"
        else:
            values = self.policy.action_values_floats(t, 2 * bucket + int(final), b)
            source = "policy"
        if self.budget is not None:  # -- hard cap: plan with the tokens left (pomdp/budget.py) --
            self._strong_left -= self._charge
            self._charge = 0.0
            values = self.budget.action_values(t, bucket, final, b, self._strong_left, uncapped=values)
            decision["strong_tokens_left"] = self._strong_left
        if self.gate and not is_open:
            action, source = 0, "gate"
        else:
            action = 1 if values[1] > values[0] else 0
        if action == 1 and self.budget is not None:
            self._charge = float(self.budget.strong_tokens[bucket])
        self._post, self._a, self._t = b, action, t
        decision.update(
            t=t,
            bucket=bucket,
            final=final,
            predicted=list(pred),
            belief=list(b),
            gate_open=is_open,
            source=source,
            values=[float(values[0]), float(values[1])],
            action=ACTIONS[action],
        )
        self._last = decision
        return ACTIONS[action]

    # -- re-planning -----
    def _remaining_model(
        self, t: int, bucket: int | None, final: bool, belief: np.ndarray
    ) -> FiniteHorizonPOMDP:
        """The structured model of epochs ``t … H`` starting after epoch ``t``'s observation.

        The observed context has probability 1 (``bucket=None``: the model's context distribution). The
        rewards of every context of epoch ``t`` stay in the model, so its solution answers any of them.
        """
        if self._structured is None:
            self._structured = self.trim_pomdp.structured()
        fh = self._structured
        if bucket is None:
            first_ctx = fh.context_probs[t - 1 : t]
        else:
            first_ctx = np.zeros((1, fh.n_contexts))
            first_ctx[0, 2 * bucket + int(final)] = 1.0
        return FiniteHorizonPOMDP(
            transition=fh.transition,
            observation=[np.ones((fh.n_hidden, 1)), *fh.observation[t:]],  # epoch t's observation is in b
            context_probs=np.vstack([first_ctx, fh.context_probs[t:]]),
            terminal=fh.terminal[t - 1 :],
            reward=fh.reward[t - 1 :],
            b0=belief,
            discount=fh.discount,
            hidden_names=fh.hidden_names,
            action_names=fh.action_names,
            meta=dict(fh.meta, start={"t": t, "bucket": bucket, "final": bool(final)}),
            vertices=fh.vertices,
        )

    def replan_values(self, t: int, bucket: int, final: bool, belief) -> np.ndarray:
        """Per-action values at ``(t, bucket, final, belief)`` of a policy solved again from that belief."""
        if self.replan_solver is None:
            raise InvalidParameterError("this BeliefRouter has no replan_solver")
        values, _ = self._replan(int(t), int(bucket), bool(final), np.asarray(belief, dtype=float))
        return np.asarray(values)

    def _replan(
        self, t: int, bucket: int, final: bool, belief: np.ndarray
    ) -> tuple[tuple[float, float], float]:
        start = time.perf_counter()
        solver = self.replan_solver
        if isinstance(solver, FiniteHorizonSolver):
            ctx = 2 * bucket + int(final)
            q = None
            pol = self._replan_memo.get(t) if self._cache_mode != "off" else None
            if pol is not None:
                q = pol.action_values(1, ctx, belief)
                if self._cache_mode == "certified":
                    upper = pol.action_values(1, ctx, belief, upper=True)
                    if float(np.max(upper)) - float(np.max(q)) > solver.precision:
                        q = None  # not certified at this belief: solve again from it
                if q is not None:
                    self.n_replans_cached += 1
            if q is None:
                pol = solver.solve(self._remaining_model(t, bucket, final, belief))
                if self._cache_mode != "off":
                    self._replan_memo[t] = pol
                q = pol.action_values(1, ctx, belief)
        else:
            tab = self.trim_pomdp.flatten(start=(t, bucket, final, belief))
            alpha = solver.solve(tab)
            q = alpha.action_values(tab.b0, 2)
        seconds = time.perf_counter() - start
        self.n_replans += 1
        self.replan_seconds += seconds
        return (float(q[0]), float(q[1])), seconds

    def spent_strong_batch(self, tokens: Any) -> None:
        """The M_s tokens each row's last step actually spent (replaces the expected charge of its regeneration)."""
        if self.budget is not None:
            self._left_B += self._charge_B - np.asarray(tokens, dtype=float)
            self._charge_B[:] = 0.0

    @property
    def strong_tokens_left_batch(self) -> np.ndarray | None:
        """M_s tokens each parallel query may still spend (``None``: no cap)."""
        return None if self.budget is None else np.maximum(self._left_B, 0.0)

    # -- vectorised API -----
    def reset_batch(self, n: int) -> None:
        """Start ``n`` parallel queries."""
        prior = self.filter.prior()
        self._B = np.broadcast_to(prior, (int(n), prior.size)).copy()
        self._A = np.zeros(int(n), dtype=np.int64)
        self._left_B = np.full(int(n), math.inf if self.budget is None else self.budget.max_strong_tokens)
        self._charge_B = np.zeros(int(n))

    @property
    def beliefs(self) -> np.ndarray:
        """Posteriors ``(n, 3)`` of the parallel queries after the last :meth:`decide_batch`."""
        return self._B.copy()

    def decide_batch(self, obs: BatchObservation) -> np.ndarray:
        """Actions (0 continue, 1 regenerate) for every active row; the beliefs advance by one step."""
        n = obs.n
        if not hasattr(self, "_B") or self._B.shape[0] != n:
            raise InvalidParameterError(f"call reset_batch({n}) before decide_batch on {n} rows")
        out = np.zeros(n, dtype=np.int64)
        rows = np.flatnonzero(np.asarray(obs.active, dtype=bool))
        if rows.size == 0:
            return out
        t = np.asarray(obs.t)[rows]
        if t.max() > self.trim_pomdp.horizon:
            raise InvalidParameterError(
                f"step t = {int(t.max())} is beyond the model's horizon {self.trim_pomdp.horizon}"
            )
        post = self.filter.update_batch(self._B[rows], self._A[rows], obs, rows)
        bucket = getattr(obs, "bucket", None)
        if bucket is None:
            bucket = self.trim_pomdp.bucket_of(np.asarray(obs.tokens)[rows])
        else:
            bucket = np.asarray(bucket)[rows]
        bucket = np.atleast_1d(np.asarray(bucket, dtype=np.int64))
        final = np.asarray(obs.final, dtype=bool)[rows]
        ask = (
            np.asarray(gate_open(post, self.delta, self._z_class))
            if self.gate
            else np.ones(rows.size, dtype=bool)
        )
        a = np.zeros(rows.size, dtype=np.int64)
        if ask.any():
            if self.replan_solver is None:
                a[ask] = self.policy.action_batch(t[ask], bucket[ask], final[ask], post[ask])
                if self.budget is not None:  # -- hard cap: each row's tokens left (pomdp/budget.py) --
                    left = self._left_B[rows][ask]
                    a[ask] = self.budget.actions_batch(
                        t[ask], bucket[ask], final[ask], post[ask], left, a[ask]
                    )
            else:
                for j in np.flatnonzero(ask):
                    q, _ = self._replan(int(t[j]), int(bucket[j]), bool(final[j]), post[j])
                    a[j] = 1 if q[1] > q[0] else 0
        out[rows] = a
        if self.budget is not None:  # charged its expected tokens until spent_strong_batch says otherwise
            self._charge_B[:] = 0.0
            self._charge_B[rows] = a * self.budget.strong_tokens[bucket]
            self._left_B -= self._charge_B
        self._B[rows] = post
        self._A[rows] = a
        return out
