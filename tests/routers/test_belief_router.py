"""BeliefRouter: belief tracking with the action taken, gate, exact vs budgeted re-planning, load, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests._support.toys import small_obs_model, small_trim
from trim_pomdp.exceptions import InvalidParameterError, ZeroLikelihoodError
from trim_pomdp.observation_models.observation import ObservationModel
from trim_pomdp.pomdp.belief import BeliefFilter
from trim_pomdp.pomdp.policy import solve_trim
from trim_pomdp.pomdp.problem import TrimPOMDP
from trim_pomdp.pomdp.process import ModelProcess
from trim_pomdp.routers.base import BatchRouter, Router
from trim_pomdp.routers.belief import BeliefRouter, gate_open
from trim_pomdp.routers.rollout import rollout
from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver
from trim_pomdp.types import StepObservation

LAM = 5e-4
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model():
    return small_trim(horizon=6, n_bins=5, lam=LAM)


@pytest.fixture(scope="module")
def policy(model):
    return solve_trim(model)


def test_protocols_and_last_decision(model, policy):
    r = BeliefRouter(policy, model)
    assert isinstance(r, Router) and isinstance(r, BatchRouter)
    r.reset()
    np.testing.assert_allclose(r.belief, [0.8, 0.0, 0.2])
    a = r.decide(StepObservation(1, (0.95,), 50, False))
    d = r.last_decision
    assert a in ("continue", "regenerate") and d["action"] == a
    assert set(d) >= {
        "t",
        "bucket",
        "final",
        "predicted",
        "belief",
        "gate_open",
        "source",
        "values",
        "action",
    }
    assert d["bucket"] == 0 and abs(sum(d["belief"]) - 1) < 1e-12 and len(d["values"]) == 2


def test_belief_follows_the_filter_including_the_action_taken(model, policy):
    """Posterior_t = correct(predict(posterior_{t-1}, a_{t-1})): checked against BeliefFilter step by step."""
    f = BeliefFilter(model)
    router = BeliefRouter(policy, model, gate=False)
    rng = np.random.default_rng(1)
    for _ in range(20):
        router.reset()
        scores: list[float] = []
        pred = f.prior()
        for t in range(1, 7):
            scores.append(float(rng.random()))
            obs = StepObservation(t, tuple(scores), int(rng.integers(10, 300)), t == 6)
            action = router.decide(obs)
            post = f.correct(pred, t, obs.score, obs.prefix_min)
            np.testing.assert_allclose(router.belief, post, atol=1e-12)
            np.testing.assert_allclose(router.last_decision["predicted"], pred, atol=1e-12)
            q = policy.action_values(t, model.bucket_of(obs.tokens), obs.final, post)
            np.testing.assert_allclose(router.last_decision["values"], q, atol=1e-12)
            a = 1 if action == "regenerate" else 0
            assert a == int(q[1] > q[0])
            pred = f.predict(post, a)
    # a regenerate changes the next prediction differently from a continue
    assert not np.allclose(f.predict([0.5, 0.0, 0.5], 0), f.predict([0.5, 0.0, 0.5], 1))


def test_batch_matches_single_and_monte_carlo(model, policy):
    src = ModelProcess(model)
    n = 40
    obs = src.reset(n, seed=4)
    batch = BeliefRouter(policy, model, gate=True)
    batch.reset_batch(n)
    singles = [BeliefRouter(policy, model, gate=True) for _ in range(n)]
    for s in singles:
        s.reset()
    while obs.active.any():
        acts = batch.decide_batch(obs)
        for i in np.flatnonzero(obs.active):
            assert acts[i] == (singles[i].decide(obs.row(i)) == "regenerate")
            np.testing.assert_allclose(batch._B[i], singles[i].belief, atol=1e-12)
        obs = src.step(acts)
    # without the gate the router is the policy + filter that rollout evaluates a policy with
    ours = rollout(BeliefRouter(policy, model, gate=False), ModelProcess(model), 5000, lam=LAM, seed=7)
    theirs = rollout(policy, ModelProcess(model), 5000, seed=7)
    assert ours.ret == pytest.approx(theirs.ret) and ours.accuracy == pytest.approx(theirs.accuracy)


def test_gate(model, policy):
    assert gate_open(np.array([0.5, 0.1, 0.4]), 0.375) and not gate_open(np.array([0.8, 0.0, 0.2]), 0.375)
    np.testing.assert_array_equal(
        gate_open(np.array([[0.5, 0.1, 0.4], [0.9, 0.0, 0.1]]), 0.375), [True, False]
    )
    gated = BeliefRouter(policy, model, gate=True, delta=0.375)
    gated.reset()
    gated.decide(StepObservation(1, (0.99,), 50, False))  # confident S0: gate closed
    d = gated.last_decision
    assert not d["gate_open"] and d["source"] == "gate" and d["action"] == "continue"
    # delta = 1 keeps the gate always open: identical to no gate
    src = ModelProcess(model)
    a = rollout(BeliefRouter(policy, model, delta=1.0), src, 3000, lam=LAM, seed=2)
    b = rollout(BeliefRouter(policy, model, gate=False), src, 3000, lam=LAM, seed=2)
    assert a == b
    # the gate only ever turns regenerate into continue
    c = rollout(BeliefRouter(policy, model, delta=0.375), src, 3000, lam=LAM, seed=2)
    assert c.strong_tokens <= b.strong_tokens


@pytest.mark.parametrize("cache", [True, False])
def test_exact_replanning_never_changes_the_action(cache):
    model = small_trim(horizon=3, n_bins=3, lam=LAM)
    exact = solve_trim(model, FiniteHorizonSolver(mode="exact"))
    plain = BeliefRouter(exact, model, gate=True)
    replan = BeliefRouter(
        exact, model, replan_solver=FiniteHorizonSolver(mode="exact"), gate=True, replan_cache=cache
    )
    src = ModelProcess(model)
    obs = src.reset(30 if cache else 10, seed=3)
    plain.reset_batch(obs.n)
    singles = []
    for _ in range(obs.n):
        replan.reset()
        singles.append(
            BeliefRouter(
                exact, model, replan_solver=FiniteHorizonSolver(mode="exact"), gate=True, replan_cache=cache
            )
        )
        singles[-1].reset()
    n_open = 0
    while obs.active.any():
        acts = plain.decide_batch(obs)
        for i in np.flatnonzero(obs.active):
            s = singles[i]
            assert (s.decide(obs.row(i)) == "regenerate") == bool(acts[i])
            d = s.last_decision
            if d["gate_open"]:
                n_open += 1
                assert d["source"] == "replan"
                q = exact.action_values(d["t"], d["bucket"], d["final"], np.array(d["belief"]))
                np.testing.assert_allclose(d["values"], q, atol=1e-9)
        obs = src.step(acts)
    assert n_open > 0 and sum(s.n_replans for s in singles) == n_open


class OnePointPBVI:
    """A deliberately budgeted point-based solver: ``k`` exact backups at the initial belief only.

    Its alpha vectors are plans chosen for ``model.b0``, so its policy is only good near that belief — the
    situation the paper's online re-planning addresses.
    """

    def __init__(self, backups: int):
        self.backups = backups
        self.info = None

    def solve(self, model):
        from trim_pomdp.solvers.policy import AlphaVectorPolicy

        T, Obs, R, b, g = model.T, model.O, model.R, model.b0, model.discount
        gamma = [np.full(model.n_states, R.min() / (1 - g))]
        acts = [0]
        for _ in range(self.backups):
            G = np.array(gamma)  # (k, S)
            best, best_a = None, 0
            for a in range(model.n_actions):
                # g[o, k, s] = γ Σ_s' T[a, s, s'] O[a, s', o] G[k, s']
                gk = g * np.einsum("xy,yo,ky->oky", T[a], Obs[a], G)
                choice = np.argmax(gk @ b, axis=1)  # per observation, the best vector at b
                alpha = R[:, a] + gk[np.arange(gk.shape[0]), choice].sum(axis=0)
                if best is None or alpha @ b > best @ b:
                    best, best_a = alpha, a
            gamma.append(best)
            acts.append(best_a)
        return AlphaVectorPolicy(np.array(gamma[1:]), np.array(acts[1:]), ["continue", "regenerate"])


def test_budgeted_replanning_can_change_the_action_and_helps():
    model = small_trim(horizon=4, n_bins=3, lam=LAM)
    exact = solve_trim(model, FiniteHorizonSolver(mode="exact"))
    budgeted = OnePointPBVI(backups=model.horizon + 1)
    coarse = solve_trim(model, budgeted)  # solved from the start state only
    router = BeliefRouter(coarse, model, replan_solver=budgeted, gate=False)
    changed = base_ok = replan_ok = total = 0
    for t in range(1, 5):
        for ctx in range(4):
            for b in [(0.9, 0, 0.1), (0.6, 0.1, 0.3), (0.4, 0.2, 0.4), (0.3, 0, 0.7), (0.2, 0.6, 0.2)]:
                b = np.array(b)
                best = exact.action(t, ctx // 2, ctx % 2, b)
                before = coarse.action(t, ctx // 2, ctx % 2, b)
                q = router.replan_values(t, ctx // 2, ctx % 2, b)
                after = int(q[1] > q[0])
                total += 1
                changed += after != before
                base_ok += before == best
                replan_ok += after == best
    assert changed >= 1  # re-planning from the current belief changes decisions of a budgeted solver ...
    assert replan_ok > base_ok  # ... towards the exact policy's
    assert router.n_replans == total


def test_replanning_through_the_point_based_solver_runs():
    from trim_pomdp.solvers.pointbased.solver import PointBasedSolver

    model = small_trim(horizon=3, n_bins=3, lam=LAM)
    exact = solve_trim(model, FiniteHorizonSolver(mode="exact"))
    router = BeliefRouter(
        exact, model, replan_solver=PointBasedSolver(precision=1e-4, time_limit=30), gate=False
    )
    b = np.array([0.4, 0.2, 0.4])
    q = router.replan_values(2, 1, False, b)
    assert q.shape == (2,) and int(q[1] > q[0]) == exact.action(2, 1, False, b)


def test_load_from_solve_output(model, policy, tmp_path):
    policy.save(tmp_path / "pol")
    loaded = BeliefRouter.load(tmp_path / "pol", gate=False)
    a = rollout(loaded, ModelProcess(model), 2000, lam=LAM, seed=5)
    b = rollout(BeliefRouter(policy, model, gate=False), ModelProcess(model), 2000, lam=LAM, seed=5)
    assert a == b and loaded.lam == LAM
    other = small_obs_model(4)
    with pytest.raises(InvalidParameterError):
        BeliefRouter.load(tmp_path / "pol", observation_model=other)


def test_errors(model, policy):
    r = BeliefRouter(policy, model)
    r.reset()
    with pytest.raises(InvalidParameterError, match="reset"):
        r.decide(StepObservation(2, (0.5, 0.5), 10, False))
    with pytest.raises(InvalidParameterError, match=r"\[0, 1\]"):
        r.decide(StepObservation(1, (1.5,), 10, False))
    for t in range(1, 7):
        r.decide(StepObservation(t, (0.5,) * t, 10, False))
    with pytest.raises(InvalidParameterError, match="horizon"):
        r.decide(StepObservation(7, (0.5,) * 7, 10, False))
    with pytest.raises(InvalidParameterError, match="continuous"):
        BeliefRouter(policy, model, continuous_likelihood=True)
    with pytest.raises(InvalidParameterError, match="delta"):
        BeliefRouter(policy, model, delta=2.0)
    with pytest.raises(InvalidParameterError, match="solved for this model"):
        BeliefRouter(policy, small_trim(horizon=5))
    with pytest.raises(InvalidParameterError, match="TrimPolicy"):
        BeliefRouter("policy.npz", model)
    # a bin no class can produce: raise, or floor on request
    obs = small_obs_model(5)
    first = obs.first_probs.copy()
    first[:, 0] = 0.0
    first /= first.sum(axis=1, keepdims=True)
    m0 = TrimPOMDP(model.params, ObservationModel.from_probs(obs.pair_probs, first, obs.edges))
    p0 = solve_trim(m0)
    r0 = BeliefRouter(p0, m0)
    r0.reset()
    with pytest.raises(ZeroLikelihoodError):
        r0.decide(StepObservation(1, (0.05,), 10, False))
    rf = BeliefRouter(p0, m0, floor=1e-9)
    rf.reset()
    rf.decide(StepObservation(1, (0.05,), 10, False))
    np.testing.assert_allclose(rf.belief, [0.8, 0.0, 0.2], atol=1e-6)


def test_continuous_likelihood_plumbing(model, policy):
    """With a 'continuous' likelihood equal to the bin probabilities, decisions equal the binned ones."""
    base = model.obs_model

    class Continuous(ObservationModel):
        has_densities = True

        def likelihood(self, r, m=None, continuous=False):
            first = m is None
            idx = self.observation_index(r, None if first else m)
            return self.bin_probs(first)[:, idx]

    cm = TrimPOMDP(model.params, Continuous(base.edges, base.pair_probs, base.first_probs))
    a = rollout(
        BeliefRouter(policy, cm, continuous_likelihood=True, gate=False),
        ModelProcess(model),
        1000,
        lam=LAM,
        seed=8,
    )
    b = rollout(BeliefRouter(policy, model, gate=False), ModelProcess(model), 1000, lam=LAM, seed=8)
    assert a == b


# -- examples/embed_router.py -----


def _observation_model_arg(tmp_path: Path) -> list[str]:
    """The shipped observation model; while none is shipped, one fitted on synthetic labelled steps."""
    try:
        from trim_pomdp.observation_models.observation import load_shipped_observation_model

        load_shipped_observation_model()
        return []
    except FileNotFoundError:
        from trim_pomdp.observation_models.observation import ObservationModel

        rng = np.random.default_rng(0)
        n = 900
        z = rng.choice(3, size=n, p=[0.6, 0.25, 0.15])
        t = np.where(z == 1, rng.integers(2, 8, n), rng.integers(1, 8, n))
        r = np.where(z == 0, rng.beta(6, 1.5, n), np.where(z == 2, rng.beta(1.5, 4, n), rng.beta(2, 3, n)))
        m = np.where(t == 1, np.nan, np.where(z == 1, rng.beta(1.5, 3, n), rng.beta(5, 1.5, n)))
        table = SimpleNamespace(r=r, m=m, z=z, t=t, item_index=np.arange(n))
        ObservationModel.fit(table, n_bins=10).save(tmp_path / "obs")
        return ["--observation-model", str(tmp_path / "obs")]


def test_embed_router_example_runs(tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "embed_router.py"),
        "--queries",
        "60",
        *_observation_model_arg(tmp_path),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any(line.startswith("trim ") for line in lines), out.stdout
    rows = {
        line.split()[0]: line.split()
        for line in lines
        if line.split() and line.split()[0] in ("trim", "weak", "strong")
    }
    trim_cost = float(rows["trim"][-1])
    strong_cost = float(rows["strong"][-1])
    assert 0 < trim_cost < strong_cost  # it routes some steps, far from all
    assert "last decision" in out.stdout


def test_fast_path_equals_the_policy_method(model, policy):
    import copy

    slow_policy = copy.copy(policy)
    slow_policy._scalar = False  # no scalar evaluator: TrimPolicy.action_values
    fast, slow = BeliefRouter(policy, model, gate=False), BeliefRouter(slow_policy, model, gate=False)
    fast.reset()
    fast.decide(StepObservation(1, (0.5,), 10, False))
    assert fast.policy._scalar
    rng = np.random.default_rng(5)
    for _ in range(30):
        fast.reset()
        slow.reset()
        scores: list[float] = []
        for t in range(1, 7):
            scores.append(float(rng.random()))
            obs = StepObservation(
                t, tuple(scores), int(rng.integers(10, 300)), bool(rng.random() < 0.2) or t == 6
            )
            assert fast.decide(obs) == slow.decide(obs)
            np.testing.assert_allclose(fast.last_decision["values"], slow.last_decision["values"], rtol=1e-12)
            if obs.final:
                break


def test_certified_replan_cache_matches_fresh_solves(model, policy):
    solver = FiniteHorizonSolver(precision=1e-3)  # "auto" mode: solutions depend on the start belief
    cached = BeliefRouter(policy, model, replan_solver=solver, gate=False)  # replan_cache="auto": certified
    fresh = BeliefRouter(policy, model, replan_solver=FiniteHorizonSolver(precision=1e-3), replan_cache=False)
    rng = np.random.default_rng(0)
    for _ in range(40):
        t = int(rng.integers(1, 7))
        b = rng.dirichlet([1.0, 1.0, 1.0])
        bucket, final = int(rng.integers(0, 2)), bool(rng.random() < 0.3)
        qc = cached.replan_values(t, bucket, final, b)
        qf = fresh.replan_values(t, bucket, final, b)
        assert abs(qc.max() - qf.max()) <= 2e-3  # both within the precision of V*
    assert cached.n_replans_cached > 0 and fresh.n_replans_cached == 0
    with pytest.raises(InvalidParameterError, match="replan_cache"):
        BeliefRouter(policy, model, replan_solver=solver, replan_cache="sometimes")
