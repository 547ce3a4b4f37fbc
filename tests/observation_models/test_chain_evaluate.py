"""The continue-only chain (filtered beliefs, path posterior) and evaluate_observations' metrics, with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.observation_models.chain import Trajectories, filtered_beliefs, log_emissions, path_posterior
from trim_pomdp.observation_models.evaluate import (
    evaluate_observations,
    expected_calibration_error,
    outcome_metrics,
)
from trim_pomdp.observation_models.observation import ObservationModel


def random_model(rng, n=4):
    pair = rng.dirichlet(np.ones(n * n), size=3).reshape(3, n, n)
    first = rng.dirichlet(np.ones(n), size=3)
    return ObservationModel.from_probs(pair, first)


def random_trajectories(rng, n_items=30, H=6):
    lengths = rng.integers(1, H + 1, n_items)
    r = rng.random((n_items, H))
    outcome = rng.integers(0, 2, n_items).astype(float)
    outcome[::7] = np.nan
    return Trajectories.from_arrays(r, lengths, outcome)


def test_filtered_beliefs_are_the_belief_filter_continuing_at_every_step():
    from trim_pomdp.pomdp import TrimParams, TrimPOMDP
    from trim_pomdp.pomdp.belief import BeliefFilter

    rng = np.random.default_rng(0)
    obs = random_model(rng)
    H = 6
    params = TrimParams(
        p_w=0.83,
        p_s=0.9,
        horizon=H,
        bucket_edges=np.array([100.0]),
        bucket_probs=np.full((H, 2), 0.5),
        hazard=np.full(H, 0.3),
        bucket_mean_tokens=np.array([50.0, 150.0]),
        strong_weak_ratio=1.0,
        lam=1e-3,
    )
    f = BeliefFilter(TrimPOMDP(params, obs))
    traj = random_trajectories(rng, H=H)
    B = filtered_beliefs(log_emissions(obs, traj), traj.lengths, 0.83)
    for i in range(len(traj)):
        b, action = f.prior(), None
        for t in range(traj.lengths[i]):
            m = None if t == 0 else float(traj.m[i, t])
            _, b, _ = f.update_floats(tuple(b), action, t + 1, float(traj.r[i, t]), m)
            action = 0
            np.testing.assert_allclose(b, B[i, t], rtol=1e-10, atol=1e-14)
    assert np.isnan(B[~traj.valid]).all()


def _brute_force(logL_i, T, p_w, rho, y):
    """Every class path of one solution: first error at k (or none), with its joint log-probability."""
    paths, logs = [], []
    for k in [*range(T), None]:
        z = [0] * T if k is None else [0] * k + [2] + [1] * (T - k - 1)
        lp = (T * np.log(p_w)) if k is None else (k * np.log(p_w) + np.log(1 - p_w))
        lp += sum(logL_i[t, z[t]] for t in range(T))
        if not np.isnan(y):
            p_right = 1.0 if k is None else rho
            lp += (
                np.log(p_right if y == 1 else 1 - p_right)
                if (p_right if y == 1 else 1 - p_right) > 0
                else -np.inf
            )
        paths.append(z)
        logs.append(lp)
    return paths, np.array(logs)


@pytest.mark.parametrize("rho", [0.0, 0.3])
def test_path_posterior_is_the_enumeration_of_every_path(rho):
    rng = np.random.default_rng(1)
    obs = random_model(rng)
    traj = random_trajectories(rng, n_items=20, H=5)
    logL = log_emissions(obs, traj)
    post = path_posterior(logL, traj.lengths, 0.8, rho, traj.outcome)
    for i in range(len(traj)):
        T = traj.lengths[i]
        paths, logs = _brute_force(logL[i], T, 0.8, rho, traj.outcome[i])
        assert post.log_likelihood[i] == pytest.approx(logsumexp(logs), rel=1e-12)
        w = np.exp(logs - logsumexp(logs))
        want = np.zeros((T, 3))
        for z, wk in zip(paths, w, strict=True):
            want[np.arange(T), z] += wk
        np.testing.assert_allclose(post.class_weights[i, :T], want, atol=1e-12)
        assert post.p_no_error[i] == pytest.approx(w[-1], abs=1e-12)
    np.testing.assert_allclose(post.class_weights[traj.valid].sum(axis=1), 1.0, atol=1e-12)
    with pytest.raises(InvalidParameterError, match="p_w"):
        path_posterior(logL, traj.lengths, 1.0, 0.1)


def test_ece_and_metrics_on_known_answers():
    p = np.array([0.05, 0.05, 0.95, 0.95])
    y = np.array([0, 1, 1, 1])
    # bin 0: mean p 0.05, observed 0.5; bin 9: 0.95 against 1.0
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == 0.0  # 1 falls in the last bin
    m, note = outcome_metrics(p, y)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2)) and m["auroc"] == pytest.approx(5 / 6)
    m, note = outcome_metrics([0.2, 0.9], [1, 1])
    assert m["auroc"] is None and "every final answer is right" in note


def _two_bin_items(informative: bool, n_items=400, T=5, seed=0):
    """Scores from a two-bin PRM: low (0.1) or high (0.9). Perfect: a step scores low iff it is the first error."""
    rng = np.random.default_rng(seed)
    r = np.full((n_items, T), 0.9)
    labels = np.where(rng.random(n_items) < 0.4, rng.integers(0, T, n_items), -1)
    for i, k in enumerate(labels):
        if informative and k >= 0:
            r[i, k] = 0.1
        if not informative:
            r[i] = np.where(rng.random(T) < 0.3, 0.1, 0.9)
    return Trajectories.from_arrays(r, np.full(n_items, T), (labels == -1).astype(float), labels)


def test_a_perfect_prm_gives_auroc_1_and_an_uninformative_one_0_5():
    # two bins per axis, low [0, 0.5) and high [0.5, 1]; pair_probs[z, r-bin, m-bin]
    pair = np.array(
        [
            [[0, 0], [0, 1]],  # S0: r high after a correct (high) prefix
            [[0.5, 0], [0.5, 0]],  # S1: anything after the error (m low)
            [[0, 1], [0, 0]],  # S2: r low after a correct prefix
        ],
        dtype=float,
    )
    first = np.array([[0, 1], [0.5, 0.5], [1, 0]], dtype=float)
    perfect = ObservationModel.from_probs(pair, first, card={"p_w": 0.9})
    ev = evaluate_observations(perfect, _two_bin_items(True))
    assert ev.summary["outcome"]["belief"]["auroc"] == pytest.approx(1.0)
    assert ev.summary["steps"]["s2_auroc_belief"] == pytest.approx(1.0)
    flat = ObservationModel.from_probs(np.full((3, 2, 2), 0.25), np.full((3, 2), 0.5), card={"p_w": 0.9})
    ev = evaluate_observations(flat, _two_bin_items(False))
    assert ev.summary["outcome"]["belief"]["auroc"] == pytest.approx(0.5)  # every prediction is p_w^T
    assert ev.summary["outcome"]["belief"]["brier"] == pytest.approx(
        np.mean((0.9**5 - ev.predictions["y"]) ** 2)
    )


def test_summary_has_exactly_the_documented_keys_and_nulls_say_why():
    rng = np.random.default_rng(2)
    obs = random_model(rng)
    traj = random_trajectories(rng)
    ev = evaluate_observations(obs, traj, p_w=0.8)
    assert set(ev.summary) == {"n_items", "outcome", "steps"}
    assert set(ev.summary["outcome"]) == {"belief", "min", "last", "product"}
    for v in ev.summary["outcome"].values():
        assert set(v) == {"auroc", "brier", "ece"}
    assert ev.summary["steps"] is None and any("step labels" in n for n in ev.notes)
    assert ev.details["rho"] == 0.0 and any("rho" in n for n in ev.notes)
    unknown = Trajectories.from_arrays(traj.r, traj.lengths)
    ev = evaluate_observations(obs, unknown, p_w=0.8, rho=0.2)
    assert ev.summary["outcome"] is None and any("known final answer" in n for n in ev.notes)
    with pytest.raises(InvalidParameterError, match="records no p_w"):
        evaluate_observations(obs, traj)


def test_aggregates_are_min_last_and_product():
    traj = Trajectories.from_arrays(np.array([[0.9, 0.5, 0.8], [0.99, np.nan, np.nan]]), [3, 1], [1.0, 0.0])
    obs = ObservationModel.from_probs(np.full((3, 2, 2), 0.25), np.full((3, 2), 0.5), card={"p_w": 0.9})
    ev = evaluate_observations(obs, traj)
    np.testing.assert_allclose(ev.predictions["min"], [0.5, 0.99])
    np.testing.assert_allclose(ev.predictions["last"], [0.8, 0.99])
    np.testing.assert_allclose(ev.predictions["product"], [0.36, 0.99])
    assert list(itertools.chain(ev.predictions["id"])) == ["0", "1"]
