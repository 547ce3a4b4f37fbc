"""The TRIM-POMDP: parameters, estimation, structured and flattened forms, belief filter, process."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from tests._support.data import require_shared_data
from tests._support.oracles import expectimax_tabular, expectimax_trim
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError, ModelCheckError, ZeroLikelihoodError
from trim_pomdp.observation_models.observation import ObservationModel
from trim_pomdp.pomdp import (
    BeliefFilter,
    ModelProcess,
    TrimParams,
    TrimPOMDP,
    estimate_params,
    load_default_params,
)
from trim_pomdp.pomdp.estimation import count_tokens
from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver
from trim_pomdp.types import EpisodeBatch


# ---------------------------------------------------------------------------- fixtures
def random_obs(rng, n=3, conc=0.8) -> ObservationModel:
    pair = rng.dirichlet(np.ones(n * n) * conc, size=3).reshape(3, n, n)
    first = rng.dirichlet(np.ones(n) * conc, size=3)
    return ObservationModel.from_probs(pair, first)


def small_model(rng, H=3, K=2, n=3, lam=2e-3, p_w=0.8, p_s=0.9) -> TrimPOMDP:
    params = TrimParams(
        p_w=p_w,
        p_s=p_s,
        horizon=H,
        bucket_edges=np.arange(1, K) * 100.0,
        bucket_probs=rng.dirichlet(np.ones(K), size=H),
        hazard=rng.uniform(0.1, 0.5, size=H),
        bucket_mean_tokens=rng.uniform(20, 200, size=K),
        strong_weak_ratio=1.2,
        lam=lam,
    )
    return TrimPOMDP(params, random_obs(rng, n))


# ---------------------------------------------------------------------------- params
def test_params_validation_errors():
    with pytest.raises(InvalidParameterError, match="p_w"):
        TrimParams(p_w=1.2, p_s=0.9)
    with pytest.raises(InvalidParameterError, match="p_s"):
        TrimParams(p_w=0.5, p_s=-0.1)
    with pytest.raises(InvalidParameterError, match="lam"):
        TrimParams(p_w=0.5, p_s=0.9, lam=-1e-4)
    with pytest.raises(InvalidParameterError, match="horizon"):
        TrimParams(p_w=0.5, p_s=0.9, horizon=0)
    with pytest.raises(InvalidParameterError, match=r"bucket_probs\[1, :\]"):
        TrimParams(p_w=0.5, p_s=0.9, horizon=2, bucket_probs=[[1.0], [0.5]])
    with pytest.raises(InvalidParameterError, match=r"hazard\[0\]"):
        TrimParams(p_w=0.5, p_s=0.9, horizon=2, hazard=[1.5, 1.0])
    with pytest.raises(InvalidParameterError, match="bucket_edges"):
        TrimParams(p_w=0.5, p_s=0.9, bucket_edges=[50, 20])


def test_params_json_round_trip_and_replace(tmp_path):
    rng = np.random.default_rng(0)
    p = small_model(rng, H=4, K=3).params
    path = tmp_path / "p.json"
    p.to_json(path)
    q = TrimParams.from_json(path)
    for name in ("bucket_probs", "hazard", "bucket_mean_tokens", "bucket_edges"):
        np.testing.assert_array_equal(getattr(p, name), getattr(q, name))
    assert (q.p_w, q.p_s, q.lam, q.horizon) == (p.p_w, p.p_s, p.lam, p.horizon)
    assert TrimParams.from_json(p.to_json()).p_w == p.p_w
    r = p.replace(horizon=6)
    assert r.bucket_probs.shape == (6, 3) and np.array_equal(r.bucket_probs[5], p.bucket_probs[3])
    assert p.replace(lam=0.1).lam == 0.1
    bad = json.loads(p.to_json())
    bad["p_x"] = 1
    with pytest.raises(DataFormatError, match="p_x"):
        TrimParams.from_dict(bad)
    with pytest.raises(DataFormatError):
        TrimParams.from_json(tmp_path / "missing.json")


def test_shipped_default_params():
    p = load_default_params()
    assert p.horizon == 30 and p.n_buckets == 5
    assert 0.5 < p.p_w < p.p_s < 1
    assert p.card["weak_generator"] == "Qwen2.5-7B-Instruct"
    assert p.card["strong_generator"] == "Qwen2.5-72B-Instruct"
    assert load_default_params(lam=1e-4).lam == 1e-4


# ---------------------------------------------------------------------------- estimation
@dataclass
class _Item:
    generator: str
    steps: list
    label: int
    split: str = "toy"


def test_estimate_params_by_hand():
    items = [
        _Item("weak", ["a" * 40, "b" * 400, "c" * 8], 1),  # S0, S2, S1
        _Item("weak", ["a" * 40, "b" * 80], -1),  # S0, S0
        _Item("strong", ["x" * 100, "y" * 100], -1),
        _Item("strong", ["x" * 100, "y" * 100, "z" * 100], 0),  # S2, S1, S1
    ]
    p = estimate_params(items, "weak", "strong", horizon=4, n_buckets=2, smoothing=0.0)
    assert p.p_w == pytest.approx(3 / 4) and p.p_s == pytest.approx(2 / 3)
    # lengths 3 and 2: q(1) = 0, q(2) = 1/2, q(3) = 1/1, q(4) = 1 (horizon)
    np.testing.assert_allclose(p.hazard, [0, 0.5, 1, 1])
    tokens = np.array([10, 100, 2, 10, 20])  # ceil(len/4)
    assert count_tokens("a" * 41) == 11
    assert p.bucket_edges.tolist() == [np.quantile(tokens, 0.5)]
    assert p.strong_weak_ratio == pytest.approx(25 / tokens.mean())
    np.testing.assert_allclose(p.bucket_probs.sum(axis=1), 1)
    with pytest.raises(InvalidParameterError, match="available"):
        estimate_params(items, "nope", "strong")
    assert count_tokens("hello world", tokenizer=lambda s: s.split()) == 2


def test_estimate_params_from_processbench_reproduces_shipped_defaults():
    from trim_pomdp.datasets.processbench import SPLITS, load_processbench

    root = require_shared_data("processbench")
    splits = [s for s in SPLITS if (root / f"{s}.json").exists()]
    items = load_processbench(splits, data_dir=root)
    p = estimate_params(items, "Qwen2.5-7B-Instruct", "Qwen2.5-72B-Instruct")
    d = load_default_params()
    if sorted(splits) == sorted(d.card["splits"]):
        assert p.p_w == pytest.approx(d.p_w, abs=1e-12) and p.p_s == pytest.approx(d.p_s, abs=1e-12)
        np.testing.assert_allclose(p.hazard, d.hazard)
    assert 0.5 < p.p_w < 1 and 0.5 < p.p_s < 1


# ---------------------------------------------------------------------------- builder
def test_structured_and_flattened_forms_check_and_sizes():
    rng = np.random.default_rng(1)
    tp = small_model(rng, H=4, K=2, n=3)
    tp.check()
    flat = tp.flatten()
    assert flat.n_states == 3 * 4 * 4 + 2
    assert flat.n_observations == 4 * 9 + 4 * 3 + 1
    assert flat.discount == 0.999
    tp.bucket_of(99) == 0 and tp.bucket_of(100) == 1
    np.testing.assert_array_equal(tp.bucket_of([5, 150]), [0, 1])
    assert tp.expected_strong_tokens(1) == pytest.approx(1.2 * tp.params.bucket_mean_tokens[1])
    with pytest.raises(InvalidParameterError):
        tp.expected_strong_tokens(5)


def test_flattened_check_names_offending_index():
    rng = np.random.default_rng(2)
    flat = small_model(rng).flatten()
    flat.T[1, 5, :] *= 0.5
    with pytest.raises(ModelCheckError, match=r"T\[1, 5, :\]"):
        flat.check()
    flat = small_model(rng).flatten()
    flat.O[0, 3, 2] = 1.5
    with pytest.raises(ModelCheckError, match=r"O\[0, 3, 2\]"):
        flat.check()


def test_mismatched_observation_bins_are_rejected():
    rng = np.random.default_rng(3)
    tp = small_model(rng)

    class Bad:
        n_bins = 4

        def bin_probs(self, first):
            return np.full((3, 3), 1 / 3) if first else np.full((3, 9), 1 / 9)

    with pytest.raises(InvalidParameterError, match="bins do not match"):
        TrimPOMDP(tp.params, Bad())
    with pytest.raises(InvalidParameterError, match="bin_probs"):
        TrimPOMDP(tp.params, object())


@pytest.mark.parametrize("seed,H", [(0, 2), (1, 3), (2, 4), (3, 4)])
def test_native_solver_is_exact_on_small_trim_models(seed, H):
    """H ≤ 4, 3×3 bins, 2 buckets: bounds close and equal brute-force expectimax on the full model to 1e-9."""
    rng = np.random.default_rng(seed)
    tp = small_model(rng, H=H, K=2, n=3, lam=rng.uniform(0, 5e-3))
    truth = expectimax_trim(tp)
    for mode, prec in (("exact", 0.0), ("auto", 1e-10)):
        solver = FiniteHorizonSolver(mode=mode, precision=prec)
        policy = solver.solve(tp.structured())
        assert policy.info.lower_bound == pytest.approx(truth, abs=1e-9)
        assert policy.info.upper_bound == pytest.approx(truth, abs=1e-9)


def test_flattened_model_has_the_structured_value():
    """Expectimax on the flattened tabular POMDP = γ · exact structured value with discount γ (start +
    mid-episode).
    """
    rng = np.random.default_rng(4)
    tp = small_model(rng, H=2, K=2, n=3)
    gamma = tp.params.discount
    flat = tp.flatten()
    native = FiniteHorizonSolver(mode="exact")
    pol = native.solve(tp.structured(discount=gamma))
    v_flat = expectimax_tabular(flat, flat.b0, tp.horizon + 1)
    assert v_flat == pytest.approx(gamma * pol.info.lower_bound, abs=1e-12)
    belief = np.array([0.5, 0.2, 0.3])
    for bucket, final in ((1, False), (0, True)):
        start = tp.flatten(start=(1, bucket, final, belief))
        v = expectimax_tabular(start, start.b0, tp.horizon)
        assert v == pytest.approx(pol.action_values(1, 2 * bucket + int(final), belief).max(), abs=1e-12)
    with pytest.raises(InvalidParameterError):
        tp.flatten(start=(3, 0, False, belief))


# ---------------------------------------------------------------------------- belief filter
def test_belief_filter_update_predict_and_batches():
    rng = np.random.default_rng(5)
    tp = small_model(rng, n=3)
    f = BeliefFilter(tp)
    b = f.prior()
    np.testing.assert_allclose(b, [0.8, 0, 0.2])
    post = f.correct(b, 1, r=0.9)
    lik = tp.observation_probs(1)[:, 2]
    np.testing.assert_allclose(post, b * lik / (b * lik).sum())
    pred = f.predict(post, 1)
    np.testing.assert_allclose(pred, post @ tp.transition[1])
    post2 = f.correct(pred, 2, r=0.1, m=0.5)
    idx = 0 * 3 + 1
    np.testing.assert_allclose(
        post2, pred * tp.observation_probs(2)[:, idx] / (pred * tp.observation_probs(2)[:, idx]).sum()
    )
    B = rng.dirichlet(np.ones(3), size=7)
    r = rng.uniform(size=7)
    m = rng.uniform(size=7)
    got = f.correct_batch(B, 2, r, m)
    for i in range(7):
        np.testing.assert_allclose(got[i], f.correct(B[i], 2, r[i], m[i]))
    acts = rng.integers(0, 2, size=7)
    got = f.predict_batch(B, acts)
    for i in range(7):
        np.testing.assert_allclose(got[i], f.predict(B[i], acts[i]))
    with pytest.raises(InvalidParameterError, match="m"):
        f.correct(pred, 2, r=0.5)


def test_scalar_update_matches_the_vectorised_filter_on_random_inputs():
    """update(b, a, o) (scalar Python) = correct(predict(b, a)) (numpy), row by row and in batches."""
    from trim_pomdp.types import BatchObservation, StepObservation

    rng = np.random.default_rng(17)
    for n_bins in (3, 5):
        tp = small_model(rng, H=6, n=n_bins)
        f = BeliefFilter(tp)
        edges = np.asarray(tp.obs_model.edges)
        k = 400
        B = rng.dirichlet(np.ones(3) * 0.7, size=k)
        A = rng.integers(0, 2, size=k)
        t = rng.integers(1, 7, size=k)
        # scores anywhere in [0, 1], a quarter of them exactly on a bin edge (0 and 1 included)
        r = np.where(rng.random(k) < 0.25, rng.choice(edges, size=k), rng.random(k))
        m = np.where(rng.random(k) < 0.25, rng.choice(edges, size=k), rng.random(k))
        scalar = np.empty((k, 3))
        for i in range(k):
            ti = int(t[i])
            hist = (float(m[i]),) * (ti - 1) + (float(r[i]),)
            obs = StepObservation(ti, hist, 50, False)
            a = None if ti == 1 else int(A[i])
            scalar[i] = f.update(B[i], a, obs)
            pred = B[i] if a is None else f.predict(B[i], a)
            np.testing.assert_allclose(scalar[i], f.correct(pred, ti, r[i], m[i]), rtol=1e-12, atol=1e-15)
        scores = np.full((k, 6), np.nan)
        for i in range(k):
            scores[i, : t[i] - 1] = m[i]
            scores[i, t[i] - 1] = r[i]
        batch = BatchObservation(t, scores, np.full(k, 50), np.zeros(k, bool), np.ones(k, bool))
        np.testing.assert_allclose(f.update_batch(B, A, batch), scalar, rtol=1e-12, atol=1e-15)
    with pytest.raises(InvalidParameterError, match="m"):
        f.update_floats((0.5, 0.2, 0.3), 0, 2, 0.5, None)


def test_zero_likelihood_raises_with_context_or_floors():
    pair = np.zeros((3, 2, 2))
    pair[:, 0, 0] = 1.0
    pair[1] = 0.25  # only S1 explains other bins
    first = np.array([[1.0, 0.0], [0.5, 0.5], [1.0, 0.0]])
    tp = TrimPOMDP(TrimParams(p_w=0.8, p_s=0.9, horizon=3), ObservationModel.from_probs(pair, first))
    f = BeliefFilter(tp)
    with pytest.raises(ZeroLikelihoodError) as err:
        f.correct(f.prior(), 1, r=0.9, action=None)
    assert err.value.observation["bin"] == 1
    np.testing.assert_allclose(err.value.belief, [0.8, 0, 0.2])
    with pytest.raises(ZeroLikelihoodError) as err:
        f.correct(np.array([1.0, 0, 0]), 2, r=0.9, m=0.9, action=1)
    assert err.value.action == 1
    floored = BeliefFilter(tp, floor=1e-9).correct(f.prior(), 1, r=0.9)
    np.testing.assert_allclose(floored, [0.8, 0, 0.2], atol=1e-12)
    with pytest.raises(ZeroLikelihoodError):
        f.update_index_batch(np.array([[1.0, 0, 0]]), 1, np.array([1]))


# ---------------------------------------------------------------------------- process
def test_model_process_samples_the_model():
    rng = np.random.default_rng(6)
    tp = small_model(rng, H=4, K=2, n=3)
    proc = ModelProcess(tp)
    assert isinstance(proc, EpisodeBatch)
    n = 40_000
    obs = proc.reset(n, seed=1)
    np.testing.assert_allclose(np.bincount(proc.z, minlength=3) / n, tp.b0, atol=0.01)
    np.testing.assert_allclose(np.bincount(obs.bucket, minlength=2) / n, tp.params.bucket_probs[0], atol=0.01)
    assert abs(obs.final.mean() - tp.params.hazard[0]) < 0.01
    np.testing.assert_array_equal(tp.bucket_of(obs.tokens), obs.bucket)
    z0 = proc.z.copy()
    for z in (0, 2):
        freq = np.bincount(obs.obs_index[z0 == z], minlength=3) / np.sum(z0 == z)
        np.testing.assert_allclose(freq, tp.observation_probs(1)[z], atol=0.02)
    assert np.all(np.isnan(obs.prefix_min))
    # binning the sampled scores gives back the sampled bins
    np.testing.assert_array_equal(
        tp.obs_model.observation_index_batch(obs.score, obs.prefix_min), obs.obs_index
    )
    going = ~obs.final
    obs2 = proc.step(np.zeros(n, dtype=int))
    np.testing.assert_array_equal(obs2.active, going)
    assert not np.any(proc.correct[~going] & (z0[~going] != 0))
    np.testing.assert_array_equal(proc.correct[~going], z0[~going] == 0)
    np.testing.assert_array_equal(
        tp.obs_model.observation_index_batch(obs2.score[going], obs2.prefix_min[going]), obs2.obs_index[going]
    )
    row = obs2.row(int(np.flatnonzero(going)[0]))
    assert row.t == 2 and row.prefix_min == pytest.approx(obs2.prefix_min[np.flatnonzero(going)[0]])
    for _ in range(4):
        obs2 = proc.step(np.ones(n, dtype=int))
    assert not obs2.active.any()
    assert proc.strong_tokens.max() > 0
    with pytest.raises(InvalidParameterError):
        proc.step(np.zeros(3, dtype=int))
