"""Outcome supervision (EM over the hidden first-error step): recovery on the model's own process, the
likelihood never decreasing, the card, the artifact, and bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.observation_models.chain import Trajectories
from trim_pomdp.observation_models.observation import ObservationModel
from trim_pomdp.observation_models.outcome_em import fit_outcome_em

N_BINS = 8
#: true r-bin probabilities of each class (S0 high, S1 middling, S2 low); the same at t = 1 and later
TRUE = np.array(
    [
        [0.01, 0.01, 0.02, 0.03, 0.05, 0.10, 0.28, 0.50],
        [0.10, 0.12, 0.14, 0.14, 0.14, 0.14, 0.12, 0.10],
        [0.35, 0.25, 0.15, 0.10, 0.06, 0.04, 0.03, 0.02],
    ]
)


def simulate(n_items: int, p_w: float = 0.9, rho: float = 0.0, seed: int = 0) -> Trajectories:
    """Solutions from the model's own chain with r-only emissions TRUE, uniform within bins."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 10, n_items)
    H = int(lengths.max())
    r = np.full((n_items, H), np.nan)
    outcome = np.ones(n_items)
    labels = np.full(n_items, -1)
    edges = np.linspace(0, 1, N_BINS + 1)
    for i, T in enumerate(lengths):
        ok = rng.random(T) < p_w
        k = int(np.argmin(ok)) if not ok.all() else -1
        z = np.zeros(T, dtype=int)
        if k >= 0:
            z[k], z[k + 1 :] = 2, 1
            outcome[i] = float(rng.random() < rho)
        labels[i] = k
        b = np.array([rng.choice(N_BINS, p=TRUE[c]) for c in z])
        r[i, :T] = edges[b] + rng.random(T) / N_BINS
    return Trajectories.from_arrays(r, lengths, outcome, labels)


@pytest.fixture(scope="module")
def fitted():
    traj = simulate(4000, p_w=0.9, rho=0.15, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # must converge
        res = fit_outcome_em(traj, n_bins=N_BINS, bins="uniform", r_only=True, restarts=2, seed=0)
    return traj, res


def test_recovers_p_w_rho_and_the_class_densities(fitted):
    _, res = fitted
    assert (
        res.converged and res.p_w == pytest.approx(0.9, abs=0.01) and res.rho == pytest.approx(0.15, abs=0.05)
    )
    got = res.model.pair_probs.sum(axis=2)  # r-only: P(r-bin | z), spread evenly over the m-bins
    for c in (0, 2):  # the classes the outcomes identify best; S1 is seen only through wrong answers
        assert 0.5 * np.abs(got[c] - TRUE[c]).sum() < 0.06, (c, got[c])
    assert 0.5 * np.abs(got[1] - TRUE[1]).sum() < 0.12


def test_log_likelihood_never_decreases_and_is_reported(fitted):
    _, res = fitted
    h = np.array(res.history)
    assert h.size >= 3 and np.all(np.diff(h) >= -1e-12)
    assert res.log_likelihood == pytest.approx(h[-1] * fitted[0].lengths.sum())
    assert len(res.restarts) == 2 and res.seconds_per_iteration > 0
    em = res.model.card["em"]
    assert (
        em["converged"] is True
        and em["iterations"]
        == res.restarts[int(np.argmax([r["log_likelihood"] for r in res.restarts]))]["iterations"]
    )
    assert res.model.card["supervision"] == "outcome" and res.model.card["p_w"] == res.p_w


def test_the_result_is_an_ordinary_artifact(fitted, tmp_path):
    traj, res = fitted
    _, js = res.model.save(tmp_path / "em")
    back = ObservationModel.load(tmp_path / "em")
    np.testing.assert_array_equal(back.pair_probs, res.model.pair_probs)
    card = json.loads(js.read_text())
    assert card["em"]["log_likelihood_per_step"] == res.history and card["rho_source"] == "estimated by EM"
    # the stored, weighted points rebuild the densities whose masses are the bins
    for c, kde in enumerate(back.pair_kdes):
        masses = kde.bin_masses(back.r_edges)
        np.testing.assert_allclose(back.pair_probs[c].sum(axis=1), masses / masses.sum(), atol=1e-12)
    # the fitted model's own likelihood of the data is the reported one
    from trim_pomdp.observation_models.chain import log_emissions, path_posterior

    post = path_posterior(log_emissions(back, traj), traj.lengths, res.p_w, res.rho, traj.outcome)
    assert post.log_likelihood.sum() == pytest.approx(res.log_likelihood, rel=1e-9)


def test_fixed_rho_and_logit_scale():
    traj = simulate(1500, p_w=0.85, rho=0.0, seed=2)
    res = fit_outcome_em(
        traj, n_bins=N_BINS, bins="logit", density_scale="logit", r_only=True, rho=0.0, restarts=1
    )
    assert res.rho == 0.0 and res.model.card["rho_source"] == "fixed"
    assert res.p_w == pytest.approx(0.85, abs=0.02)
    assert res.model.density_scale == "logit" and np.all(np.diff(res.history) >= -1e-12)


def test_not_converging_warns_keeps_the_best_iterate_and_says_so():
    traj = simulate(300, seed=3)
    with pytest.warns(UserWarning, match="stopped before converging"):
        res = fit_outcome_em(traj, n_bins=N_BINS, r_only=True, max_iter=1, restarts=1)
    assert res.converged is False and res.model.card["em"]["converged"] is False
    assert res.model.card["em"]["stop_reason"] == "max_iter"


def test_bad_input_is_refused_with_a_reason():
    traj = simulate(200, seed=4)
    right = Trajectories.from_arrays(traj.r, traj.lengths, np.ones(len(traj)))
    with pytest.raises(InvalidParameterError, match="needs wrong final answers"):
        fit_outcome_em(right, n_bins=N_BINS)
    same = Trajectories.from_arrays(np.where(traj.valid, 0.7, np.nan), traj.lengths, traj.outcome)
    with pytest.raises(InvalidParameterError, match="identical scores"):
        fit_outcome_em(same, n_bins=N_BINS)
    ungraded = Trajectories.from_arrays(
        traj.r, traj.lengths, np.where(np.arange(len(traj)) == 5, np.nan, traj.outcome)
    )
    with pytest.raises(InvalidParameterError, match="no known verdict"):
        fit_outcome_em(ungraded, n_bins=N_BINS)
    with pytest.raises(InvalidParameterError, match="cv"):
        fit_outcome_em(traj, bandwidth="cv")
    with pytest.raises(InvalidParameterError, match="rho"):
        fit_outcome_em(traj, rho=1.0)
