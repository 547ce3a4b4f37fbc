"""Bin edges: the schemes, per-axis edges through the model, its artifact, the belief filter, policies and the
model's own process; old artifacts with one shared ``edges`` array."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.observation_models.test_observation_model import make_table
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.observation_models.binning import logit_edges, make_edges, quantile_edges
from trim_pomdp.observation_models.fitting import check_bandwidth
from trim_pomdp.observation_models.observation import ObservationModel


def test_logit_edges_are_equally_spaced_in_logit():
    e = logit_edges(12, eps=1e-3)
    assert e[0] == 0 and e[-1] == 1 and e.size == 13
    inner = np.log(e[1:-1] / (1 - e[1:-1]))
    np.testing.assert_allclose(np.diff(inner), np.diff(inner)[0], rtol=1e-12)
    assert e[1] == pytest.approx(1e-3) and e[-2] == pytest.approx(1 - 1e-3)
    with pytest.raises(InvalidParameterError, match="eps"):
        logit_edges(10, eps=0.7)


def test_quantile_edges_equalise_counts_and_handle_ties():
    rng = np.random.default_rng(0)
    x = rng.beta(8, 1, 5000)
    e = quantile_edges(x, 10)
    counts = np.histogram(x, e)[0]
    assert e.size == 11 and np.all(np.abs(counts - 500) <= 2)
    # 40% of the scores exactly 1 (a PRM at fp16 precision): one bin holds them, the others share the rest
    tied = np.concatenate([np.ones(4000), x[:6000] * 0.999])
    e = quantile_edges(tied, 10)
    assert e.size == 11 and np.all(np.diff(e) > 0)
    counts = np.histogram(tied, e)[0]
    assert counts[-1] == 4000 and counts[:-1].min() > 300
    # too few distinct values for the bins asked: still strictly increasing edges, as many as asked
    few = quantile_edges(np.repeat([0.2, 0.5, 0.9], 10), 8)
    assert few.size == 9 and np.all(np.diff(few) > 0)
    with pytest.raises(InvalidParameterError, match="scheme"):
        make_edges("log", 10)


@pytest.fixture(scope="module")
def table():
    return make_table(300, seed=2)


@pytest.mark.parametrize("bins", ["logit", "quantile"])
def test_fitted_bins_are_exact_masses_on_their_own_edges(table, bins):
    model = ObservationModel.fit(table, n_bins=8, bins=bins)
    assert model.card["bins"]["scheme"] == bins
    np.testing.assert_array_equal(model.card["bins"]["r_edges"], model.r_edges)
    assert model.shared_edges == (bins == "logit")
    for z, kde in enumerate(model.pair_kdes):
        masses = kde.bin_masses([model.r_edges, model.m_edges])
        np.testing.assert_allclose(model.pair_probs[z], masses / masses.sum(), rtol=0, atol=1e-13)
    r, m = np.array([0.31, 0.97, 0.5]), np.array([np.nan, 0.2, 0.5])
    want = [
        int(np.searchsorted(model.r_edges, r[1], side="right") - 1) * 8
        + int(np.searchsorted(model.m_edges, m[1], side="right") - 1)
    ]
    assert model.observation_index_batch(r[1:2], m[1:2]).tolist() == want


def test_per_axis_edges_survive_save_and_load_and_old_files_share_edges(table, tmp_path):
    model = ObservationModel.fit(table, n_bins=8, bins="quantile")
    assert model.edges is None and not np.array_equal(model.r_edges, model.m_edges)
    npz, _ = model.save(tmp_path / "q")
    back = ObservationModel.load(npz)
    np.testing.assert_array_equal(back.r_edges, model.r_edges)
    np.testing.assert_array_equal(back.m_edges, model.m_edges)
    np.testing.assert_allclose(
        back.likelihood(0.4, 0.3, continuous=True), model.likelihood(0.4, 0.3, continuous=True)
    )
    with np.load(npz) as data:
        assert "m_edges" in data.files
    uniform = ObservationModel.fit(table, n_bins=8)  # shared edges: written as before, one `edges` array
    npz, _ = uniform.save(tmp_path / "u")
    with np.load(npz) as data:
        assert "m_edges" not in data.files
    back = ObservationModel.load(npz)
    assert back.shared_edges and back.edges is back.m_edges


def test_different_edge_counts_are_refused():
    with pytest.raises(InvalidParameterError, match="same number of bins"):
        ObservationModel.from_probs(np.full((3, 4), 1 / 4), np.full((3, 2), 0.5), m_edges=[0, 0.3, 0.6, 1.0])


def _per_axis_pomdp(table):
    from trim_pomdp.pomdp import TrimParams, TrimPOMDP

    obs = ObservationModel.fit(table, n_bins=6, bins="quantile")
    H = 4
    params = TrimParams(
        p_w=0.85,
        p_s=0.9,
        horizon=H,
        bucket_edges=np.array([100.0]),
        bucket_probs=np.full((H, 2), 0.5),
        hazard=np.full(H, 0.3),
        bucket_mean_tokens=np.array([50.0, 150.0]),
        strong_weak_ratio=1.0,
        lam=1e-3,
    )
    return TrimPOMDP(params, obs)


def test_belief_filter_scalar_path_uses_the_m_edges(table):
    from trim_pomdp.pomdp.belief import BeliefFilter

    tp = _per_axis_pomdp(table)
    f = BeliefFilter(tp)
    rng = np.random.default_rng(0)
    for _ in range(200):
        b = rng.dirichlet(np.ones(3))
        r, m = rng.random(), rng.random()
        _, post, idx = f.update_floats(tuple(b), 0, 3, r, m)
        assert idx == tp.obs_model.observation_index(r, m)
        want = f.correct_batch(f.predict_batch(b[None], [0]), 3, [r], [m])[0]
        np.testing.assert_allclose(post, want, rtol=1e-12)


def test_policy_and_model_process_keep_per_axis_edges(table, tmp_path):
    from trim_pomdp.pomdp import ModelProcess, TrimPolicy, solve_trim

    tp = _per_axis_pomdp(table)
    policy = solve_trim(tp)
    policy.save(tmp_path / "pol")
    card = json.loads((tmp_path / "pol" / "policy.json").read_text())
    assert card["format"]
    rebuilt = TrimPolicy.load(tmp_path / "pol").trim_pomdp().obs_model
    np.testing.assert_array_equal(rebuilt.m_edges, tp.obs_model.m_edges)
    np.testing.assert_array_equal(rebuilt.r_edges, tp.obs_model.r_edges)
    proc = ModelProcess(tp)
    obs = proc.reset(3000, seed=0)
    obs = proc.step(np.zeros(3000, dtype=int))
    live = obs.active
    assert live.any()
    np.testing.assert_array_equal(
        tp.obs_model.observation_index_batch(obs.score[live], obs.prefix_min[live]), obs.obs_index[live]
    )


@pytest.mark.parametrize("bad", [1e-300, 0.0, -1.0, 2.0, float("nan"), "wide"])
def test_degenerate_bandwidths_are_refused(table, bad):
    with pytest.raises(InvalidParameterError, match="bandwidth"):
        check_bandwidth(bad)
    with pytest.raises(InvalidParameterError, match="bandwidth"):
        ObservationModel.fit(table, n_bins=4, bandwidth=bad)
    assert check_bandwidth(1e-4) == 1e-4 and check_bandwidth("cv") == "cv"
