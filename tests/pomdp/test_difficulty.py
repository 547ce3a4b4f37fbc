"""The TRIM-POMDP with latent difficulty classes: parameters, the merged S1, exact values, forms, filter, policies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests._support.oracles import expectimax_tabular
from tests.pomdp.test_trim_model import random_obs
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.pomdp import BeliefFilter, ModelProcess, TrimParams, TrimPolicy, TrimPOMDP, solve_trim
from trim_pomdp.pomdp.params import DifficultyClasses
from trim_pomdp.pomdp.problem import hidden_layout
from trim_pomdp.routers import BeliefRouter
from trim_pomdp.routers.rollout import rollout
from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver
from trim_pomdp.solvers.finite_horizon.vertex_policy import FiniteHorizonVertexPolicy
from trim_pomdp.types import StepObservation


def classes_model(rng, D=2, H=3, K=2, n=3, lam=2e-3) -> TrimPOMDP:
    prior = rng.dirichlet(np.ones(D))
    diff = DifficultyClasses(prior, rng.uniform(0.4, 0.95, D), rng.uniform(0.6, 0.99, D))
    params = TrimParams(
        p_w=0.8,
        p_s=0.9,
        horizon=H,
        bucket_edges=np.arange(1, K) * 100.0,
        bucket_probs=rng.dirichlet(np.ones(K), size=H),
        hazard=rng.uniform(0.1, 0.5, size=H),
        bucket_mean_tokens=rng.uniform(20, 200, size=K),
        strong_weak_ratio=1.2,
        lam=lam,
        difficulty=diff,
    )
    return TrimPOMDP(params, random_obs(rng, n))


def expectimax_classes(tp: TrimPOMDP, i: int = 0, belief: np.ndarray | None = None) -> float:
    """Exact value with the full hidden state (d, z), D × 3, written from the model's definition: every class
    keeps its own S1 (nothing is merged), so agreeing with the solver checks the merged form too."""
    p = tp.params
    dc = p.difficulty
    pw, ps, D, H = dc.p_w, dc.p_s, dc.n_classes, p.horizon
    if belief is None:
        belief = np.stack([dc.prior * pw, np.zeros(D), dc.prior * (1 - pw)], axis=1)  # (D, 3)
    O = tp.class_observation_probs(i + 1)
    q = 1.0 if i == H - 1 else p.hazard[i]
    total = 0.0
    for c in range(p.n_buckets):
        cost = p.lam * p.strong_weak_ratio * p.bucket_mean_tokens[c]
        for final, pf in ((True, q), (False, 1 - q)):
            w = p.bucket_probs[i, c] * pf
            if w == 0:
                continue
            for o in range(O.shape[1]):
                u = belief * O[:, o][None, :]
                s = u.sum()
                if s == 0:
                    continue
                b = u / s
                right = b[:, 0] + b[:, 2]  # per class, the prefix is still right
                if final:
                    v_c = p.reward * b[:, 0].sum()
                    v_r = p.reward * (ps * right).sum() - cost
                else:
                    cont = np.stack([pw * b[:, 0], b[:, 1] + b[:, 2], (1 - pw) * b[:, 0]], axis=1)
                    regen = np.stack(
                        [ps * pw * right, b[:, 1] + (1 - ps) * right, ps * (1 - pw) * right], axis=1
                    )
                    v_c = expectimax_classes(tp, i + 1, cont)
                    v_r = expectimax_classes(tp, i + 1, regen) - cost
                total += w * s * max(v_c, v_r)
    return total


# ---------------------------------------------------------------------------- parameters
def test_difficulty_parameters_are_checked_and_round_trip(tmp_path):
    d = DifficultyClasses([0.25, 0.75], [0.9, 0.6], [0.95, 0.8], card={"from": "test"})
    p = TrimParams(0.8, 0.9, difficulty=d)
    assert p.n_classes == 2 and np.allclose(p.class_p_w, [0.9, 0.6])
    back = TrimParams.from_json(p.to_json(tmp_path / "p.json"))
    assert back.n_classes == 2 and np.allclose(back.difficulty.prior, [0.25, 0.75])
    assert back.difficulty.card == {"from": "test"}
    assert "difficulty" not in TrimParams(0.8, 0.9).to_dict()  # one class: files stay as before
    with pytest.raises(InvalidParameterError, match=r"prior must be non-negative and sum to 1.*sum 0\.9"):
        TrimParams(0.8, 0.9, difficulty={"prior": [0.5, 0.4], "p_w": [0.9, 0.5], "p_s": [0.9, 0.8]})
    with pytest.raises(InvalidParameterError, match="p_s has 1 values but the prior has 2"):
        DifficultyClasses([0.5, 0.5], [0.9, 0.5], [0.9])
    with pytest.raises(InvalidParameterError, match="at least one class"):
        DifficultyClasses([], [], [])
    with pytest.raises(InvalidParameterError, match="probabilities"):
        DifficultyClasses([1.0], [1.2], [0.9])
    bad = p.to_dict()
    bad["difficulty"]["prior"] = [0.7, 0.7]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(InvalidParameterError, match=r"difficulty\.prior"):
        TrimParams.from_json(tmp_path / "bad.json")
    bad["difficulty"] = {"prior": [1.0], "p_w": [0.9]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DataFormatError, match=r"missing \['p_s'\]"):
        TrimParams.from_json(tmp_path / "bad.json")


def test_hidden_layout_keeps_the_pooled_order_and_merges_s1():
    z, d, names = hidden_layout(1)
    assert names == ["S0", "S1", "S2"] and list(z) == [0, 1, 2]
    z, d, names = hidden_layout(3)
    assert names == ["S0|d1", "S1", "S2|d1", "S0|d2", "S2|d2", "S0|d3", "S2|d3"]
    assert list(z) == [0, 1, 2, 0, 2, 0, 2] and list(d) == [0, -1, 0, 1, 1, 2, 2]
    with pytest.raises(InvalidParameterError):
        hidden_layout(0)


def test_one_class_is_the_pooled_model():
    rng = np.random.default_rng(1)
    tp = classes_model(rng, D=2)
    p = tp.params
    one = TrimPOMDP(p.replace(difficulty=DifficultyClasses([1.0], [p.p_w], [p.p_s])), tp.obs_model)
    pooled = TrimPOMDP(p.replace(difficulty=None), tp.obs_model)
    for a, b in ((one.transition, pooled.transition), (one.b0, pooled.b0), (one.reward(), pooled.reward())):
        np.testing.assert_allclose(a, b)
    assert one.n_hidden == 3 and one.vertices is not None and pooled.vertices is None


# ---------------------------------------------------------------------------- exact values
@pytest.mark.parametrize("seed,D,H,K,n", [(0, 2, 2, 2, 3), (1, 2, 3, 1, 2), (5, 2, 4, 1, 2), (2, 3, 2, 2, 3)])
def test_solver_is_exact_on_small_models_with_classes(seed, D, H, K, n):
    """Exact mode equals expectimax over the full (d, z) belief (S1 not merged); auto mode brackets it."""
    rng = np.random.default_rng(seed)
    tp = classes_model(rng, D=D, H=H, K=K, n=n, lam=rng.uniform(0, 5e-3))
    truth = expectimax_classes(tp)
    exact = FiniteHorizonSolver(mode="exact").solve(tp.structured())
    assert isinstance(exact, FiniteHorizonVertexPolicy)
    assert exact.info.lower_bound == pytest.approx(truth, abs=1e-9)
    assert exact.info.upper_bound == pytest.approx(truth, abs=1e-9)
    auto = FiniteHorizonSolver(precision=1e-4).solve(tp.structured())
    assert auto.info.lower_bound - 1e-9 <= truth <= auto.info.upper_bound + 1e-9
    assert auto.info.gap <= 1e-4


def test_classes_with_equal_accuracies_have_the_pooled_value():
    rng = np.random.default_rng(5)
    tp = classes_model(rng, D=2, H=4, K=1, n=2)
    same = tp.params.replace(difficulty=DifficultyClasses([0.3, 0.7], [0.8, 0.8], [0.9, 0.9]))
    split = FiniteHorizonSolver(mode="exact").solve(TrimPOMDP(same, tp.obs_model).structured())
    pooled = FiniteHorizonSolver(mode="exact").solve(
        TrimPOMDP(same.replace(difficulty=None, p_w=0.8, p_s=0.9), tp.obs_model).structured()
    )
    assert split.info.lower_bound == pytest.approx(pooled.info.lower_bound, abs=1e-10)


def test_flattened_model_with_classes_has_the_structured_value_and_point_based_brackets_it():
    from trim_pomdp.solvers.pointbased import PointBasedSolver

    rng = np.random.default_rng(6)
    tp = classes_model(rng, D=2, H=2)
    gamma = tp.params.discount
    flat = tp.flatten()
    assert flat.n_states == 5 * 2 * 4 + 2
    exact = FiniteHorizonSolver(mode="exact").solve(tp.structured(discount=gamma))
    v_flat = expectimax_tabular(flat, flat.b0, tp.horizon + 1)
    assert v_flat == pytest.approx(gamma * exact.info.lower_bound, abs=1e-12)
    pb = PointBasedSolver(precision=1e-6, time_limit=20).solve(flat)
    assert pb.info.lower_bound - 1e-9 <= v_flat <= pb.info.upper_bound + 1e-9
    tpol = TrimPolicy.from_alpha_policy(pb, tp)
    b = tp.b0 / tp.b0.sum()
    assert tpol.action_values(1, 0, False, b).shape == (2,)


# ---------------------------------------------------------------------------- filter, process, policy
def test_filter_with_classes_is_bayes_on_the_full_model():
    rng = np.random.default_rng(7)
    tp = classes_model(rng, D=2, H=4, n=4)
    f = BeliefFilter(tp)
    dc = tp.params.difficulty
    full = np.stack([dc.prior * dc.p_w, np.zeros(2), dc.prior * (1 - dc.p_w)], axis=1)  # (d, z)
    b, a = f.prior(), None
    cont = lambda x: np.stack([dc.p_w * x[:, 0], x[:, 1] + x[:, 2], (1 - dc.p_w) * x[:, 0]], axis=1)  # noqa: E731
    scores: list[float] = []
    for t in range(1, 5):
        r = float(rng.uniform())
        scores.append(r)
        obs = StepObservation(t, tuple(scores), 50, False)
        b = f.update(b, a, obs)
        full = cont(full) if a is not None else full
        o = f.observation_index(t, r, obs.prefix_min)
        full = full * tp.class_observation_probs(t)[:, o][None, :]
        full /= full.sum()
        zc, dcl, _ = hidden_layout(2)
        merged = [full[:, 1].sum() if z == 1 else full[d, z] for z, d in zip(zc, dcl, strict=True)]
        np.testing.assert_allclose(b, merged, atol=1e-12)
        batch = f.update_index_batch(f.predict_batch(b[None, :], [0]), [t + 1], [0]) if t < 4 else None
        if batch is not None:
            single = f.update_index(f.predict(b, 0), t + 1, 0)
            np.testing.assert_allclose(batch[0], single, atol=1e-12)
        a = 0


def test_policy_with_classes_saves_loads_and_its_scalar_path_agrees(tmp_path):
    rng = np.random.default_rng(8)
    tp = classes_model(rng, D=2, H=5, K=2, n=4)
    pol = solve_trim(tp)
    assert pol.n_hidden == 5 and pol.n_classes == 2
    pol.save(tmp_path)
    card = json.loads((tmp_path / "policy.json").read_text())
    assert card["format"] == "trim-pomdp/trim-policy/2" and card["params"]["difficulty"]["prior"]
    back = TrimPolicy.load(tmp_path)
    for _ in range(100):
        b = rng.dirichlet(np.ones(5))
        t, c = int(rng.integers(1, 6)), int(rng.integers(0, 4))
        np.testing.assert_allclose(
            back.action_values(t, c // 2, c % 2, b), pol.action_values(t, c // 2, c % 2, b)
        )
        np.testing.assert_allclose(
            back.action_values_floats(t, c, tuple(b)), pol.action_values(t, c // 2, c % 2, b)
        )
    al, _ac = back.alphas_at(3, 1, False)
    b = rng.dirichlet(np.ones(5), size=10)
    np.testing.assert_allclose(
        (b @ al.T).max(axis=1), back.action_values(3, 1, False, b).max(axis=1), atol=1e-12
    )
    with pytest.raises(InvalidParameterError, match="5 hidden states of 2 difficulty classes"):
        back.action_values(1, 0, False, [0.5, 0.2, 0.3])
    card["params"]["difficulty"]["p_w"][0] = 0.5  # a hand edit is refused
    (tmp_path / "policy.json").write_text(json.dumps(card))
    with pytest.raises(DataFormatError):
        TrimPolicy.load(tmp_path)


def test_router_and_process_with_classes_reach_the_certified_value():
    rng = np.random.default_rng(9)
    tp = classes_model(rng, D=2, H=6, K=2, n=4, lam=1e-3)
    pol = solve_trim(tp, FiniteHorizonSolver(precision=1e-4))
    res = rollout(pol, ModelProcess(tp), 40_000, seed=1)
    assert abs(res.ret - pol.info.lower_bound) < 4 * res.ret_se + 1e-4
    router = BeliefRouter(pol, tp, gate=True)
    router.reset()
    router.decide(StepObservation(1, (0.2,), 150, False))
    d = router.last_decision
    assert len(d["belief"]) == 5 and d["source"] in ("policy", "gate")
    # the single-query path and the batch path take the same actions
    src = ModelProcess(tp)
    obs = src.reset(50, seed=3)
    batch = BeliefRouter(pol, tp, gate=False)
    batch.reset_batch(50)
    singles = [BeliefRouter(pol, tp, gate=False) for _ in range(50)]
    for r in singles:
        r.reset()
    while obs.active.any():
        acts = batch.decide_batch(obs)
        for i in np.flatnonzero(obs.active):
            assert (singles[i].decide(obs.row(int(i))) == "regenerate") == bool(acts[i])
        obs = src.step(acts)


def test_regions_per_class(tmp_path):
    pytest.importorskip("matplotlib")
    from trim_pomdp.pomdp import plot_regenerate_regions, regenerate_region_table

    rng = np.random.default_rng(10)
    tp = classes_model(rng, D=2, H=4, K=2, n=4)
    pol = solve_trim(tp)
    rows = regenerate_region_table(pol, resolution=10, difficulty=1)
    assert rows and all(r["difficulty"] == 1 for r in rows)
    plot_regenerate_regions(pol, path=tmp_path / "r.png", resolution=12)
    assert (tmp_path / "r.png").stat().st_size > 0
