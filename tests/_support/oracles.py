"""The test suite's brute-force oracles: exact values by expectimax over every observation history.

They are written straight from the definitions of the three model forms and share nothing with the solvers, so a
solver that agrees with them is right, not merely self-consistent. Exponential in the horizon: small models only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["expectimax_finite_horizon", "expectimax_tabular", "expectimax_trim"]


def expectimax_tabular(model: Any, belief: np.ndarray, depth: int) -> float:
    """Exact discounted ``depth``-step value of a :class:`~trim_pomdp.solvers.tabular.TabularPOMDP` at ``belief``.

    A belief entirely on terminal states (``model.terminal``) is worth 0.
    """
    if depth == 0:
        return 0.0
    if model.terminal is not None and belief[np.asarray(model.terminal, bool)].sum() > 1 - 1e-15:
        return 0.0
    best = -np.inf
    for a in range(model.n_actions):
        q = float(belief @ model.R[:, a])
        pred = belief @ model.T[a]
        for o in range(model.n_observations):
            u = pred * model.O[a][:, o]
            p = float(u.sum())
            if p > 1e-15:
                q += model.discount * p * expectimax_tabular(model, u / p, depth - 1)
        best = max(best, q)
    return best


def expectimax_finite_horizon(
    model: Any,
    i: int = 0,
    belief: np.ndarray | None = None,
    *,
    cost: np.ndarray | None = None,
    budget: int | None = None,
    policy: Any = None,
) -> float:
    """Exact value of a :class:`~trim_pomdp.solvers.finite_horizon.FiniteHorizonPOMDP` from epoch index ``i``.

    ``belief`` is the predicted belief over the hidden state before epoch ``i``'s observation (``model.b0`` at
    ``i = 0``); the full hidden state is tracked, with no rank-2 reduction.

    With ``cost`` and ``budget`` it is the value with ``budget`` units left when action 1 (regenerate) at context
    ``c`` costs ``cost[c]`` units and is only available when they are left (the hard cap's model). With
    ``policy`` (a budgeted policy's ``action_values(i, c, b, B)``) it is the value earned by following that
    policy's greedy actions instead of maximising.
    """
    belief = model.b0 if belief is None else belief
    if i == model.horizon:
        return 0.0
    O = model.observation[i]
    total = 0.0
    for c in range(model.n_contexts):
        pc = model.context_probs[i, c]
        if pc == 0:
            continue
        for o in range(O.shape[1]):
            u = belief * O[:, o]
            s = u.sum()
            if s == 0:
                continue
            b = u / s
            if policy is None:
                actions = range(model.n_actions)
            else:  # only the action the policy takes (ties go to the first, as argmax breaks them)
                ql = (
                    policy.action_values(i + 1, c, b)
                    if budget is None
                    else policy.action_values(i + 1, c, b, budget)
                )
                actions = range(int(np.argmax(ql)), int(np.argmax(ql)) + 1)
            best = -np.inf
            for a in actions:
                left = budget if cost is None or a != 1 else budget - cost[c]  # type: ignore[operator]
                if left is not None and left < 0:
                    continue
                v = b @ model.reward[i, c, :, a]
                if not model.terminal[i, c]:
                    nxt = b @ model.transition[a]
                    v += model.discount * expectimax_finite_horizon(
                        model, i + 1, nxt, cost=cost, budget=left, policy=policy
                    )
                best = max(best, v)
            total += pc * s * best
    return total


def expectimax_trim(tp: Any, i: int = 0, belief: np.ndarray | None = None) -> float:
    """Exact value of a :class:`~trim_pomdp.pomdp.problem.TrimPOMDP`, written from the model's definition.

    Unlike :func:`expectimax_finite_horizon` it reads only the TRIM parameters and observation probabilities, not
    the structured form the solvers use, so it also checks that form: continue keeps S0 with probability p_w
    (else S2) and leaves S1/S2 in S1; regenerate replaces the newest step by a strong one, right with probability
    p_s, followed by a weak proposal right with probability p_w; a final or H-th step pays R when the final prefix
    is right; a regeneration costs λ · strong_weak_ratio · bucket_mean_tokens[c].
    """
    p = tp.params
    H = p.horizon
    belief = np.array([p.p_w, 0.0, 1 - p.p_w]) if belief is None else belief
    cont = np.array([[p.p_w, 0, 1 - p.p_w], [0, 1, 0], [0, 1, 0]])
    reg_row = [p.p_s * p.p_w, 1 - p.p_s, p.p_s * (1 - p.p_w)]
    regen = np.array([reg_row, [0, 1, 0], reg_row])
    O = tp.observation_probs(i + 1)
    q = 1.0 if i == H - 1 else p.hazard[i]
    total = 0.0
    for c in range(p.n_buckets):
        cost = p.lam * p.strong_weak_ratio * p.bucket_mean_tokens[c]
        for final, pf in ((True, q), (False, 1 - q)):
            w = p.bucket_probs[i, c] * pf
            if w == 0:
                continue
            for o in range(O.shape[1]):
                u = belief * O[:, o]
                s = u.sum()
                if s == 0:
                    continue
                b = u / s
                if final:
                    v_c = p.reward * b[0]
                    v_r = p.reward * p.p_s * (b[0] + b[2]) - cost
                else:
                    v_c = expectimax_trim(tp, i + 1, b @ cont)
                    v_r = expectimax_trim(tp, i + 1, b @ regen) - cost
                total += w * s * max(v_c, v_r)
    return total
