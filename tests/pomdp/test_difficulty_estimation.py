"""Estimation of difficulty classes (π, p_w(d), p_s(d)) from per-problem data, D by held-out likelihood."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from trim_pomdp.datasets.processbench import ProcessBenchItem
from trim_pomdp.datasets.scored import ScoredItem
from trim_pomdp.evaluation.records import Records
from trim_pomdp.evaluation.simulator import Simulator
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.pomdp import TrimParams
from trim_pomdp.pomdp.difficulty import (
    DifficultyWarning,
    ProblemEvidence,
    _compress,
    _loglik,
    _objective,
    estimate_difficulty,
    evidence_from_items,
    evidence_from_records,
    evidence_from_simulator,
    fit_classes,
    pooled_accuracies,
    select_classes,
)


def mixture_steps(rng, n, prior, pw, ps, solutions=3, length=8) -> tuple[np.ndarray, np.ndarray]:
    """Step counts of ``solutions`` solutions per model and problem, each of ``length`` steps that stop at the
    first error: exactly the estimator's model."""
    d = rng.choice(len(prior), size=n, p=prior)
    steps = np.zeros((n, 4), dtype=np.int64)
    for col, p in ((0, pw), (2, ps)):
        for _ in range(solutions):
            ok = rng.random((n, length)) < np.asarray(p)[d][:, None]
            first_bad = np.where((~ok).any(axis=1), np.argmax(~ok, axis=1), length)
            steps[:, col] += first_bad
            steps[:, col + 1] += first_bad < length
    return steps, d


def test_two_classes_are_recovered_and_chosen_over_one_and_three():
    rng = np.random.default_rng(0)
    steps, _ = mixture_steps(rng, 800, [0.6, 0.4], [0.97, 0.6], [0.99, 0.8])
    ev = ProblemEvidence(steps)
    fit = fit_classes(ev, 2)
    assert np.allclose(fit.prior, [0.6, 0.4], atol=0.05)
    assert np.allclose(fit.p_w, [0.97, 0.6], atol=0.04)
    assert np.allclose(fit.p_s, [0.99, 0.8], atol=0.03)
    sel = select_classes(ev, 3)
    assert sel["per_problem"][2] > sel["per_problem"][1] + 0.1  # clearly better than one class
    assert sel["best"] == 2


def test_homogeneous_data_keeps_one_class():
    rng = np.random.default_rng(1)
    steps, _ = mixture_steps(rng, 300, [1.0], [0.85], [0.93])
    ev = ProblemEvidence(steps)
    sel = select_classes(ev, 2)
    assert sel["best"] == 1
    dc = estimate_difficulty(ev, max_classes=2)
    assert dc.n_classes == 1 and abs(dc.p_w[0] - pooled_accuracies(ev)[0]) < 1e-4  # D = 1: the pooled MLE
    assert dc.card["n_classes"] == 1 and set(dc.card["heldout_loglik_per_problem"]) >= {"1", "2"}


def test_gradient_and_compression_are_exact():
    rng = np.random.default_rng(2)
    steps, _ = mixture_steps(rng, 40, [0.5, 0.5], [0.9, 0.5], [0.95, 0.7], solutions=1, length=4)
    ev = ProblemEvidence(
        steps,
        outcome_problem=rng.integers(0, 40, 30),
        outcome_role=rng.integers(0, 2, 30),
        outcome_correct=rng.random(30) < 0.6,
        outcome_steps=rng.integers(1, 6, 30),
    )
    theta = rng.normal(0, 1, 3 * 2 - 1)
    w = np.ones(ev.n)
    _, g = _objective(theta, ev, w, 2, None)
    num = approx_fprime(theta, lambda t: _objective(t, ev, w, 2, None)[0], 1e-6)
    assert np.allclose(g, num, rtol=1e-4, atol=1e-4)
    plain = ProblemEvidence(steps)
    packed, weight = _compress(plain)
    assert packed.n < plain.n and weight.sum() == plain.n
    prior, pw, ps = np.array([0.3, 0.7]), np.array([0.9, 0.6]), np.array([0.95, 0.7])
    assert np.isclose(weight @ _loglik(packed, prior, pw, ps), _loglik(plain, prior, pw, ps).sum())


def test_outcomes_follow_p_to_the_L():
    # one class, M_w only: a graded solution of L steps is right w.p. p^L, so the MLE solves mean(right) = p^L
    rng = np.random.default_rng(3)
    n, L, p = 400, 5, 0.9
    right = rng.random(n) < p**L
    ev = ProblemEvidence(np.zeros((n, 4)), np.arange(n), np.zeros(n), right, np.full(n, L))
    fit = fit_classes(ev, 1, pooled_p_s=0.95)
    assert np.isclose(fit.p_w[0], right.mean() ** (1 / L), atol=1e-4)
    assert fit.p_s[0] == 0.95  # not identified: the pooled value
    with pytest.raises(InvalidParameterError, match="pooled_p_s"):
        fit_classes(ev, 1)


def test_evidence_from_items_steps_and_outcomes():
    def item(i, gen, problem, label, n=4, right=True):
        return ProcessBenchItem(f"x{i}", gen, problem, [f"s{k}" for k in range(n)], right, label, "dev")

    items = [
        item(0, "w", "p1", -1),  # 4 right steps
        item(1, "w", "p1", 2),  # 2 right, 1 wrong
        item(2, "s", "p1", -1, n=3),
        item(3, "w", "p2", 0),
        item(4, "other", "p3", -1),
    ]
    ev = evidence_from_items(items, "w", "s")
    assert ev.n == 2 and ev.steps.tolist() == [[6, 1, 3, 0], [0, 1, 0, 0]]
    assert ev.card["weak_generator"] == "w" and ev.card["strong_generator"] == "s"
    scored = [
        ScoredItem(item(5, "w", "q", -1, right=False), [0.5] * 4, extra={"step_labels_known": False}),
        ScoredItem(item(6, "w", "q", -1, n=2), [0.5] * 2, extra={"step_labels_known": False}),
    ]
    ev = evidence_from_items(scored)
    assert ev.steps.sum() == 0 and ev.outcome_correct.tolist() == [False, True]
    assert ev.outcome_steps.tolist() == [4, 2] and ev.outcome_problem.tolist() == [0, 0]
    with pytest.raises(InvalidParameterError, match="several generators"):
        evidence_from_items(items)
    with pytest.raises(InvalidParameterError, match="no items from generator 'nope'"):
        evidence_from_items(items, "nope")


def test_evidence_from_records():
    rec = Records.concat(
        [
            Records.from_arrays("weak", None, ["a", "b", "c"], [1, 0, 1], [0, 0, 0]),
            Records.from_arrays("strong", None, ["a", "b", "c"], [1, 1, 0], [10, 20, 30]),
            Records.from_arrays("thr", 0.5, ["a", "b", "c"], [1, 1, 1], [5, 5, 5]),
        ]
    )
    ev = evidence_from_records(rec, {"a": 3, "b": 5, "c": 2})
    assert ev.n == 3 and ev.problem_ids == ["a", "b", "c"]
    assert ev.outcome_role.tolist() == [0, 0, 0, 1, 1, 1]
    assert ev.outcome_correct.tolist() == [True, False, True, True, True, False]
    assert ev.outcome_steps.tolist() == [3, 5, 2, 3, 5, 2] and ev.has_strong
    assert evidence_from_records(rec, 4).outcome_steps.tolist() == [4] * 6
    with pytest.raises(InvalidParameterError, match="no step count for 1 queries"):
        evidence_from_records(rec, {"a": 3, "b": 5})
    with pytest.raises(InvalidParameterError, match="reserved policies"):
        evidence_from_records(rec.select(rec.policy == "thr"), 3)


def test_evidence_from_the_simulator_matches_its_pooled_statistics():
    sim = Simulator()
    ev = evidence_from_simulator(sim, 300, seed=4)
    st = Simulator().labelled_statistics(300, 4)
    assert ev.n == 300 and ev.card["source"].endswith("(SIMULATED)")
    assert ev.steps.sum(axis=0).tolist() == [st["weak_s0"], st["weak_s2"], st["strong_s0"], st["strong_s2"]]
    assert ev.problem_ids == sim.query_ids(300, 4)


def test_bad_class_counts():
    rng = np.random.default_rng(5)
    steps, _ = mixture_steps(rng, 120, [1.0], [0.85], [0.93])
    ev = ProblemEvidence(steps)
    for bad in (0, -1):
        with pytest.raises(InvalidParameterError, match=">= 1"):
            estimate_difficulty(ev, bad)
    with pytest.raises(InvalidParameterError, match="integer >= 1 or 'auto'"):
        estimate_difficulty(ev, "two")
    with pytest.raises(InvalidParameterError, match="need at least 200 problems"):
        estimate_difficulty(ev, 40)
    with pytest.warns(
        DifficultyWarning, match=r"held-out log-likelihood per problem -\d+\.\d+ at D = 3 against"
    ):
        dc = estimate_difficulty(ev, 3, max_classes=1)
    assert dc.n_classes == 3 and dc.card["selection"] == "asked for"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate_difficulty(ev, 1, max_classes=2)  # the supported count does not warn


def test_estimated_classes_round_trip_through_a_params_file(tmp_path):
    rng = np.random.default_rng(6)
    steps, _ = mixture_steps(rng, 200, [0.6, 0.4], [0.97, 0.6], [0.99, 0.8])
    dc = estimate_difficulty(ProblemEvidence(steps, card={"source": "test"}), 2, max_classes=2)
    params = TrimParams(0.8, 0.9, difficulty=dc)
    back = TrimParams.from_json(params.to_json(tmp_path / "params.json"))
    assert np.allclose(back.difficulty.p_w, dc.p_w) and back.difficulty.card["estimated_from"] == {
        "source": "test"
    }
    raw = json.loads((tmp_path / "params.json").read_text())
    raw["difficulty"]["prior"] = [0.5, 0.6]
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(InvalidParameterError, match=r"sum to 1.*difficulty\.prior"):
        TrimParams.from_json(tmp_path / "bad.json")


def test_load_evidence_from_a_scored_items_file_and_with_difficulty_warnings(tmp_path):
    from trim_pomdp.datasets.scored import save_scored_items
    from trim_pomdp.exceptions import DataFormatError
    from trim_pomdp.pomdp.difficulty import load_evidence, with_difficulty

    rng = np.random.default_rng(7)
    items = []
    for q in range(60):
        p = 0.95 if q % 2 else 0.5  # two kinds of problems, 4 graded samples each (M_w only)
        for k in range(4):
            n = 4
            right = bool(rng.random() < p**n)
            it = ProcessBenchItem(f"q{q}-{k}", "w", f"problem {q}", ["s"] * n, right, -1, "dev")
            items.append(ScoredItem(it, [0.5] * n, extra={"step_labels_known": False}))
    save_scored_items(tmp_path / "items.jsonl", items)
    ev = load_evidence(tmp_path / "items.jsonl")
    assert ev.n == 60 and ev.outcome_problem.size == 240 and not ev.has_strong
    params, warned = with_difficulty(TrimParams(0.8, 0.9), ev, 2, max_classes=2)
    assert params.difficulty.n_classes == 2 and np.allclose(params.difficulty.p_s, 0.9)  # pooled p_s
    assert params.difficulty.card["p_s"].startswith("not identified")
    assert warned == []  # two clearly different kinds of problems: D = 2 is supported
    assert params.difficulty.p_w[0] > 0.85 and params.difficulty.p_w[1] < 0.7
    with pytest.raises(DataFormatError, match="neither 'simulator', 'processbench' nor a scored-items file"):
        load_evidence(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidParameterError, match="needs --weak-generator and --strong-generator"):
        load_evidence("processbench")
