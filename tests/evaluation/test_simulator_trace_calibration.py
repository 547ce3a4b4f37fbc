"""The simulator's PRM calibrated to real traces: statistics, distances, operating point, calibration, shipped file."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from tests._support.data import require_shared_data
from trim_pomdp.evaluation import trace_calibration as tc
from trim_pomdp.evaluation.simulator import SimulatorParams, load_default_simulator_params
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.prm.synthetic import SyntheticPRM

NAN = np.nan


def test_trace_statistics_known_answers():
    scores = np.array([[0.9, 0.8, 0.95], [0.9, 0.2, NAN], [0.7, NAN, NAN]])
    t = tc.trace_statistics(scores, [3, 2, 1], [True, False, True])
    np.testing.assert_allclose(t.min_right, [0.8, 0.7])
    np.testing.assert_allclose(t.min_wrong, [0.2])
    np.testing.assert_allclose(t.last_right, [0.95, 0.7])
    np.testing.assert_allclose(t.last_wrong, [0.2])
    np.testing.assert_allclose(np.sort(t.scores_right), [0.7, 0.8, 0.9, 0.95])
    assert t.accuracy == pytest.approx(2 / 3)
    np.testing.assert_array_equal(t.steps, [3, 2, 1])
    with pytest.raises(InvalidParameterError, match="right and wrong"):
        tc.trace_statistics(scores, [3, 2, 1], [True, True, True])
    with pytest.raises(InvalidParameterError, match="same solutions"):
        tc.trace_statistics(scores, [3, 2], [True, False])


def test_lag1_sees_persistent_scores():
    rng = np.random.default_rng(0)
    level = rng.uniform(size=(400, 1))
    persistent = np.clip(level + 0.05 * rng.normal(size=(400, 6)), 0, 1)
    y = rng.uniform(size=400) < 0.5
    t = tc.trace_statistics(persistent, np.full(400, 6), y)
    assert t.lag1_right > 0.9 and t.lag1_wrong > 0.9
    noise = tc.trace_statistics(rng.uniform(size=(400, 6)), np.full(400, 6), y)
    assert abs(noise.lag1_right) < 0.1


def test_distances_zero_on_itself_and_objective():
    p = load_default_simulator_params("math")
    s, lengths, y = tc.simulate_traces(p, None, 500, seed=1)
    t = tc.trace_statistics(s, lengths, y)
    d = tc.trace_distances(t, t)
    assert all(v == 0.0 for v in d.values()) and tc.objective(d) == 0.0
    s2, l2, y2 = tc.simulate_traces(p, SyntheticPRM(default_split="math", s1_high=0.05), 500, seed=1)
    d2 = tc.trace_distances(tc.trace_statistics(s2, l2, y2), t)
    assert d2["ks_min_wrong"] > 0.1 and d2["abs_accuracy"] == 0.0  # the PRM never changes the answers


def test_operating_point_matches_accuracy_and_step_counts():
    p = load_default_simulator_params("math")
    lengths = np.array([2, 3, 3, 4, 40])
    op = tc.operating_point(p, lengths, 0.7, n=3000, seed=0)
    assert op.step_count_probs[1] == pytest.approx(0.2) and op.step_count_probs[-1] == pytest.approx(0.2)
    acc = tc.simulate_traces(op, None, 3000, seed=0)[2].mean()
    assert abs(acc - 0.7) < 0.005
    with pytest.raises(InvalidParameterError, match="accuracy"):
        tc.operating_point(p, lengths, 1.0)


def test_calibration_moves_towards_known_truth():
    """Traces simulated with known PRM parameters: the fit starts elsewhere and gets closer (the objective falls)."""
    p = replace(load_default_simulator_params("math"), p_w_mean=0.9)
    truth = SyntheticPRM(default_split="math", s1_high=0.1, item_sd=0.5, precision="float16")
    s, lengths, y = tc.simulate_traces(p, truth, 1500, seed=7)
    real = tc.trace_statistics(s, lengths, y)
    fitted, rep = tc.calibrate_prm_to_traces(
        real, p, prm=SyntheticPRM(default_split="math", precision="float16"), n=400, max_evaluations=30
    )
    assert rep["objective_fitted"] < 0.97 * rep["objective_start"]  # 30 evaluations: a first clear gain
    assert rep["evaluations"] <= 31 and set(fitted) == set(tc.CALIBRATED_PARAMETERS)


def test_load_trace_statistics_refuses_placeholder_outcomes(tmp_path):
    rec = {
        "id": "a",
        "generator": "g",
        "problem": "p",
        "steps": ["s1", "s2"],
        "final_answer_correct": True,
        "label": -1,
        "split": "x",
        "prm_scores": [0.9, 0.8],
        "final_answer_correct_known": False,
    }
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec) + "\n" + json.dumps({**rec, "id": "b"}) + "\n")
    with pytest.raises(InvalidParameterError, match="no known final answer"):
        tc.load_trace_statistics(path)


def test_shipped_recalibrated_simulator_is_valid_and_rounds_to_float16():
    from trim_pomdp.evaluation.simulator import Simulator, default_simulator_file

    path = default_simulator_file().parent / tc.QWEN_TRACES_FILE
    params = SimulatorParams.from_json(path)
    sim = Simulator(params)
    assert sim.prm.precision == "float16" and params.split == "math"
    base = load_default_simulator_params("math")
    assert params.p_w_mean == base.p_w_mean and params.p_s_mean == base.p_s_mean  # generators unchanged
    cal = params.card["prm_calibration"]
    assert cal["objective_fitted"] < cal["objective_start"]
    assert {k: params.prm[k] for k in tc.CALIBRATED_PARAMETERS[2:]} == {
        k: cal["fitted"][k] for k in tc.CALIBRATED_PARAMETERS[2:]
    }


def test_shipped_recalibration_reproduces_its_recorded_distances():
    """With the real traces: the card's fitted distances are what its parameters give (the file is not stale)."""
    scores = require_shared_data("prm-real/qwen-prm7b_math500-qwen1.5b_dev.jsonl")
    from trim_pomdp.evaluation.simulator import default_simulator_file

    params = SimulatorParams.from_json(default_simulator_file().parent / tc.QWEN_TRACES_FILE)
    cal = params.card["prm_calibration"]
    real, lengths = tc.load_trace_statistics(scores)
    op = replace(
        params,
        step_count_probs=tc.step_count_probs(lengths, params.horizon),
        p_w_mean=cal["operating_point"]["p_w_mean"],
    )
    s, l_, y = tc.simulate_traces(
        op, SyntheticPRM(**params.prm, default_split="math"), cal["n_simulated"], cal["seed"]
    )
    d = tc.trace_distances(tc.trace_statistics(s, l_, y), real)
    for k, v in cal["distances_fitted"].items():
        assert d[k] == pytest.approx(v, abs=1e-12), k


def test_recalibrated_simulator_params_from_a_file(tmp_path):
    """End to end on a small simulated scored file: default generators kept, float16 PRM, card filled in."""
    from trim_pomdp.datasets.processbench import ProcessBenchItem
    from trim_pomdp.datasets.scored import ScoredItem, save_scored_items

    p = replace(load_default_simulator_params("math"), p_w_mean=0.9)
    s, lengths, y = tc.simulate_traces(
        p, SyntheticPRM(default_split="math", precision="float16"), 300, seed=3
    )
    items = [
        ScoredItem(
            ProcessBenchItem(
                id=f"q{i}",
                generator="sim",
                problem="p",
                steps=[f"s{k}" for k in range(lengths[i])],
                final_answer_correct=bool(y[i]),
                label=-1,
                split="sim",
            ),
            s[i, : lengths[i]].tolist(),
            simulated=True,
            extra={"step_labels_known": False},
        )
        for i in range(300)
    ]
    path = save_scored_items(tmp_path / "traces.jsonl", items)
    params = tc.recalibrated_simulator_params(path, n=300, max_evaluations=8, operating_point_n=1000)
    base = load_default_simulator_params("math")
    assert params.p_w_mean == base.p_w_mean and params.step_count_probs == base.step_count_probs
    assert params.prm["precision"] == "float16" and "default_split" not in params.prm
    cal = params.card["prm_calibration"]
    assert cal["traces"] == "traces.jsonl" and cal["objective_fitted"] <= cal["objective_start"] + 1e-12
    assert abs(cal["operating_point"]["p_w_mean"] - 0.9) < 0.05
    SimulatorParams.from_dict(json.loads(params.to_json()))  # round-trips as a simulator file
