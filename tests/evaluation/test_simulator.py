"""Offline simulator: EpisodeBatch protocol, common random numbers, calibrated statistics, parameters."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from tests._support.data import require_shared_data
from trim_pomdp.datasets.processbench import ProcessBenchItem
from trim_pomdp.evaluation.simulator import (
    SIMULATED_NOTE,
    Simulator,
    SimulatorParams,
    default_simulator_file,
    load_default_simulator_params,
)
from trim_pomdp.evaluation.simulator_estimation import (
    DEFAULT_STRONG_GENERATOR,
    DEFAULT_WEAK_GENERATOR,
    approx_token_count,
    estimate_simulator_params,
    fit_concentration,
    fit_recovery,
    pooled_step_accuracy,
    same_problem_error_corr,
)
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.routers.rollout import rollout
from trim_pomdp.types import EpisodeBatch


def run(sim, router, n, seed):
    """Per-query ``(correct, strong_tokens)`` of ``router`` on ``sim`` (what Simulator.run returned)."""
    return rollout(router, sim, n, seed=seed, lam=0.0, keep_episodes=True).outcomes()


class Always:
    """Batch router that always takes one action."""

    def __init__(self, action: int) -> None:
        self.action = action

    def reset_batch(self, n: int) -> None:
        pass

    def decide_batch(self, obs):
        return np.full(obs.n, self.action)


class Below:
    """TRIM-Thr written here (regenerate iff r_t < k), so the test does not depend on the routers package."""

    def __init__(self, k: float) -> None:
        self.k = k

    def reset(self) -> None:
        pass

    def decide(self, obs) -> str:
        return "regenerate" if obs.score < self.k else "continue"

    def reset_batch(self, n: int) -> None:
        pass

    def decide_batch(self, obs):
        return (obs.score < self.k).astype(int)


@pytest.fixture(scope="module")
def sim():
    return Simulator()


def test_default_params_and_card(sim):
    p = load_default_simulator_params()
    assert p.split == "math" and p.weak_generator == DEFAULT_WEAK_GENERATOR
    assert p.strong_generator == DEFAULT_STRONG_GENERATOR
    assert p.card["simulated"] is True and p.simulated
    for split in ("gsm8k", "olympiadbench", "omnimath"):
        assert load_default_simulator_params(split).split == split
    with pytest.raises(InvalidParameterError, match="available"):
        load_default_simulator_params("aime")
    assert sim.card["simulated"] is True and sim.card["note"] == SIMULATED_NOTE
    assert sim.card["prm"]["simulated"] is True
    assert "simulated" in repr(sim)


def test_episode_batch_protocol(sim):
    assert isinstance(sim, EpisodeBatch)
    obs = sim.reset(200, seed=3)
    H = sim.horizon
    assert obs.scores.shape == (200, H) and obs.t.tolist() == [1] * 200
    assert np.isfinite(obs.scores[:, 0]).all() and np.isnan(obs.scores[:, 1:]).all()
    assert ((obs.scores[:, 0] >= 0) & (obs.scores[:, 0] <= 1)).all()
    n_steps = sim.n_steps.copy()
    steps = 0
    rng = np.random.default_rng(0)
    while obs.active.any():
        # final is true exactly at each query's last step
        assert np.array_equal(obs.final[obs.active], (n_steps == obs.t)[obs.active])
        assert (obs.tokens[obs.active] >= 1).all()
        t = obs.t[0]
        assert np.isfinite(obs.scores[obs.active, :t]).all()
        obs = sim.step(rng.integers(0, 2, size=200))
        steps += 1
    assert steps == n_steps.max()
    assert sim.correct.dtype == bool and sim.strong_tokens.shape == (200,)
    with pytest.raises(InvalidParameterError, match="every episode has ended"):
        sim.step(np.zeros(200, dtype=int))
    sim.reset(5, seed=0)
    with pytest.raises(InvalidParameterError, match="shape"):
        sim.step(np.zeros(4, dtype=int))
    with pytest.raises(InvalidParameterError, match="0 \\(continue\\) or 1"):
        sim.step(np.full(5, 2))


def test_common_random_numbers_and_reserved_policies(sim):
    n, seed = 2000, 11
    q = sim.queries(n, seed)
    assert len(q) == n and q.simulated and len(set(q.query_ids)) == n
    # never regenerating is M_w alone; always regenerating is M_s alone, paying exactly C_s
    c0, t0 = run(sim, Always(0), n, seed)
    assert np.array_equal(c0, q.weak_correct) and (t0 == 0).all()
    c1, t1 = run(sim, Always(1), n, seed)
    assert np.array_equal(c1, q.strong_correct) and np.array_equal(t1, q.strong_tokens)
    # the same seed gives the same queries to every router
    a = run(sim, Below(0.5), n, seed)
    b = run(sim, Below(0.5), n, seed)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # the per-query Router path gives the same results as the batch path
    small = run(sim, Below(0.6), 50, seed)

    class Plain:
        def __init__(self):
            self.inner = Below(0.6)

        def reset(self):
            pass

        def decide(self, obs):
            return self.inner.decide(obs)

    plain = run(sim, Plain(), 50, seed)
    assert np.array_equal(small[0], plain[0]) and np.array_equal(small[1], plain[1])
    # M_s is better than M_w, and a threshold router sits in between on accuracy at a fraction of C_s
    assert q.strong_correct.mean() > q.weak_correct.mean() + 0.1
    assert q.weak_correct.mean() < a[0].mean() and a[1].mean() < q.strong_tokens.mean()
    # query-level outcomes for the ROUTERS helper's baselines
    outs = q.outcomes()
    assert outs[0].query_id == q.query_ids[0] and len(outs[0].weak_scores) == q.n_steps[0]


def test_simulated_statistics_match_parameters():
    p = load_default_simulator_params()
    sim = Simulator(p)
    n = 20000
    q = sim.queries(n, seed=5)
    H = p.horizon
    # per-problem difficulty: Beta means, spread, and p_w / p_s positively related
    assert q.p_w.mean() == pytest.approx(p.p_w_mean, abs=0.01)
    assert q.p_s.mean() == pytest.approx(p.p_s_mean, abs=0.01)
    k = p.p_w_concentration
    assert q.p_w.var() == pytest.approx(p.p_w_mean * (1 - p.p_w_mean) / (k + 1), rel=0.1)
    assert np.corrcoef(q.p_w, q.p_s)[0, 1] > 0.2
    # step counts follow the histogram
    freq = np.bincount(q.n_steps, minlength=H + 1)[1:] / n
    assert np.abs(freq - np.asarray(p.step_count_probs)).max() < 0.015
    # step tokens follow the quantiles (median), strong steps average ratio x weak
    live = np.arange(H)[None, :] < q.n_steps[:, None]
    med = np.median(sim.weak_len[live])
    qs = np.asarray(p.token_quantiles)
    assert med == pytest.approx(qs[len(qs) // 2], rel=0.1)
    ratio = sim.strong_len[live].sum() / sim.weak_len[live].sum()
    assert ratio == pytest.approx(p.strong_ratio, rel=0.05)
    # strong lengths are not a fixed ratio of weak ones
    assert np.std(np.log(sim.strong_len[live] / sim.weak_len[live])) > 0.3


def test_recovery_and_scores_after_errors():
    p = load_default_simulator_params()
    n, seed = 5000, 2
    no_rec = Simulator(replace(p, recovery=0.0))
    q0 = no_rec.queries(n, seed)
    # without recovery, M_w is right iff every one of its steps is right
    all_ok = np.array([(no_rec.u_weak[i, : q0.n_steps[i]] < q0.p_w[i]).all() for i in range(n)])
    assert np.array_equal(q0.weak_correct, all_ok)
    rec = Simulator(replace(p, recovery=0.3))
    q1 = rec.queries(n, seed)
    assert (q1.weak_correct & ~all_ok).sum() > 100  # erroneous trajectories sometimes end right
    assert (~q1.weak_correct & all_ok).sum() == 0  # recovery only ever helps a never-wrong-path unchanged
    # PRM scores: the first error scores low on average, but steps after an error often score high
    sim = Simulator(p)
    obs = sim.reset(n, seed)
    first_err, after = [], []
    while obs.active.any():
        t = obs.t[0] - 1
        cls = sim._proposal_class
        s = obs.scores[:, t]
        first_err.append(s[obs.active & (cls == 2)])
        after.append(s[obs.active & (cls == 1)])
        obs = sim.step(np.zeros(n, dtype=int))
    first_err, after = np.concatenate(first_err), np.concatenate(after)
    assert np.mean(first_err < 0.5) > 0.5
    assert np.mean(after > 0.5) > 0.3


def test_params_json_round_trip_and_errors(tmp_path):
    p = load_default_simulator_params("omnimath")
    path = tmp_path / "sim.json"
    p.to_json(path)
    back = SimulatorParams.from_json(path)
    assert back == p
    a = Simulator(back).queries(300, seed=1)
    b = Simulator(p).queries(300, seed=1)
    assert np.array_equal(a.weak_correct, b.weak_correct)
    d = p.to_dict()
    d["recovry"] = 0.1
    path.write_text(json.dumps(d))
    with pytest.raises(DataFormatError, match="did you mean 'recovery'"):
        SimulatorParams.from_json(path)
    with pytest.raises(InvalidParameterError, match="p_w_mean"):
        replace(p, p_w_mean=1.5)
    with pytest.raises(InvalidParameterError, match="step_count_probs"):
        replace(p, step_count_probs=[1.0])
    with pytest.raises(DataFormatError, match="does not exist"):
        SimulatorParams.from_json(tmp_path / "missing.json")
    multi = json.loads(default_simulator_file().read_text())
    assert set(multi["splits"]) == {"gsm8k", "math", "olympiadbench", "omnimath"}
    assert multi["card"]["simulated"] is True


# ---------------------------------------------------------------------------- calibration
def _item(i, n, label, final_ok, gen="W", problem=None):
    return ProcessBenchItem(
        id=f"x-{i}",
        generator=gen,
        problem=problem or f"p{i}",
        steps=["a b"] * n,
        final_answer_correct=final_ok,
        label=label,
        split="math",
    )


def test_calibration_pieces():
    assert (
        approx_token_count("We have \\(1/3 \\times 18 = 6\\).") == 15
    )  # We have \\ ( 1 / 3 \\ times 18 = 6 \\ ) .
    assert approx_token_count("") == 1
    # S0 / (S0 + S2): 3 + 5 correct steps, 1 error step
    items = [_item(0, 5, 3, False), _item(1, 5, -1, True)]
    assert pooled_step_accuracy(items) == pytest.approx(8 / 9)
    # recovery: with m = 1 later step, half recover -> rho = 0.5; m = 0 items are ignored
    assert fit_recovery(np.array([1, 1, 0]), np.array([True, False, True])) == pytest.approx(0.5, abs=1e-4)
    assert fit_recovery(np.array([2, 3]), np.array([False, False])) == 0.0
    # same-problem correlation: identical error status within each problem -> 1
    same = [_item(i, 4, 1 if i % 4 < 2 else -1, False, problem=f"p{i // 2}") for i in range(40)]
    assert same_problem_error_corr(same) == pytest.approx(1.0)
    probs = np.full(8, 1 / 8)
    k_low = fit_concentration(0.1, 0.85, 0.92, 0.5, probs, n=4000)
    k_high = fit_concentration(0.3, 0.85, 0.92, 0.5, probs, n=4000)
    assert k_high < k_low  # more agreement needs more spread (a smaller concentration)


@pytest.mark.data
def test_shipped_defaults_are_reproduced_from_processbench():
    from trim_pomdp.datasets.processbench import load_processbench

    data = require_shared_data("processbench")
    items = load_processbench(data_dir=data)
    fresh = estimate_simulator_params(items, split="math")
    shipped = load_default_simulator_params("math")
    for name in ("p_w_mean", "p_s_mean", "p_w_concentration", "recovery", "strong_ratio", "token_item_corr"):
        assert getattr(fresh, name) == pytest.approx(getattr(shipped, name), rel=1e-6), name
    assert fresh.step_count_probs == pytest.approx(shipped.step_count_probs)
    with pytest.raises(InvalidParameterError, match="Generators there"):
        estimate_simulator_params(items, "no-such-model", split="math")
