"""ThresholdRouter, the lock-step rollout and the gymnasium routing environment."""

from __future__ import annotations

import numpy as np
import pytest

from tests._support.toys import ToyProcess
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.routers.base import BatchRouter, Router
from trim_pomdp.routers.rollout import rollout
from trim_pomdp.routers.threshold import ThresholdRouter
from trim_pomdp.types import BatchObservation, StepObservation


def test_threshold_router_rule_and_protocols():
    r = ThresholdRouter(0.5)
    assert isinstance(r, Router) and isinstance(r, BatchRouter)
    r.reset()
    assert r.decide(StepObservation(1, (0.49,), 10, False)) == "regenerate"
    assert r.last_decision == {"t": 1, "score": 0.49, "k": 0.5, "action": "regenerate"}
    assert r.decide(StepObservation(2, (0.1, 0.5), 10, True)) == "continue"  # r_t == k: keep (strict <)
    assert ThresholdRouter(0.0).decide(StepObservation(1, (0.0,), 1, False)) == "continue"
    with pytest.raises(InvalidParameterError, match="'k'"):
        ThresholdRouter(float("nan"))
    with pytest.raises(InvalidParameterError):
        ThresholdRouter("high")


def test_threshold_batch_matches_single_and_ignores_inactive():
    rng = np.random.default_rng(0)
    n, H = 50, 6
    t = rng.integers(1, H + 1, size=n)
    scores = np.where(np.arange(H)[None, :] < t[:, None], rng.random((n, H)), np.nan)
    active = rng.random(n) < 0.8
    obs = BatchObservation(t, scores, rng.integers(1, 100, n), np.zeros(n, bool), active)
    r = ThresholdRouter(0.4)
    r.reset_batch(n)
    got = r.decide_batch(obs)
    want = [(1 if r.decide(obs.row(i)) == "regenerate" else 0) if active[i] else 0 for i in range(n)]
    assert got.tolist() == want and got.dtype == np.int64


def test_rollout_threshold_sweep_is_sensible():
    src = ToyProcess()
    never = rollout(ThresholdRouter(0.0), src, 4000, lam=5e-4, seed=1)
    mid = rollout(ThresholdRouter(0.5), src, 4000, lam=5e-4, seed=1)
    assert never.strong_tokens == 0 and never.regenerate_rate == 0
    assert mid.accuracy > never.accuracy + 0.2  # regenerating low-score steps fixes errors on the toy process
    assert mid.ret == pytest.approx(mid.accuracy - 5e-4 * mid.strong_tokens)
    # same seed, same episodes: deterministic
    assert rollout(ThresholdRouter(0.5), src, 4000, lam=5e-4, seed=1) == mid


def test_rollout_single_step_router_path_agrees_with_batch_on_stateless_router():
    class OnlyDecide:
        def __init__(self):
            self.inner = ThresholdRouter(0.5)

        def reset(self):
            self.inner.reset()

        def decide(self, obs):
            return self.inner.decide(obs)

        last_decision = property(lambda self: self.inner.last_decision)

    res = rollout(OnlyDecide(), ToyProcess(), 300, lam=0.0, seed=3)
    assert 0.6 < res.accuracy <= 1.0 and res.strong_tokens > 0


gym = pytest.importorskip("gymnasium")


@pytest.mark.parametrize("features", ["agg", "seq"])
def test_routing_env_passes_gymnasium_checker(features):
    from gymnasium.utils.env_checker import check_env

    from trim_pomdp.routers.rl.env import RoutingEnv

    check_env(RoutingEnv(ToyProcess, 5e-4, features=features), skip_render_check=True)


def test_routing_env_rewards_and_seeding():
    from trim_pomdp.routers.rl.env import RoutingEnv

    env = RoutingEnv(ToyProcess(horizon=5), 1e-3, reward=2.0)
    assert env.observation_space.shape == (4,)

    def run(seed, policy):
        obs, _ = env.reset(seed=seed)
        traj, total, done = [obs], 0.0, False
        while not done:
            a = policy(obs)
            obs, rew, term, trunc, info = env.step(a)
            total += rew
            traj.append(obs)
            done = term or trunc
        return np.array(traj), total, info

    traj1, ret1, info1 = run(7, lambda o: int(o[0] < 0.5))
    traj2, ret2, _ = run(7, lambda o: int(o[0] < 0.5))
    np.testing.assert_array_equal(traj1, traj2)
    assert ret1 == ret2
    assert ret1 == pytest.approx(2.0 * info1["correct"] - 1e-3 * info1["strong_tokens"])
    # features: r in [0,1], m = 1 at t = 1, t/H = 1/5 at the first step
    first, _ = env.reset(seed=1)
    assert first[1] == 1.0 and first[3] == pytest.approx(0.2)
    with pytest.raises(InvalidParameterError):
        env.step(3)


def test_routing_env_rejects_bad_input():
    from trim_pomdp.routers.rl.env import RoutingEnv

    with pytest.raises(InvalidParameterError, match="lam"):
        RoutingEnv(ToyProcess, -1.0)
    with pytest.raises(InvalidParameterError, match="EpisodeBatch"):
        RoutingEnv(lambda: object(), 1e-3)
    with pytest.raises(InvalidParameterError, match="features"):
        RoutingEnv(ToyProcess, 1e-3, features="lstm")


def test_public_names_resolve_lazily():
    import subprocess
    import sys

    import trim_pomdp.routers as routers

    for name in routers.__all__:
        assert getattr(routers, name) is not None, name
    # importing the package itself does not pull in gymnasium/torch/SB3 (they load for training only)
    code = "import sys, trim_pomdp.routers; print({'torch', 'stable_baselines3'} & set(sys.modules) != set())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
