"""TrimPolicy: queries, persistence, flattened-model policies, Monte Carlo agreement, behaviour in λ."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from trim_pomdp._internal.simplex import simplex_grid
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.observation_models.observation import ObservationModel
from trim_pomdp.pomdp import (
    ModelProcess,
    TrimParams,
    TrimPolicy,
    TrimPOMDP,
    format_region_table,
    regenerate_region,
    regenerate_region_table,
    solve_trim,
)
from trim_pomdp.routers.belief import BeliefRouter
from trim_pomdp.routers.rollout import rollout
from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver
from trim_pomdp.solvers.policy import AlphaVectorPolicy


def make_model(seed=0, H=3, K=2, n=3, lam=2e-3, p_w=0.8, p_s=0.9) -> TrimPOMDP:
    rng = np.random.default_rng(seed)
    pair = rng.dirichlet(np.ones(n * n) * 0.8, size=3).reshape(3, n, n)
    first = rng.dirichlet(np.ones(n) * 0.8, size=3)
    params = TrimParams(
        p_w=p_w,
        p_s=p_s,
        horizon=H,
        bucket_edges=np.arange(1, K) * 100.0,
        bucket_probs=rng.dirichlet(np.ones(K) * 3, size=H),
        hazard=rng.uniform(0.1, 0.4, size=H),
        bucket_mean_tokens=np.linspace(50, 200, K),
        strong_weak_ratio=1.0,
        lam=lam,
    )
    return TrimPOMDP(params, ObservationModel.from_probs(pair, first))


def evaluate_exactly(policy: TrimPolicy, tp: TrimPOMDP, i=0, beta=None) -> tuple[float, float]:
    """(success probability, expected strong tokens) of a policy, by recursion over observation histories."""
    p = tp.params
    beta = tp.b0 if beta is None else beta
    O = tp.observation_probs(i + 1)
    q = 1.0 if i == p.horizon - 1 else p.hazard[i]
    acc = tok = 0.0
    for c in range(p.n_buckets):
        for final, pf in ((True, q), (False, 1 - q)):
            w = p.bucket_probs[i, c] * pf
            if w == 0:
                continue
            for o in range(O.shape[1]):
                u = beta * O[:, o]
                s = u.sum()
                if s == 0:
                    continue
                b = u / s
                a = policy.action(i + 1, c, final, b)
                t_here = tp.expected_strong_tokens(c) if a == 1 else 0.0
                if final:
                    ok = b[0] if a == 0 else p.p_s * (b[0] + b[2])
                    fut_t = 0.0
                else:
                    ok, fut_t = evaluate_exactly(policy, tp, i + 1, b @ tp.transition[a])
                acc += w * s * ok
                tok += w * s * (t_here + fut_t)
    return acc, tok


# ---------------------------------------------------------------------------- queries + I/O
def test_native_policy_value_matches_bounds_and_exact_evaluation():
    tp = make_model(1)
    pol = solve_trim(tp, FiniteHorizonSolver(mode="exact"))
    acc, tok = evaluate_exactly(pol, tp)
    assert acc - tp.params.lam * tok == pytest.approx(pol.info.lower_bound, abs=1e-9)
    assert pol.info.gap == pytest.approx(0.0, abs=1e-9)
    b = np.array([0.6, 0.1, 0.3])
    q = pol.action_values(2, 1, False, b)
    assert q.shape == (2,) and pol.action(2, 1, False, b) == int(np.argmax(q))
    lo, hi = pol.value_bounds(2, 1, False, b)
    assert lo == pytest.approx(hi, abs=1e-9)
    B = np.random.default_rng(0).dirichlet(np.ones(3), size=30)
    acts = pol.action_batch(2, 1, False, B)
    assert acts.tolist() == [pol.action(2, 1, False, x) for x in B]
    t = np.array([1, 2, 3] * 10)
    acts = pol.action_batch(t, 0, True, B)
    assert acts.tolist() == [pol.action(int(tt), 0, True, x) for tt, x in zip(t, B, strict=False)]
    with pytest.raises(InvalidParameterError):
        pol.action(4, 0, False, b)
    with pytest.raises(InvalidParameterError):
        pol.action(1, 2, False, b)
    with pytest.raises(InvalidParameterError):
        pol.action(1, 0, False, [0.5, 0.5])


def test_save_load_round_trip_without_pickle(tmp_path):
    tp = make_model(2, H=4)
    pol = solve_trim(tp, FiniteHorizonSolver(precision=1e-6))
    npz, card = pol.save(tmp_path / "p")
    meta = json.loads(card.read_text())
    for key in ("lambda", "lower_bound", "upper_bound", "solve_seconds", "solver", "params", "versions"):
        assert key in meta
    assert meta["lambda"] == tp.params.lam and meta["upper_bound"] >= meta["lower_bound"]
    with np.load(npz, allow_pickle=False) as data:
        assert str(data["format"]) == "trim-pomdp/trim-policy/1"
    back = TrimPolicy.load(tmp_path / "p")
    assert back.kind == "native" and back.lam == pol.lam
    B = np.random.default_rng(1).dirichlet(np.ones(3), size=25)
    for t in (1, 2, 4):
        for final in (False, True):
            np.testing.assert_array_equal(
                back.action_values(t, 1, final, B), pol.action_values(t, 1, final, B)
            )
    rebuilt = back.trim_pomdp()
    np.testing.assert_array_equal(rebuilt.observation_probs(2), tp.observation_probs(2))
    assert TrimPolicy.load(tmp_path / "p" / "policy.json").info.lower_bound == pol.info.lower_bound
    (tmp_path / "bad").mkdir()
    np.savez(tmp_path / "bad" / "policy.npz", alphas=np.zeros((1, 3)))
    with pytest.raises(DataFormatError, match="not a TRIM policy"):
        TrimPolicy.load(tmp_path / "bad")
    with pytest.raises(DataFormatError, match="does not exist"):
        TrimPolicy.load(tmp_path / "nothing")


def test_scalar_action_values_match_action_values_on_random_beliefs():
    tp = make_model(12, H=6, K=3, n=4)
    rng = np.random.default_rng(12)
    small = make_model(13, H=3)
    for pol in (solve_trim(tp), solve_trim(small, FiniteHorizonSolver(mode="exact"))):
        for _ in range(300):
            t, bucket = int(rng.integers(1, pol.horizon + 1)), int(rng.integers(0, pol.n_buckets))
            final = bool(rng.random() < 0.3)
            b = rng.dirichlet(np.ones(3) * 0.6)
            got = pol.action_values_floats(t, 2 * bucket + int(final), (b[0], b[1], b[2]))
            np.testing.assert_allclose(got, pol.action_values(t, bucket, final, b), rtol=1e-12, atol=1e-14)
        assert pol._scalar  # the scalar evaluator, not the numpy fallback


def test_policies_of_earlier_versions_load_and_edited_cards_are_refused(tmp_path):
    tp = make_model(2, H=4)
    pol = solve_trim(tp, FiniteHorizonSolver(precision=1e-6))
    npz, card = pol.save(tmp_path / "lambda_0.002")  # a dot in the directory name
    assert npz == tmp_path / "lambda_0.002" / "policy.npz"
    meta = json.loads(card.read_text())
    assert (
        meta["solver"] == "finite-horizon" and meta["sha256"] and set(meta["signed"]) == {"params", "lambda"}
    )
    # written the way earlier versions did: plain np.savez_compressed, no digest, solver "native", report "info"
    old = tmp_path / "old"
    old.mkdir()
    with np.load(npz, allow_pickle=False) as data:
        np.savez_compressed(old / "policy.npz", **{k: data[k] for k in data.files})
    for key in ("sha256", "signed"):
        meta.pop(key)
    meta["solver"] = "native"
    meta["info"] = meta.pop("solve_info")
    (old / "policy.json").write_text(json.dumps(meta))
    back = TrimPolicy.load(old)
    assert back.card["solver"] == "finite-horizon" and back.info.lower_bound == pol.info.lower_bound
    b = np.array([0.5, 0.2, 0.3])
    np.testing.assert_array_equal(back.action_values(2, 1, False, b), pol.action_values(2, 1, False, b))
    # an edited λ (or parameter) in a signed card is refused
    meta = json.loads(card.read_text())
    meta["lambda"] = 1.0
    card.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match="sha256"):
        TrimPolicy.load(tmp_path / "lambda_0.002")


def test_from_alpha_policy_restricts_flattened_alpha_vectors():
    tp = make_model(3)
    native = solve_trim(tp, FiniteHorizonSolver(mode="exact"))
    S = tp.n_flat_states
    rows, acts = [], []
    for t in range(1, tp.horizon + 1):
        for ctx in range(tp.n_contexts):
            al, ac = native.alphas_at(t, ctx // 2, ctx % 2)
            full = np.full((len(al), S), -50.0)  # very low elsewhere: never chosen in other contexts
            full[:, tp.state_index(np.arange(3), t, ctx // 2, ctx % 2)] = al
            rows.append(full)
            acts.append(ac)
    alpha = AlphaVectorPolicy(np.concatenate(rows), np.concatenate(acts), card={"solver": "hand"})
    pol = TrimPolicy.from_alpha_policy(alpha, tp)
    assert pol.kind == "alpha" and pol.card["solver"] == "hand"
    B = np.random.default_rng(2).dirichlet(np.ones(3), size=40)
    for t in range(1, tp.horizon + 1):
        for bucket in range(2):
            for final in (False, True):
                np.testing.assert_allclose(
                    pol.action_values(t, bucket, final, B),
                    native.action_values(t, bucket, final, B),
                    atol=1e-12,
                )
                np.testing.assert_array_equal(
                    pol.action_batch(t, bucket, final, B), native.action_batch(t, bucket, final, B)
                )
    with pytest.raises(InvalidParameterError, match="states"):
        TrimPolicy.from_alpha_policy(AlphaVectorPolicy(np.zeros((1, 5)), [0]), tp)


def test_pointbased_solver_on_flattened_model_agrees_with_native():
    pb = pytest.importorskip("trim_pomdp.solvers.pointbased.solver")
    tp = make_model(4, H=3)
    gamma = tp.params.discount
    native = FiniteHorizonSolver(mode="exact")
    native_policy = native.solve(tp.structured(discount=gamma))
    solver = pb.PointBasedSolver(precision=1e-6, time_limit=30)
    pol = solve_trim(tp, solver)
    assert pol.kind == "alpha"
    v_flat = gamma * native_policy.info.lower_bound
    assert pol.info.lower_bound <= v_flat + 1e-6
    assert pol.info.upper_bound >= v_flat - 1e-6


# ---------------------------------------------------------------------------- Monte Carlo (rollout)
def test_monte_carlo_agrees_with_the_value_within_three_standard_errors():
    tp = make_model(5, H=8, K=3, n=4, lam=1e-3)
    pol = solve_trim(tp, FiniteHorizonSolver(precision=1e-5))
    mc = rollout(pol, ModelProcess(tp), n=30_000, seed=3)
    assert abs(mc.ret - pol.info.lower_bound) <= 3 * mc.ret_se + pol.info.gap
    assert mc.ret == pytest.approx(mc.accuracy - tp.params.lam * mc.strong_tokens)
    acc, _ = evaluate_exactly(pol, tp) if tp.horizon <= 3 else (None, None)
    assert acc is None or abs(mc.accuracy - acc) <= 4 * mc.accuracy_se


# ---------------------------------------------------------------------------- behaviour in λ
def test_strong_tokens_never_increase_with_lambda():
    tp = make_model(6, H=3)
    lams = np.concatenate([[0.0], np.geomspace(1e-5, 5e-2, 12)])
    toks, accs = [], []
    for lam in lams:
        tpl = tp.with_params(lam=float(lam))
        pol = solve_trim(tpl, FiniteHorizonSolver(mode="exact"))
        acc, tok = evaluate_exactly(pol, tpl)
        toks.append(tok)
        accs.append(acc)
    assert np.all(np.diff(toks) <= 1e-9), toks
    assert np.all(np.diff(accs) <= 1e-9), accs
    assert toks[0] > toks[-1]


def test_strong_tokens_never_increase_with_lambda_monte_carlo_default_size():
    tp = make_model(7, H=30, K=5, n=10)
    res = []
    for lam in (0.0, 2e-4, 1e-3, 5e-3):
        tpl = tp.with_params(lam=lam)
        mc = rollout(solve_trim(tpl), ModelProcess(tpl), n=20_000, seed=11)
        res.append(mc)
    for a, b in itertools.pairwise(res):
        assert b.strong_tokens <= a.strong_tokens + 3 * np.hypot(a.strong_tokens_se, b.strong_tokens_se)


def test_lambda_zero_regenerates_whenever_it_raises_expected_success():
    tp = make_model(8, H=3, lam=0.0)
    pol = solve_trim(tp, FiniteHorizonSolver(mode="exact"))
    p_s = tp.params.p_s
    B = simplex_grid(3, 12)

    def success(i, beta):  # optimal success probability from predicted belief beta at epoch index i
        return evaluate_value(tp, i, beta)

    for t in (1, 2, 3):
        for bucket in (0, 1):
            for final in (False, True):
                acts = pol.action_batch(t, bucket, final, B)
                for b, a in zip(B, acts, strict=False):
                    if final or t == tp.horizon:
                        s_cont, s_regen = b[0], p_s * (b[0] + b[2])
                    else:
                        s_cont = success(t, b @ tp.transition[0])
                        s_regen = success(t, b @ tp.transition[1])
                    if s_regen > s_cont + 1e-9:
                        assert a == 1, (t, bucket, final, b)
                    elif s_regen < s_cont - 1e-9:
                        assert a == 0, (t, bucket, final, b)
    # on the S0–S2 edge at a final step: regenerate exactly when b(S2) > 1 − p_s
    r = regenerate_region(pol, 1, 0, True, resolution=10)
    assert r["s2_threshold"] == pytest.approx(1 - p_s, abs=1.5e-3)


def evaluate_value(tp: TrimPOMDP, i: int, beta) -> float:
    """Optimal value (λ from the model) from predicted belief ``beta`` before epoch index ``i``'s observation."""
    p = tp.params
    if i == p.horizon:
        return 0.0
    O = tp.observation_probs(i + 1)
    q = 1.0 if i == p.horizon - 1 else p.hazard[i]
    total = 0.0
    for c in range(p.n_buckets):
        cost = p.lam * tp.expected_strong_tokens(c)
        for final, pf in ((True, q), (False, 1 - q)):
            w = p.bucket_probs[i, c] * pf
            for o in range(O.shape[1]):
                u = beta * O[:, o]
                s = u.sum()
                if s == 0 or w == 0:
                    continue
                b = u / s
                if final:
                    v = max(b[0], p.p_s * (b[0] + b[2]) - cost)
                else:
                    v = max(
                        evaluate_value(tp, i + 1, b @ tp.transition[0]),
                        evaluate_value(tp, i + 1, b @ tp.transition[1]) - cost,
                    )
                total += w * s * v
    return total


def test_huge_lambda_never_regenerates():
    tp = make_model(9, H=6, K=2, n=3, lam=10.0)
    pol = solve_trim(tp)
    B = simplex_grid(3, 20)
    for t in range(1, 7):
        for bucket in (0, 1):
            for final in (False, True):
                assert not pol.action_batch(t, bucket, final, B).any()
    mc = rollout(pol, ModelProcess(tp), n=2_000, seed=0)
    assert mc.strong_tokens == 0.0
    rows = regenerate_region_table(pol, resolution=10)
    assert len(rows) == 6 * 2 and all(r["s2_threshold"] is None and r["area"] == 0 for r in rows)
    assert "never" in format_region_table(rows)


def test_region_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from trim_pomdp.pomdp import plot_regenerate_regions

    pol = solve_trim(make_model(10, H=3))
    fig = plot_regenerate_regions(pol, bucket=1, resolution=15, path=tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000 and len(fig.axes) == 3


def test_bounds_stay_tight_at_the_beliefs_the_policy_visits():
    tp = make_model(11, H=12, K=3, n=6, lam=1e-3)
    prec = 1e-4
    pol = solve_trim(tp, FiniteHorizonSolver(precision=prec))
    assert pol.info.gap <= prec
    proc = ModelProcess(tp)
    router = BeliefRouter(pol, tp, gate=False)
    obs = proc.reset(300, seed=5)
    router.reset_batch(300)
    gaps = []
    while obs.active.any():
        a = router.decide_batch(obs)
        for i in np.flatnonzero(obs.active):
            lo, hi = pol.value_bounds(
                int(obs.t[i]), int(obs.bucket[i]), bool(obs.final[i]), router.beliefs[i]
            )
            assert hi >= lo
            gaps.append(hi - lo)
        obs = proc.step(a)
    gaps = np.asarray(gaps)
    assert gaps.mean() <= prec and gaps.max() <= 10 * prec


def test_alpha_restriction_pruning_keeps_the_maximum_everywhere():
    from trim_pomdp.pomdp.policy import _prune

    rng = np.random.default_rng(13)
    for n in (5, 80, 3000):
        al = rng.normal(size=(n, 3))
        acts = rng.integers(0, 2, size=n)
        kept, kacts = _prune(al, acts)
        assert len(kept) <= n
        B = np.vstack([simplex_grid(3, 40), rng.dirichlet(np.ones(3) * 0.3, size=2000)])
        full = B @ al.T
        np.testing.assert_allclose((B @ kept.T).max(axis=1), full.max(axis=1), atol=1e-12)
        if n == 3000:
            assert len(kept) < 100  # random vectors: few are maximal anywhere on the simplex
        # every kept vector carries the action it had before pruning
        for row, a in zip(kept, kacts, strict=True):
            assert a in acts[np.all(np.isclose(al, row), axis=1)]
