"""The TRIM-POMDP: structured finite-horizon form and flattened tabular form.

The model and its choices are described in ``docs/design.md`` ("The TRIM-POMDP").

Hidden class ``z ∈ {S0, S1, S2}`` (indices 0, 1, 2); observed context ``(t, c, final)`` with ``c`` the token
bucket of M_w's proposal; observation ``o`` the bin of the PRM pair ``(r_t, m_t)`` (the ``r_t`` bin alone at
``t = 1``).

Contexts are indexed ``ctx = 2 * bucket + final``.

With ``D`` difficulty classes (:class:`~trim_pomdp.pomdp.params.DifficultyClasses`) the hidden state is the pair
``(z, d)``, except that the prefix-lost class S1 is one state for all classes: once the prefix is wrong nothing
that follows depends on ``d`` (same observations, no reward, the same cost of a regeneration), so the merged
state is exact (a bisimulation quotient) and keeps the belief ``2D + 1``-dimensional. The hidden states are, in
order, ``S0|d1, S1, S2|d1, S0|d2, S2|d2, …`` (:func:`hidden_layout`), so that ``D = 1`` is the pooled model's
``(S0, S1, S2)``. Every transition row is then a mixture of ``D + 1`` vertex distributions — each class's next
proposal ``(S0|d: p_w(d), S2|d: 1 − p_w(d))`` and S1 — which is what the finite-horizon solver exploits.

Dynamics between epochs (``continue`` = 0, ``regenerate`` = 1)::

    continue:   S0 -> (S0 p_w, S2 1-p_w);  S1, S2 -> S1
    regenerate: S0, S2 -> (S0 p_s p_w, S1 1-p_s, S2 p_s (1-p_w));  S1 -> S1

The regeneration is composed explicitly: the strong step is right w.p. ``p_s`` (else the prefix is lost, S1),
then M_w's next proposal is right w.p. ``p_w``. At a terminal context (``final`` or ``t = H``) the episode
ends after the action with reward ``R`` if the final prefix is correct (continue: ``z = S0``; regenerate: w.p.
``p_s`` if ``z ∈ {S0, S2}``). ``regenerate`` costs ``λ · strong_weak_ratio · bucket_mean_tokens[c]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trim_pomdp._internal.simplex import check_stochastic
from trim_pomdp.exceptions import InvalidParameterError, ModelCheckError
from trim_pomdp.pomdp.params import TrimParams
from trim_pomdp.solvers.finite_horizon import FiniteHorizonPOMDP
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["TrimPOMDP", "build_trim_pomdp", "context_index", "hidden_layout", "transition_matrices"]


def context_index(bucket, final):
    """Context index ``2 * bucket + final`` (vectorised)."""
    return 2 * np.asarray(bucket, dtype=np.int64) + np.asarray(final, dtype=np.int64)


def hidden_layout(n_classes: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(z_class, d_class, names)`` of the hidden states with ``n_classes`` difficulty classes.

    ``z_class[k]`` is the class S0/S1/S2 (0, 1, 2) of state ``k`` and ``d_class[k]`` its difficulty class
    (``-1`` for the shared S1). One class gives ``(S0, S1, S2)``.
    """
    D = int(n_classes)
    if D < 1:
        raise InvalidParameterError(f"the number of difficulty classes must be >= 1, got {D}")
    z = [0, 1, 2] + [c for _ in range(1, D) for c in (0, 2)]
    d = [0, -1, 0] + [k for k in range(1, D) for _ in (0, 2)]
    if D == 1:
        return np.array(z), np.array(d), ["S0", "S1", "S2"]
    names = [("S1" if dd < 0 else f"{('S0', 'S1', 'S2')[zz]}|d{dd + 1}") for zz, dd in zip(z, d, strict=True)]
    return np.array(z), np.array(d), names


def transition_matrices(p_w: Any, p_s: Any) -> np.ndarray:
    """``T[a, k, k']`` of the TRIM-POMDP between non-terminal epochs, shape ``(2, 2D + 1, 2D + 1)``.

    ``p_w`` and ``p_s`` are numbers (one class: shape (2, 3, 3)) or one value per difficulty class.
    """
    pw = np.atleast_1d(np.asarray(p_w, dtype=float))
    ps = np.atleast_1d(np.asarray(p_s, dtype=float))
    zc, dc, _ = hidden_layout(pw.size)
    n = zc.size
    s1 = int(np.flatnonzero(zc == 1)[0])
    T = np.zeros((2, n, n))
    for d in range(pw.size):
        s0, s2 = (int(np.flatnonzero((zc == z) & (dc == d))[0]) for z in (0, 2))
        T[0, s0, s0], T[0, s0, s2] = pw[d], 1.0 - pw[d]
        T[0, s2, s1] = 1.0
        for k in (s0, s2):
            T[1, k, s0], T[1, k, s1], T[1, k, s2] = ps[d] * pw[d], 1.0 - ps[d], ps[d] * (1.0 - pw[d])
    T[:, s1, s1] = 1.0
    return T


def _check_obs_model(obs: Any) -> tuple[np.ndarray, np.ndarray]:
    for attr in ("bin_probs", "n_bins"):
        if not hasattr(obs, attr):
            raise InvalidParameterError(
                f"the observation model must provide {attr!r} (see "
                "trim_pomdp.observation_models.ObservationModel); "
                f"got {type(obs).__name__}"
            )
    n = int(obs.n_bins)
    first = np.asarray(obs.bin_probs(True), dtype=float)
    pair = np.asarray(obs.bin_probs(False), dtype=float)
    if first.ndim != 2 or first.shape[0] != 3:
        raise InvalidParameterError(f"bin_probs(first=True) must have shape (3, n_obs), got {first.shape}")
    if pair.ndim != 2 or pair.shape[0] != 3:
        raise InvalidParameterError(f"bin_probs(first=False) must have shape (3, n_obs), got {pair.shape}")
    if first.shape[1] != n or pair.shape[1] not in (n * n, n):
        raise InvalidParameterError(
            f"observation model bins do not match: n_bins={n} but bin_probs(first=True) has "
            f"{first.shape[1]} and bin_probs(first=False) has {pair.shape[1]} observations (expected {n} "
            f"and {n * n}); refit or re-save the observation model"
        )
    for name, arr in (("bin_probs(first=True)", first), ("bin_probs(first=False)", pair)):
        check_stochastic(name, arr, error=InvalidParameterError, atol=1e-9)
    return first, pair


class TrimPOMDP:
    """The TRIM-POMDP built from :class:`TrimParams` and a binned observation model.

    Use :func:`build_trim_pomdp`. ``obs_model`` is anything with ``n_bins``, ``bin_probs(first)`` (``(3, n)``
    at ``t = 1``, ``(3, n*n)`` after) and, for filtering raw scores,
    ``observation_index``/``observation_index_batch``.
    """

    def __init__(self, params: TrimParams, obs_model: Any):
        params.validate()
        self.params = params
        self.obs_model = obs_model
        self._first, self._pair = _check_obs_model(obs_model)
        self.z_class, self.d_class, self.hidden_names = hidden_layout(params.n_classes)

    # -- small helpers ---------------------------------------------------------------------------------------
    @property
    def horizon(self) -> int:
        return self.params.horizon

    @property
    def n_buckets(self) -> int:
        return self.params.n_buckets

    @property
    def n_contexts(self) -> int:
        return 2 * self.params.n_buckets

    @property
    def n_classes(self) -> int:
        """``D``, the number of difficulty classes."""
        return self.params.n_classes

    @property
    def n_hidden(self) -> int:
        """Number of hidden states, ``2D + 1`` (3 for the pooled model)."""
        return int(self.z_class.size)

    @property
    def transition(self) -> np.ndarray:
        """``T[a, k, k']`` between non-terminal epochs, shape ``(2, n_hidden, n_hidden)``."""
        p = self.params
        if p.difficulty is None:
            return transition_matrices(p.p_w, p.p_s)
        return transition_matrices(p.class_p_w, p.class_p_s)

    @property
    def b0(self) -> np.ndarray:
        """Belief at epoch 1 before the first observation: ``π(d) (p_w(d), 1 − p_w(d))`` on ``(S0|d, S2|d)``
        (``(p_w, 0, 1 − p_w)`` for the pooled model)."""
        p = self.params
        if p.difficulty is None:
            return np.array([p.p_w, 0.0, 1.0 - p.p_w])
        out = np.zeros(self.n_hidden)
        for d in range(p.n_classes):
            pw = p.class_p_w[d]
            out[(self.z_class == 0) & (self.d_class == d)] = p.class_prior[d] * pw
            out[(self.z_class == 2) & (self.d_class == d)] = p.class_prior[d] * (1.0 - pw)
        return out

    @property
    def vertices(self) -> np.ndarray | None:
        """The ``D + 1`` vertex distributions of the dynamics (S1 first, then each class's next proposal), or
        ``None`` for the pooled model (whose rank-2 structure the solver finds itself)."""
        if self.params.difficulty is None:
            return None
        T = self.transition
        s1 = int(np.flatnonzero(self.z_class == 1)[0])
        rows = [T[0, s1]] + [T[0, int(np.flatnonzero((self.z_class == 0) & (self.d_class == d))[0])]
                             for d in range(self.n_classes)]  # fmt: skip
        return np.array(rows)

    @property
    def p_s_of_state(self) -> np.ndarray:
        """``p_s`` of each hidden state's class (0 for S1): the chance that a final regeneration is right."""
        ps = self.params.class_p_s
        return np.where(self.z_class == 1, 0.0, ps[np.maximum(self.d_class, 0)])

    def observation_probs(self, t: int) -> np.ndarray:
        """``P(o | k)`` per hidden state at epoch ``t``: ``(n_hidden, n)`` at ``t = 1``, else ``(n_hidden, n*n)``
        (a state's row is that of its class S0/S1/S2)."""
        base = self._first if int(t) == 1 else self._pair
        return base if self.n_classes == 1 else base[self.z_class]

    def class_observation_probs(self, t: int) -> np.ndarray:
        """``P(o | z)`` of the classes S0/S1/S2 at epoch ``t``: ``(3, n)`` or ``(3, n*n)``."""
        return self._first if int(t) == 1 else self._pair

    def bucket_of(self, tokens):
        """Token bucket of a step of ``tokens`` M_w tokens (int, or int array for array input)."""
        b = np.searchsorted(self.params.bucket_edges, np.asarray(tokens, dtype=float), side="right")
        return int(b) if np.ndim(b) == 0 else b.astype(np.int64)

    def expected_strong_tokens(self, bucket):
        """Expected M_s output tokens of a regeneration in ``bucket``."""
        st = self.params.strong_tokens
        b = np.asarray(bucket, dtype=np.int64)
        if np.any((b < 0) | (b >= st.size)):
            raise InvalidParameterError(f"bucket must be in 0..{st.size - 1}, got {bucket}")
        out = st[b]
        return float(out) if np.ndim(out) == 0 else out

    def context_probs(self) -> np.ndarray:
        """``P(ctx | t)`` of shape (H, 2K): bucket ``P(c | t)`` times ``q(t)`` / ``1 − q(t)``."""
        p = self.params
        q = p.hazard.copy()
        q[-1] = 1.0
        out = np.empty((p.horizon, self.n_contexts))
        out[:, 0::2] = p.bucket_probs * (1 - q)[:, None]
        out[:, 1::2] = p.bucket_probs * q[:, None]
        return out

    def terminal(self) -> np.ndarray:
        """Whether each context ends the episode, shape (H, 2K)."""
        term = np.zeros((self.horizon, self.n_contexts), dtype=bool)
        term[:, 1::2] = True
        term[-1, :] = True
        return term

    def reward(self) -> np.ndarray:
        """``reward[t-1, ctx, k, a]`` including the terminal reward, shape ``(H, 2K, n_hidden, 2)``."""
        p = self.params
        H, C = self.horizon, self.n_contexts
        term = self.terminal()
        r = np.zeros((H, C, self.n_hidden, 2))
        cost = p.lam * np.repeat(p.strong_tokens, 2)  # per context
        r[:, :, :, 1] -= cost[None, :, None]
        ps = self.p_s_of_state
        for k in range(self.n_hidden):
            if self.z_class[k] == 0:
                r[:, :, k, 0] += np.where(term, p.reward, 0.0)
            if self.z_class[k] != 1:
                r[:, :, k, 1] += np.where(term, p.reward * ps[k], 0.0)
        return r

    # -- forms -----------------------------------------------------------------------------------------------
    def structured(self, discount: float = 1.0) -> FiniteHorizonPOMDP:
        """The structured finite-horizon form (undiscounted by default), for :class:`FiniteHorizonSolver`."""
        first, pair = self.observation_probs(1), self.observation_probs(2)
        obs = [first] + [pair] * (self.horizon - 1)
        return FiniteHorizonPOMDP(
            transition=self.transition,
            observation=obs,
            context_probs=self.context_probs(),
            terminal=self.terminal(),
            reward=self.reward(),
            b0=self.b0,
            discount=discount,
            hidden_names=tuple(self.hidden_names),
            action_names=("continue", "regenerate"),
            meta={"lam": self.params.lam, "difficulty_classes": self.n_classes},
            vertices=self.vertices,
        )

    def state_index(self, z, t, bucket, final):
        """Index of state ``(z, t, bucket, final)`` in the flattened form (vectorised)."""
        ctx = context_index(bucket, final)
        return ((np.asarray(t) - 1) * self.n_contexts + ctx) * self.n_hidden + np.asarray(z)

    @property
    def n_flat_states(self) -> int:
        return self.n_hidden * self.horizon * self.n_contexts + 2

    def observation_offset(self, t: int, bucket, final):
        """First flattened observation index of context ``(t, bucket, final)``; add the bin index."""
        ctx = context_index(bucket, final)
        n1, n2 = self._first.shape[1], self._pair.shape[1]
        C = self.n_contexts
        return np.where(np.asarray(t) == 1, C * n2 + ctx * n1, ctx * n2)

    def flatten(self, start: tuple | None = None, discount: float | None = None) -> TabularPOMDP:
        """The flattened discounted tabular form.

        States: ``(k, t, c, final)`` (``k`` a hidden state of :func:`hidden_layout`) at index
        :meth:`state_index`, then ``start`` (index ``S − 2``) and the absorbing ``terminal`` (``S − 1``). The
        start state moves at no cost into epoch 1 (``z ~ b0``, context ``~ P(ctx | 1)``) and that move carries
        the first observation. Observations: ``(o-bin, c', final')`` — pair bins of every context for
        ``t ≥ 2``, then first-step bins of every context, then one ``none`` observation (emitted on reaching the
        start or terminal state).

        With ``γ`` = ``params.discount``, an epoch-``t`` reward is discounted by ``γ^t`` (the start move takes
        one step), so ``V_flat(b0) = γ · V`` of :meth:`structured` with ``discount=γ``.

        Parameters
        ----------
        start : tuple (t, bucket, final, belief), optional
            Start from a mid-episode context instead: ``b0`` puts ``belief`` (posterior over z, after the
            epoch-``t`` observation, over the hidden states) on the states of that context, for re-planning.
        discount : float, optional
            Overrides ``params.discount``.
        """
        gamma = self.params.discount if discount is None else float(discount)
        H, C = self.horizon, self.n_contexts
        S = self.n_flat_states
        T, O, R = self._flat_dynamics()
        terminal = np.zeros(S, dtype=bool)
        terminal[S - 1] = True
        names = [
            f"{z}|t{t}|c{ctx // 2}|f{ctx % 2}"
            for t in range(1, H + 1)
            for ctx in range(C)
            for z in self.hidden_names
        ]
        meta = {
            "model": "trim-pomdp",
            "horizon": H,
            "n_contexts": C,
            "n_bins_first": self._first.shape[1],
            "n_bins_pair": self._pair.shape[1],
            "start": None
            if start is None
            else [start[0], start[1], bool(start[2]), list(map(float, start[3]))],
        }
        return TabularPOMDP(
            T,
            O,
            R,
            self._flat_b0(start),
            gamma,
            state_names=[*names, "start", "terminal"],
            action_names=["continue", "regenerate"],
            terminal=terminal,
            meta=meta,
        )

    def _flat_dynamics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``T (2, S, S)``, ``O (2, S, n_obs)`` and ``R (S, 2)`` of :meth:`flatten` (see its docstring)."""
        H, C = self.horizon, self.n_contexts
        S = self.n_flat_states
        s_start, s_term = S - 2, S - 1
        Z = self.n_hidden
        first, pair = self.observation_probs(1), self.observation_probs(2)
        n1, n2 = first.shape[1], pair.shape[1]
        n_obs = C * n2 + C * n1 + 1
        Tz = self.transition
        pc = self.context_probs()
        term = self.terminal()
        rew = self.reward()
        T = np.zeros((2, S, S))
        O = np.zeros((2, S, n_obs))
        R = np.zeros((S, 2))
        for t in range(1, H + 1):
            for ctx in range(C):
                base = ((t - 1) * C + ctx) * Z
                rows = slice(base, base + Z)
                R[rows, :] = rew[t - 1, ctx]
                if term[t - 1, ctx]:
                    T[:, rows, s_term] = 1.0
                else:
                    nb = t * C * Z  # first state of epoch t+1
                    for a in range(2):
                        # T[a, (k,t,ctx), (k',t+1,ctx')] = Tz[a, k, k'] * pc[t, ctx']
                        block = Tz[a][:, None, :] * pc[t][None, :, None]  # (Z, C, Z)
                        T[a, rows, nb : nb + Z * C] = block.reshape(Z, Z * C)
                off = int(self.observation_offset(t, ctx // 2, ctx % 2))
                probs = first if t == 1 else pair
                O[:, rows, off : off + probs.shape[1]] = probs[None, :, :]
        for a in range(2):
            T[a, s_start, 0 : Z * C] = (self.b0[None, :] * pc[0][:, None]).reshape(-1)
            T[a, s_term, s_term] = 1.0
        O[:, s_start, n_obs - 1] = 1.0  # the "none" observation
        O[:, s_term, n_obs - 1] = 1.0
        return T, O, R

    def _flat_b0(self, start: tuple | None) -> np.ndarray:
        """Initial belief of :meth:`flatten`: the start state, or ``belief`` on a mid-episode context."""
        H = self.horizon
        b0 = np.zeros(self.n_flat_states)
        if start is None:
            b0[-2] = 1.0
            return b0
        t, bucket, final, belief = start
        t, bucket, final = int(t), int(bucket), int(bool(final))
        if not 1 <= t <= H:
            raise InvalidParameterError(f"start epoch t must be in 1..{H}, got {t}")
        if not 0 <= bucket < self.n_buckets:
            raise InvalidParameterError(f"start bucket must be in 0..{self.n_buckets - 1}, got {bucket}")
        bel = np.asarray(belief, dtype=float)
        if bel.shape != (self.n_hidden,) or np.any(bel < -1e-12) or abs(bel.sum() - 1) > 1e-6:
            raise InvalidParameterError(
                f"start belief must be a distribution over the hidden states {tuple(self.hidden_names)}, "
                f"got {belief!r}"
            )
        idx = self.state_index(np.arange(self.n_hidden), t, bucket, final)
        b0[idx] = np.clip(bel, 0, None) / np.clip(bel, 0, None).sum()
        return b0

    def check(self) -> TrimPOMDP:
        """Check both forms; raises :class:`ModelCheckError` with the offending index."""
        self.structured().check()
        try:
            self.flatten().check()
        except ModelCheckError as exc:
            raise ModelCheckError(f"flattened TRIM-POMDP: {exc}") from exc
        return self

    def with_params(self, **changes: Any) -> TrimPOMDP:
        """The same model with some parameters changed (e.g. ``lam``)."""
        return TrimPOMDP(self.params.replace(**changes), self.obs_model)


def build_trim_pomdp(params: TrimParams | None = None, obs_model: Any = None) -> TrimPOMDP:
    """Build the TRIM-POMDP; ``None`` uses the shipped default parameters / observation model."""
    if params is None or obs_model is None:
        from trim_pomdp.pomdp.defaults import default_observation_model, load_default_params

        params = params if params is not None else load_default_params()
        obs_model = obs_model if obs_model is not None else default_observation_model()
    return TrimPOMDP(params, obs_model)
