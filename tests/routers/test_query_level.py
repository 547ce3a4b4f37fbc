"""Query-level baselines: AutoMix-PRM, the oracle and the random query router."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from trim_pomdp.exceptions import DataFormatError, InvalidParameterError, NotFittedError
from trim_pomdp.routers.query_level import (
    AutoMixRouter,
    OracleQueryRouter,
    QueryOutcome,
    RandomQueryRouter,
    cumulative_score,
    outcome_class,
    query_level_result,
)


def synthetic_records(n=3000, seed=0):
    """M_w is right more often when its solution score is high; M_s is right 90% of the time."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        q = rng.random()  # latent easiness
        steps = rng.integers(2, 8)
        weak = rng.random() < q
        scores = np.clip(rng.beta(8, 2, steps) if weak else rng.beta(2, 3, steps), 0, 1)
        out.append(
            QueryOutcome(
                f"q{i}", bool(weak), bool(rng.random() < 0.9), float(rng.integers(200, 1200)), tuple(scores)
            )
        )
    return out


def test_outcome_record_roundtrip_and_classes():
    r = QueryOutcome("a", False, True, 321.0, (0.5, 0.25))
    assert QueryOutcome.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert outcome_class(r) == 1
    assert outcome_class(QueryOutcome("b", True, False, 1, ())) == 0
    assert outcome_class(QueryOutcome("c", False, False, 1, ())) == 2
    with pytest.raises(DataFormatError, match="strong_tokens"):
        QueryOutcome.from_dict({"query_id": "x", "weak_correct": 1, "strong_correct": 0})
    with pytest.raises(InvalidParameterError):
        QueryOutcome("x", True, True, -5.0)


def test_cumulative_score_aggregates():
    s = (0.5, 0.8, 1.0)
    assert cumulative_score(s) == pytest.approx(0.4)
    assert cumulative_score(s, "mean") == pytest.approx(2.3 / 3)
    assert cumulative_score(s, "min") == 0.5 and cumulative_score(s, "last") == 1.0
    assert cumulative_score(()) == 0.0
    with pytest.raises(InvalidParameterError):
        cumulative_score(s, "median")


def test_automix_bins_probabilities_and_decision_rule():
    recs = synthetic_records()
    router = AutoMixRouter(5e-4, n_bins=8, prior=0.0).fit(recs)
    # hand count of bin classes
    b = router.bin_of(np.array([cumulative_score(r.weak_scores) for r in recs]))
    cls = np.array([outcome_class(r) for r in recs])
    for k in range(8):
        if (b == k).sum():
            np.testing.assert_allclose(
                router.class_probs_[k], np.bincount(cls[b == k], minlength=3) / (b == k).sum()
            )
    # decision = argmax of expected returns, and equals the closed-form rule
    for r in recs[:200]:
        keep, route = router.expected_returns(r.weak_scores)
        assert router.decide(r.weak_scores) == (route > keep)
    mask = router.route_batch(recs)
    assert mask.tolist() == [router.decide(r.weak_scores) for r in recs]
    # low-score solutions are routed, high-score kept
    assert router.decide((0.05, 0.1)) and not router.decide((0.99, 0.99))


def test_automix_knob_sweep_is_monotone_and_better_than_random():
    recs = synthetic_records()
    train, test = recs[:2000], recs[2000:]
    router = AutoMixRouter(n_bins=8).fit(train)
    lams = router.knob_values()
    assert np.all(np.diff(lams) > 0)
    costs = [query_level_result(test, router.with_knob(x).route_batch(test))["normalized_cost"] for x in lams]
    assert costs[0] > 0 and costs[-1] == 0
    assert all(a >= b for a, b in itertools.pairwise(costs))  # more expensive tokens -> fewer routed queries
    # at matched route rate, AutoMix beats random routing
    mid = router.with_knob(lams[len(lams) // 2]).route_batch(test)
    rnd = RandomQueryRouter(mid.mean(), seed=1).route_batch(test)
    assert query_level_result(test, mid)["accuracy"] > query_level_result(test, rnd)["accuracy"]


def test_automix_errors_and_serialisation():
    with pytest.raises(NotFittedError):
        AutoMixRouter().decide((0.5,))
    with pytest.raises(InvalidParameterError, match="n_bins"):
        AutoMixRouter(n_bins=0).fit(synthetic_records(10))
    with pytest.raises(InvalidParameterError, match="at least one"):
        AutoMixRouter().fit([])
    r = AutoMixRouter(1e-4).fit(synthetic_records(300))
    r2 = AutoMixRouter.from_dict(json.loads(json.dumps(r.to_dict())))
    recs = synthetic_records(100, seed=5)
    assert r2.route_batch(recs).tolist() == r.route_batch(recs).tolist()
    with pytest.raises(DataFormatError):
        AutoMixRouter.from_dict({"format": "other"})


def test_oracle_routes_only_needy_cheapest_first_within_budget():
    recs = [
        QueryOutcome("a", False, True, 100.0),
        QueryOutcome("b", False, True, 50.0),
        QueryOutcome("c", True, True, 10.0),
        QueryOutcome("d", False, False, 5.0),
        QueryOutcome("e", False, True, 300.0),
    ]
    total = sum(r.strong_tokens for r in recs)  # 465
    assert OracleQueryRouter(1.0).route_batch(recs).tolist() == [True, True, False, False, True]
    assert OracleQueryRouter(160 / total).route_batch(recs).tolist() == [True, True, False, False, False]
    assert OracleQueryRouter(60 / total).route_batch(recs).tolist() == [False, True, False, False, False]
    assert not OracleQueryRouter(0.0).route_batch(recs).any()
    res = query_level_result(recs, OracleQueryRouter(1.0).route_batch(recs))
    assert res["accuracy"] == 1.0 - 1 / 5 and res["normalized_cost"] == pytest.approx(450 / total)
    with pytest.raises(InvalidParameterError):
        OracleQueryRouter(-0.1)


def test_random_router_is_seeded_nested_and_order_free():
    recs = synthetic_records(2000)
    lo = RandomQueryRouter(0.2, seed=3).route_batch(recs)
    hi = RandomQueryRouter(0.6, seed=3).route_batch(recs)
    assert np.all(hi[lo]) and abs(lo.mean() - 0.2) < 0.04 and abs(hi.mean() - 0.6) < 0.04
    rev = RandomQueryRouter(0.2, seed=3).route_batch(recs[::-1])[::-1]
    assert rev.tolist() == lo.tolist()
    assert RandomQueryRouter(0.2, seed=4).route_batch(recs).tolist() != lo.tolist()
    with pytest.raises(InvalidParameterError):
        RandomQueryRouter(1.5)
