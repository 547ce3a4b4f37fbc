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

import time
from bisect import bisect_right
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp.constants import ACTIONS, S2
from trim_pomdp.exceptions import InvalidParameterError, ZeroLikelihoodError
from trim_pomdp.pomdp.belief import BeliefFilter
from trim_pomdp.pomdp.policy import TrimPolicy
from trim_pomdp.solvers.finite_horizon import FiniteHorizonPOMDP, FiniteHorizonSolver
from trim_pomdp.types import BatchObservation, StepObservation

__all__ = ["BeliefRouter", "gate_open"]


def gate_open(belief: np.ndarray, delta: float) -> np.ndarray | bool:
    """The paper's re-planning gate: ``max_z b(z) - b(S2) <= delta`` (per row for a 2-D array)."""
    b = np.asarray(belief, dtype=float)
    out = b.max(axis=-1) - b[..., S2] <= delta
    return bool(out) if out.ndim == 0 else out


class _FastNative:
    """Scalar-Python Q-values of a native TrimPolicy at one belief (the same numbers, ~µs per call)."""

    @classmethod
    def of(cls, policy: TrimPolicy) -> _FastNative | None:
        """The fast evaluator of a native policy, or ``None`` (then the policy's own method is used)."""
        if policy.native is None:
            return None
        try:
            return cls(policy)
        except (AttributeError, TypeError, ValueError, IndexError):  # a solver layout this path does not know
            return None

    def __init__(self, policy: TrimPolicy):
        nat = policy.native
        self.reward = nat.reward
        self.terminal = nat.terminal
        self.discount = float(nat.discount)
        self.M0 = [[float(x) for x in row] for row in nat.factor.M[:, :, 0]]  # (A, Z)
        self.lines = nat.lines
        self.n_buckets = policy.n_buckets
        self._cache: dict[tuple[int, int], tuple] = {}

    def _entry(self, i: int, ctx: int) -> tuple:
        key = (i, ctx)
        e = self._cache.get(key)
        if e is None:
            r = [[float(x) for x in row] for row in self.reward[i, ctx]]  # (Z, A)
            term = bool(self.terminal[i, ctx])
            if term:
                e = (r, True, None, None, None)
            else:
                at1, at0, br = self.lines[i + 1]
                e = (r, False, [float(x) for x in at1], [float(x) for x in at0], [float(x) for x in br])
            self._cache[key] = e
        return e

    def q(self, t: int, ctx: int, b0: float, b1: float, b2: float) -> tuple[float, float]:
        r, term, at1, at0, br = self._entry(t - 1, ctx)
        q0 = b0 * r[0][0] + b1 * r[1][0] + b2 * r[2][0]
        q1 = b0 * r[0][1] + b1 * r[1][1] + b2 * r[2][1]
        if term:
            return q0, q1
        s = b0 + b1 + b2
        out = []
        for a, qa in ((0, q0), (1, q1)):
            m = self.M0[a]
            x = (b0 * m[0] + b1 * m[1] + b2 * m[2]) / s if s > 0 else 0.0
            k = bisect_right(br, x)
            out.append(qa + self.discount * s * (at0[k] + (at1[k] - at0[k]) * x))
        return out[0], out[1]


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
        obs = self.trim_pomdp.obs_model
        if self.continuous_likelihood and not getattr(obs, "has_densities", False):
            raise InvalidParameterError(
                "continuous_likelihood=True needs an observation model with "
                "likelihood(r, m, continuous=True) "
                "(a fitted ObservationModel); this model only has bin probabilities"
            )
        self.filter = BeliefFilter(self.trim_pomdp, floor=floor)
        self.floor = floor
        # scalar fast path
        self._edges = [
            float(x) for x in np.asarray(getattr(obs, "edges", np.linspace(0, 1, int(obs.n_bins) + 1)))
        ]
        self._n = int(obs.n_bins)
        self._lik1 = [
            tuple(float(v) for v in col) for col in np.asarray(self.trim_pomdp.observation_probs(1)).T
        ]
        self._lik2 = [
            tuple(float(v) for v in col) for col in np.asarray(self.trim_pomdp.observation_probs(2)).T
        ]
        self._pair_2d = len(self._lik2) == self._n * self._n
        self._T = [[[float(x) for x in row] for row in Ta] for Ta in np.asarray(self.trim_pomdp.transition)]
        self._bucket_edges = [float(x) for x in np.asarray(self.trim_pomdp.params.bucket_edges)]
        self._fast = _FastNative.of(policy)
        self._structured: FiniteHorizonPOMDP | None = None
        self.n_replans = 0
        self.replan_seconds = 0.0
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
                        "the observation model passed to BeliefRouter.load differs from the one the "
                        "policy was solved "
                        "with; solve again with it (trim-pomdp solve --observation-model ...)"
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

    def __repr__(self) -> str:
        rp = "" if self.replan_solver is None else f", replan_solver={type(self.replan_solver).__name__}"
        return f"BeliefRouter(λ={self.policy.lam:g}, delta={self.delta}, gate={self.gate}{rp})"

    @property
    def lam(self) -> float:
        return self.policy.lam

    # -- single-query API -----
    def reset(self) -> None:
        """Start a new query: the belief returns to the prior ``(p_w, 0, 1 - p_w)``."""
        prior = self.filter.prior()
        self._post = (float(prior[0]), float(prior[1]), float(prior[2]))
        self._t = 0
        self._a: int | None = None
        self._last: dict[str, Any] = {}

    @property
    def belief(self) -> np.ndarray:
        return np.array(self._post)

    @property
    def last_decision(self) -> dict[str, Any]:
        return dict(self._last)

    def _bin(self, x: float) -> int:
        i = bisect_right(self._edges, x) - 1
        return 0 if i < 0 else (self._n - 1 if i >= self._n else i)

    def _bucket(self, tokens: int) -> int:
        return bisect_right(self._bucket_edges, float(tokens))

    def decide(self, obs: StepObservation) -> str:
        """Update the belief with ``obs`` and return ``"continue"`` or ``"regenerate"``."""
        t = obs.t
        if t != self._t + 1:
            raise InvalidParameterError(
                f"BeliefRouter expected step t = {self._t + 1} but got t = {t}: "
                "call reset() before each query and "
                "decide() once per proposed step"
            )
        if t > self.trim_pomdp.horizon:
            raise InvalidParameterError(
                f"step t = {t} is beyond the model's horizon H = {self.trim_pomdp.horizon}: "
                "the episode should "
                "have ended (the caller truncates solutions at H steps)"
            )
        r = obs.score
        m = obs.prefix_min
        if not (0.0 <= r <= 1.0) or (m is not None and not (0.0 <= m <= 1.0)):
            raise InvalidParameterError(f"PRM scores must lie in [0, 1], got r = {r!r}, m = {m!r}")
        # 1. predict with the action returned at the previous step
        if self._a is None:
            p0, p1, p2 = self._post
        else:
            T = self._T[self._a]
            b0, b1, b2 = self._post
            p0 = b0 * T[0][0] + b1 * T[1][0] + b2 * T[2][0]
            p1 = b0 * T[0][1] + b1 * T[1][1] + b2 * T[2][1]
            p2 = b0 * T[0][2] + b1 * T[1][2] + b2 * T[2][2]
        # 2. update with the observation
        if self.continuous_likelihood:
            lik = tuple(float(v) for v in self.trim_pomdp.obs_model.likelihood(r, m, continuous=True))
            idx = None
        else:
            if t == 1:
                idx = self._bin(r)
                lik = self._lik1[idx]
            else:
                idx = self._bin(r) * self._n + self._bin(m) if self._pair_2d else self._bin(r)
                lik = self._lik2[idx]
        if self.floor is not None:
            lik = tuple(max(v, self.floor) for v in lik)
        q0, q1, q2 = p0 * lik[0], p1 * lik[1], p2 * lik[2]
        s = q0 + q1 + q2
        if not s > 0:
            raise ZeroLikelihoodError(
                f"the observation r = {r}, m = {m} at t = {t} has zero likelihood under the predicted belief "
                f"{[p0, p1, p2]} (pass floor=... to BeliefRouter to floor likelihoods instead)",
                belief=np.array([p0, p1, p2]),
                action=self._a,
                observation={"t": t, "r": r, "m": m, "bin": idx},
            )
        b = (q0 / s, q1 / s, q2 / s)
        # 3.-4. gate, policy or re-plan
        bucket = self._bucket(obs.tokens)
        final = bool(obs.final)
        ctx = 2 * bucket + int(final)
        is_open = (max(b) - b[2]) <= self.delta
        decision: dict[str, Any] = {}
        if self.replan_solver is not None and (is_open or not self.gate):
            values, seconds = self._replan(t, bucket, final, np.array(b))
            source = "replan"
            decision["replan_seconds"] = seconds
        elif self._fast is not None:
            values = self._fast.q(t, ctx, *b)
            source = "policy"
        else:
            values = tuple(float(v) for v in self.policy.action_values(t, bucket, final, np.array(b)))
            source = "policy"
        if self.gate and not is_open:
            action, source = 0, "gate"
        else:
            action = 1 if values[1] > values[0] else 0
        self._post, self._a, self._t = b, action, t
        decision.update(
            t=t,
            bucket=bucket,
            final=final,
            predicted=[p0, p1, p2],
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
            observation=[np.ones((fh.n_hidden, 1))]
            + list(fh.observation[t:]),  # the epoch-t observation is in b
            context_probs=np.vstack([first_ctx, fh.context_probs[t:]]),
            terminal=fh.terminal[t - 1 :],
            reward=fh.reward[t - 1 :],
            b0=belief,
            discount=fh.discount,
            hidden_names=fh.hidden_names,
            action_names=fh.action_names,
            meta=dict(fh.meta, start={"t": t, "bucket": bucket, "final": bool(final)}),
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

    # -- vectorised API -----
    def reset_batch(self, n: int) -> None:
        """Start ``n`` parallel queries."""
        self._B = np.broadcast_to(self.filter.prior(), (int(n), 3)).copy()
        self._pending = np.zeros(int(n), dtype=bool)  # rows whose belief still needs the predict step
        self._A = np.zeros(int(n), dtype=np.int64)

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
        pred = self._B[rows]
        pend = self._pending[rows]
        if pend.any():
            pred[pend] = self.filter.predict_batch(pred[pend], self._A[rows][pend])
        if self.continuous_likelihood:
            r, m = obs.score[rows], obs.prefix_min[rows]
            lik = np.array(
                [
                    self.trim_pomdp.obs_model.likelihood(
                        float(ri), None if ti == 1 else float(mi), continuous=True
                    )
                    for ri, mi, ti in zip(r, m, t, strict=True)
                ]
            )
            if self.floor is not None:
                lik = np.maximum(lik, self.floor)
            post = pred * lik
            s = post.sum(axis=1)
            if np.any(~(s > 0)):
                i = int(np.flatnonzero(~(s > 0))[0])
                raise ZeroLikelihoodError(
                    f"row {int(rows[i])}: observation has zero likelihood", belief=pred[i]
                )
            post = post / s[:, None]
        else:
            idx = getattr(obs, "obs_index", None)
            if idx is not None:
                post = self.filter.update_index_batch(pred, t, np.asarray(idx)[rows])
            else:
                post = self.filter.update_batch(pred, t, obs.score[rows], obs.prefix_min[rows])
        bucket = getattr(obs, "bucket", None)
        bucket = (
            np.asarray(bucket)[rows]
            if bucket is not None
            else self.trim_pomdp.bucket_of(np.asarray(obs.tokens)[rows])
        )
        bucket = np.atleast_1d(np.asarray(bucket, dtype=np.int64))
        final = np.asarray(obs.final, dtype=bool)[rows]
        is_open = gate_open(post, self.delta)
        ask = is_open if self.gate else np.ones(rows.size, dtype=bool)
        a = np.zeros(rows.size, dtype=np.int64)
        if ask.any():
            if self.replan_solver is None:
                a[ask] = self.policy.action_batch(t[ask], bucket[ask], final[ask], post[ask])
            else:
                for j in np.flatnonzero(ask):
                    q, _ = self._replan(int(t[j]), int(bucket[j]), bool(final[j]), post[j])
                    a[j] = 1 if q[1] > q[0] else 0
        out[rows] = a
        self._B[rows] = post
        self._A[rows] = a
        self._pending[rows] = True
        return out
