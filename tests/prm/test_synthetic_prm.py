"""The calibrated synthetic PRM: stepwise API, score_items, calibration and reproduction of published numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests._support.data import require_shared_data
from trim_pomdp.datasets.processbench import SPLITS, ProcessBenchItem, load_processbench
from trim_pomdp.datasets.scored import load_scored_items, processbench_metrics, save_scored_items, step_table
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.prm.synthetic import (
    CALIBRATED_MU_S0,
    CALIBRATED_MU_S2,
    QWEN25_MATH_PRM_7B_PROCESSBENCH,
    SyntheticPRM,
    calibrate_synthetic_prm,
    protocol_accuracy,
)


def _items(n=300, split="math", seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(2, 12))
        label = -1 if rng.random() < 0.4 else int(rng.integers(0, k))
        out.append(
            ProcessBenchItem(f"{split}-{i}", "g", "p", [f"s{j}" for j in range(k)], label == -1, label, split)
        )
    return out


def test_defaults_cover_all_splits():
    assert (
        set(CALIBRATED_MU_S0) == set(CALIBRATED_MU_S2) == set(SPLITS) == set(QWEN25_MATH_PRM_7B_PROCESSBENCH)
    )


def test_stepwise_shapes_state_and_active():
    prm = SyntheticPRM()
    rng = np.random.default_rng(1)
    state = prm.new_episodes(5, rng)
    assert state.n == 5 and (state.t == 0).all()
    active = np.array([True, True, False, True, False])
    r = prm.score_step(state, np.array([0, 1, 2, 2, 0]), rng, active=active)
    assert r.shape == (5,)
    assert np.all((r[active] >= 0) & (r[active] <= 1))
    assert np.isnan(r[~active]).all()
    assert state.t.tolist() == [1, 1, 0, 1, 0]
    with pytest.raises(InvalidParameterError, match="shape"):
        prm.score_step(state, np.zeros(3, dtype=int), rng)
    with pytest.raises(InvalidParameterError, match="classes"):
        prm.score_step(state, np.full(5, 3), rng)


def test_offset_shifts_scores():
    prm = SyntheticPRM()
    classes = np.zeros(4000, dtype=int)
    lo = prm.score_step(prm.new_episodes(4000, 0, offset=-3.0), classes, np.random.default_rng(1))
    hi = prm.score_step(
        prm.new_episodes(4000, 0, offset=np.full(4000, 3.0)), classes, np.random.default_rng(1)
    )
    assert np.all(hi >= lo) and np.mean(hi - lo) > 0.01
    with pytest.raises(InvalidParameterError, match="finite"):
        prm.new_episodes(2, 0, offset=np.nan)


def test_row_draws_do_not_depend_on_other_rows_activity():
    prm = SyntheticPRM()
    classes = np.array([0, 2, 1, 0])
    outs = []
    for active in (None, np.array([True, False, True, False])):
        rng = np.random.default_rng(7)
        state = prm.new_episodes(4, rng)
        outs.append(prm.score_step(state, classes, rng, active=active))
    np.testing.assert_array_equal(outs[0][[0, 2]], outs[1][[0, 2]])


def test_score_items_matches_stepwise_api():
    """score_items is the stepwise API run over the items' classes: same seed, same numbers."""
    prm = SyntheticPRM()
    items = _items(20)
    scored = prm.score_items(items, seed=3)
    rng = np.random.default_rng(3)
    state = prm.new_episodes(len(items), rng, [it.split for it in items])
    horizon = max(it.n_steps for it in items)
    for t in range(horizon):
        active = np.array([t < it.n_steps for it in items])
        classes = np.array([it.classes[t] if t < it.n_steps else 0 for it in items])
        r = prm.score_step(state, classes, rng, active=active)
        for i in range(len(items)):
            if active[i]:
                assert scored[i].prm_scores[t] == r[i]


def test_score_items_is_reproducible_and_simulated(tmp_path):
    prm = SyntheticPRM()
    items = _items(50)
    a, b = prm.score_items(items, seed=11), prm.score_items(items, seed=11)
    assert [x.prm_scores for x in a] == [x.prm_scores for x in b]
    assert [x.prm_scores for x in a] != [x.prm_scores for x in prm.score_items(items, seed=12)]
    assert all(x.simulated and len(x.prm_scores) == x.item.n_steps for x in a)
    path = save_scored_items(tmp_path / "sim.jsonl", a)
    first = json.loads(path.read_text().splitlines()[0])
    assert first["simulated"] is True
    assert all(x.simulated for x in load_scored_items(path))
    card = prm.card
    assert card["simulated"] is True and "SIMULATED" in card["note"]
    json.dumps(card)  # JSON-ready


def test_score_structure():
    """Class means are ordered, per-item bias correlates an item's steps, and S1 steps often score high."""
    prm = SyntheticPRM()
    items = _items(2000, seed=5)
    table = step_table(prm.score_items(items, seed=0))
    logit = np.log(table.r / (1 - table.r))
    med = {z: np.median(table.r[table.z == z]) for z in (0, 1, 2)}
    assert med[0] > med[1] > med[2]
    assert med[0] > 0.9 and med[2] < 0.5
    s1_high = np.mean(table.r[table.z == 1] >= 0.5)
    assert 0.4 < s1_high < 0.9  # steps after an error often look fine (real trace: 0.9746, 0.9995)
    # correlation across steps of S0 logits within an item (bias + AR(1)), absent across items
    s0 = (table.z == 0) & (table.t >= 2)
    prev = np.flatnonzero(s0)
    prev = prev[table.z[prev - 1] == 0]
    c_within = np.corrcoef(logit[prev], logit[prev - 1])[0, 1]
    assert c_within > 0.3
    shuffled = np.random.default_rng(0).permutation(prev - 1)
    assert abs(np.corrcoef(logit[prev], logit[shuffled])[0, 1]) < 0.1


def test_scores_respond_to_parameters():
    items = [it for it in _items(400, seed=2) if it.label >= 0]
    easy = SyntheticPRM(mu_s2={s: -6.0 for s in SPLITS})
    hard = SyntheticPRM(mu_s2={s: 3.0 for s in SPLITS})
    e_easy = processbench_metrics(easy.score_items(items, seed=0))["math"]["error"]
    e_hard = processbench_metrics(hard.score_items(items, seed=0))["math"]["error"]
    assert e_easy > e_hard + 30


def test_parameter_validation():
    with pytest.raises(InvalidParameterError, match="rho"):
        SyntheticPRM(rho=1.0)
    with pytest.raises(InvalidParameterError, match="s1_high"):
        SyntheticPRM(s1_high=1.5)
    with pytest.raises(InvalidParameterError, match="same splits"):
        SyntheticPRM(mu_s0={"a": 1.0})
    with pytest.raises(InvalidParameterError, match="default_split"):
        SyntheticPRM(default_split="nope")
    prm = SyntheticPRM()
    with pytest.raises(InvalidParameterError, match="no calibrated means for split"):
        prm.score_items([ProcessBenchItem("x", "g", "p", ["a"], True, -1, "custom")])
    with pytest.raises(InvalidParameterError, match="entries"):
        prm.new_episodes(3, 0, split=["math"])


def test_protocol_accuracy_matrix():
    scores = np.array([[0.9, 0.2, np.nan], [0.9, 0.9, 0.9], [0.1, 0.9, 0.9], [0.9, 0.9, np.nan]])
    labels = np.array([1, -1, 1, 0])
    assert protocol_accuracy(scores, labels) == (pytest.approx(100 / 3), 100.0)


def test_calibration_recovers_targets_on_fixture():
    """Calibrating on synthetic items hits the requested accuracies (with independent seeds)."""
    items = _items(600, split="math", seed=9)
    targets = {"math": (60.0, 85.0)}
    mu0, mu2 = calibrate_synthetic_prm(items, targets, repeats=10, seed=0)
    prm = SyntheticPRM(mu_s0=mu0, mu_s2=mu2, default_split="math")
    m = processbench_metrics(prm.score_items(items * 10, seed=123))["math"]
    assert m["error"] == pytest.approx(60.0, abs=2.5)
    assert m["correct"] == pytest.approx(85.0, abs=2.5)


def test_reproduces_published_qwen_prm_accuracies():
    """Under the ProcessBench protocol, the shipped defaults give Qwen2.5-Math-PRM-7B's numbers within ±3 points.

    Scores over 10 replicates of the real items (fixed seed, not the calibration seed), i.e. the model's expected
    accuracy; one replicate alone varies by about ±3 points on GSM8K's 207 erroneous samples.
    """
    items = load_processbench(data_dir=require_shared_data("processbench"))
    metrics = processbench_metrics(SyntheticPRM().score_items(items * 10, seed=2024))
    for split, (err, corr) in QWEN25_MATH_PRM_7B_PROCESSBENCH.items():
        assert metrics[split]["error"] == pytest.approx(err, abs=3.0), split
        assert metrics[split]["correct"] == pytest.approx(corr, abs=3.0), split


def test_float16_precision_rounds_like_a_real_prm():
    """precision='float16' gives float16-representable scores (atoms at 1.0, as Qwen2.5-Math-PRM-7B's); the
    default keeps full precision, so the same seed gives the unrounded scores of the same draws."""
    items = _items(300, seed=2)
    full = np.concatenate([x.prm_scores for x in SyntheticPRM().score_items(items, seed=3)])
    half = np.concatenate(
        [x.prm_scores for x in SyntheticPRM(precision="float16").score_items(items, seed=3)]
    )
    np.testing.assert_array_equal(half, full.astype(np.float16).astype(float))
    assert np.mean(full == 1.0) == 0.0 and np.mean(half == 1.0) > 0.05
    assert SyntheticPRM(precision="float16").card["params"]["precision"] == "float16"
    with pytest.raises(InvalidParameterError, match="precision"):
        SyntheticPRM(precision="bfloat16")


def test_s1_persist_keeps_the_look_of_steps_after_an_error():
    """s1_persist = 0 draws nothing extra (the scores of before); > 0 makes consecutive S1 looks agree more often,
    with the share of correct-looking S1 steps still s1_high."""
    n, H = 4000, 8
    classes = np.ones((n, H), dtype=int)
    classes[:, 0] = 2  # first error at step 1, S1 after
    lengths = np.full(n, H)
    base = SyntheticPRM(s1_high=0.5, s0_sd=0.3, s2_sd=0.3, item_sd=0.01)
    np.testing.assert_array_equal(
        base.score_matrix(classes, lengths, "math", 5),
        SyntheticPRM(s1_high=0.5, s0_sd=0.3, s2_sd=0.3, item_sd=0.01, s1_persist=0.0).score_matrix(
            classes, lengths, "math", 5
        ),
    )
    high = {}
    for persist in (0.0, 0.9):
        prm = SyntheticPRM(s1_high=0.5, s0_sd=0.3, s2_sd=0.3, item_sd=0.01, s1_persist=persist)
        looks_ok = prm.score_matrix(classes, lengths, "math", 6)[:, 1:] > 0.5
        high[persist] = (looks_ok.mean(), np.mean(looks_ok[:, 1:] == looks_ok[:, :-1]))
    assert abs(high[0.0][0] - 0.5) < 0.02 and abs(high[0.9][0] - 0.5) < 0.03
    assert abs(high[0.0][1] - 0.5) < 0.02 and high[0.9][1] > 0.9
    with pytest.raises(InvalidParameterError, match="s1_persist"):
        SyntheticPRM(s1_persist=1.0)
