"""The hard cap on strong tokens: the budget-aware TRIM-POMDP's certified bounds, and BeliefRouter with a cap."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from tests._support.oracles import expectimax_finite_horizon
from tests._support.toys import small_trim
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.pomdp.budget import StrongTokenPlan, strong_token_plan
from trim_pomdp.pomdp.policy import solve_trim
from trim_pomdp.pomdp.process import ModelProcess
from trim_pomdp.routers.belief import BeliefRouter
from trim_pomdp.routers.rollout import rollout
from trim_pomdp.solvers.finite_horizon.budget import solve_budgeted
from trim_pomdp.types import StepObservation


def _expectimax(fh, cost, i, belief, B, policy=None):
    """Exact value with ``B`` budget units left (``policy``: follow its greedy actions instead of maximising)."""
    return expectimax_finite_horizon(fh, i, belief, cost=cost, budget=B, policy=policy)


@pytest.fixture(scope="module")
def tiny():
    return small_trim(horizon=3, n_bins=2, lam=1e-4)


@pytest.mark.parametrize("levels", [1, 2, 4])
def test_certified_bounds_bracket_brute_force_expectimax(tiny, levels):
    fh = tiny.structured()
    cost = np.array([1, 1, 2, 2])  # bucket 0 costs one unit, bucket 1 two
    sol = solve_budgeted(fh, cost, levels, grid_points=9)
    for B in range(levels):
        exact = _expectimax(fh, cost, 0, fh.b0, B)
        earned = _expectimax(fh, cost, 0, fh.b0, B, policy=sol)
        lo, hi = sol.start_lower[B], sol.start_upper[B]
        assert lo - 1e-9 <= earned <= exact + 1e-9 <= hi + 2e-9, (B, lo, earned, exact, hi)
        assert hi - lo < 1e-2
    # more budget is worth at least as much; none is worth the never-regenerate value
    assert np.all(np.diff(sol.start_upper) >= -1e-9)
    never = _expectimax(fh, np.full(4, 99), 0, fh.b0, 0)
    assert abs(sol.start_lower[0] - never) < 1e-9 and abs(sol.start_upper[0] - never) < 1e-9


def test_a_plan_with_room_for_every_step_is_the_uncapped_solution():
    tp = small_trim(horizon=6, lam=1e-4)
    pol = solve_trim(tp)
    plan = StrongTokenPlan(tp, 1e9, levels=8)  # every regeneration costs one unit, 8 units >= H
    lo, hi = plan.bounds()
    assert lo <= pol.info.upper_bound + 1e-9 and pol.info.lower_bound <= hi + 1e-9
    assert hi - lo < 1e-3
    rng = np.random.default_rng(0)
    agree = 0
    for _ in range(300):
        b = rng.dirichlet([1.0, 1.0, 1.0])
        t, bucket, final = int(rng.integers(1, 7)), int(rng.integers(0, 2)), bool(rng.integers(0, 2))
        q = plan.action_values(t, bucket, final, b, 1e9)
        u = pol.action_values(t, bucket, final, b)
        agree += int((q[1] > q[0]) == (u[1] > u[0]))
    assert agree >= 294
    # no cap at all is the uncapped router itself
    assert strong_token_plan(tp, None) is None and strong_token_plan(tp, math.inf) is None
    assert BeliefRouter(pol, tp, max_strong_tokens=math.inf).budget is None


@pytest.fixture(scope="module")
def cheap():
    tp = small_trim(horizon=6, lam=1e-4)  # regenerations are cheap: the uncapped policy takes many
    return tp, solve_trim(tp)


def test_a_cap_of_zero_never_regenerates(cheap):
    tp, pol = cheap
    free = rollout(BeliefRouter(pol, tp, gate=False), ModelProcess(tp), n=500, seed=3)
    assert free.regenerations > 0.5
    for mode in ("plan", "clip"):
        r = BeliefRouter(pol, tp, gate=False, max_strong_tokens=0, cap_mode=mode)
        res = rollout(r, ModelProcess(tp), n=500, seed=3)
        assert res.regenerations == 0 and res.strong_tokens == 0


@pytest.mark.parametrize("cap", [70, 150, 260])
def test_the_router_never_orders_a_regeneration_that_does_not_fit(cheap, cap):
    tp, pol = cheap
    for mode in ("plan", "clip"):
        r = BeliefRouter(pol, tp, gate=False, max_strong_tokens=cap, cap_mode=mode)
        res = rollout(r, ModelProcess(tp), n=800, seed=5, keep_episodes=True)
        assert res.episode_strong_tokens.max() <= cap and res.regenerations > 0
    # the single-query API, with the loop's report of what each strong step spent
    r = BeliefRouter(pol, tp, gate=False, max_strong_tokens=cap)
    st = tp.params.strong_tokens
    rng = np.random.default_rng(1)
    for _ in range(40):
        r.reset()
        for t in range(1, 7):
            bucket = int(rng.integers(0, 2))
            obs = StepObservation(t, tuple(rng.uniform(0.0, 0.4, t)), [60, 200][bucket], t == 6)
            if r.decide(obs) == "regenerate":
                left = r.strong_tokens_left
                assert r.budget.cost[bucket] * r.budget.unit <= left + 1e-9 and st[bucket] <= left + 1e-9
                r.spent_strong(int(min(left, st[bucket] + 7)))  # a step a little longer than expected
        assert r.strong_tokens_left >= 0


def _earned(tp, plan, i, belief, left):
    """Exact value of routing with ``plan`` (its own token accounting) from epoch index ``i`` with ``left`` tokens."""
    fh = tp.structured()
    if i == fh.horizon:
        return 0.0
    O, st, total = fh.observation[i], tp.params.strong_tokens, 0.0
    for c in range(fh.n_contexts):
        pc = fh.context_probs[i, c]
        for o in range(O.shape[1]):
            u = belief * O[:, o]
            s = u.sum()
            if pc == 0 or s == 0:
                continue
            b = u / s
            q = plan.action_values(i + 1, c // 2, bool(c % 2), b, left)
            a = int(q[1] > q[0])
            v = b @ fh.reward[i, c, :, a]
            if not fh.terminal[i, c]:
                nxt = left - st[c // 2] * a
                v += fh.discount * _earned(tp, plan, i + 1, b @ fh.transition[a], nxt)
            total += pc * s * v
    return total


@pytest.mark.parametrize("cap", [60, 130, 200, 270])
def test_the_planner_earns_at_least_the_clip_and_its_lower_bound(tiny, cap):
    pol = solve_trim(tiny)
    plan = StrongTokenPlan(tiny, cap, levels=int(cap) // 10)
    clip = StrongTokenPlan(tiny, cap, mode="clip", policy=pol)
    b0 = tiny.structured().b0
    planned, clipped = _earned(tiny, plan, 0, b0, cap), _earned(tiny, clip, 0, b0, cap)
    lo, hi = plan.bounds()
    assert lo - 1e-9 <= planned and clipped <= hi + 1e-9
    assert planned >= clipped - 1e-9


def test_the_loop_caps_the_strong_step_at_what_is_left(cheap):
    from trim_pomdp.datasets.problems import Problem
    from trim_pomdp.generation.base import StepResult
    from trim_pomdp.generation.loop import LoopConfig, solve_problem

    tp, pol = cheap

    class Model:
        def __init__(self, tokens):
            self.tokens, self.asked = tokens, []

        async def generate_step(self, problem, steps, max_tokens):
            self.asked.append(max_tokens)
            n = min(self.tokens, max_tokens)
            final = len(steps) == 5
            text = f"step {len(steps)}" + (" \\boxed{1}" if final else "")
            return StepResult(text, n, "stop", final, "fake")

    class PRM:
        async def score(self, problem, steps):
            return [0.05] * len(steps)  # every step looks wrong: the router wants M_s

    for strong_len, cap in ((90, 150), (50, 150), (300, 250)):  # steps longer or shorter than expected
        weak, strong = Model(60), Model(strong_len)
        router = BeliefRouter(pol, tp, gate=False, max_strong_tokens=cap)
        trace = asyncio.run(solve_problem(Problem("p", "q", "1"), weak, strong, PRM(), router, LoopConfig()))
        assert 0 < trace["strong_tokens"] <= cap
        # M_s is never asked for more than the cap leaves (the first ask: all of it)
        spent = np.cumsum([0] + [min(strong_len, a) for a in strong.asked])
        assert strong.asked[0] == cap
        assert all(a <= cap - x for a, x in zip(strong.asked, spent[:-1], strict=False))


def test_bad_caps_are_one_line_errors(cheap):
    tp, pol = cheap
    for bad in (-1, "many", True, float("nan")):
        with pytest.raises(InvalidParameterError, match="max_strong_tokens"):
            BeliefRouter(pol, tp, max_strong_tokens=bad)
    with pytest.raises(InvalidParameterError, match="cap mode"):
        BeliefRouter(pol, tp, max_strong_tokens=100, cap_mode="soft")
    with pytest.raises(InvalidParameterError, match="replan_solver"):
        from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver

        BeliefRouter(pol, tp, max_strong_tokens=100, replan_solver=FiniteHorizonSolver())


def test_the_batch_api_replaces_the_expected_charge_with_what_was_spent(cheap):
    tp, pol = cheap
    r = BeliefRouter(pol, tp, gate=False, max_strong_tokens=260)
    proc = ModelProcess(tp)
    obs = proc.reset(200, seed=2)
    r.reset_batch(200)
    assert np.all(r.strong_tokens_left_batch == 260)
    a = r.decide_batch(obs)
    assert a.any()
    st = tp.params.strong_tokens[obs.bucket]
    np.testing.assert_allclose(r.strong_tokens_left_batch, 260 - a * st)
    r.spent_strong_batch(a * (st + 30))  # each strong step was 30 tokens longer than expected
    np.testing.assert_allclose(r.strong_tokens_left_batch, 260 - a * (st + 30))
    assert BeliefRouter(pol, tp).strong_tokens_left is None


def test_load_and_with_max_strong_tokens_give_a_planning_router(cheap, tmp_path):
    tp, pol = cheap
    pol.save(tmp_path / "p")
    loaded = BeliefRouter.load(tmp_path / "p", max_strong_tokens=150, delta=0.2)
    assert loaded.max_strong_tokens == 150 and loaded.budget.mode == "plan" and loaded.delta == 0.2
    again = loaded.with_max_strong_tokens(90)
    assert again.max_strong_tokens == 90 and again.delta == 0.2 and again.gate == loaded.gate
    assert BeliefRouter(pol, tp).with_max_strong_tokens(None).budget is None
    assert "max_strong_tokens=150" in repr(loaded)


def test_difficulty_classes_are_refused_with_what_to_do_instead(cheap):
    from trim_pomdp.pomdp.problem import TrimPOMDP

    tp, _ = cheap
    classes = {"prior": [0.5, 0.5], "p_w": [0.9, 0.6], "p_s": [0.95, 0.9]}
    hard = TrimPOMDP(tp.params.replace(difficulty=classes), tp.obs_model)
    with pytest.raises(InvalidParameterError, match=r"one difficulty class.*'clip'"):
        StrongTokenPlan(hard, 100)
