"""Metrics (PGR, CPT, ΔIBC on the Pareto frontier), records I/O and `trim-pomdp metrics`: hand-computed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from trim_pomdp.cli import main
from trim_pomdp.evaluation.metrics import (
    PGR_LEVELS,
    cpt,
    delta_ibc,
    delta_ibc_common,
    delta_ibc_levels,
    pareto_frontier,
    pgr,
    summarize,
)
from trim_pomdp.evaluation.records import Records, RecordWriter, read_records, write_records
from trim_pomdp.evaluation.tables import markdown_table
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError


# ---------------------------------------------------------------------------- frontier and formulas
def test_pgr_formula_and_undefined_gap():
    assert pgr(0.7, 0.5, 0.9) == pytest.approx(0.5)
    with pytest.raises(InvalidParameterError, match="strong model to beat"):
        pgr(0.7, 0.6, 0.6)


def test_frontier_of_a_non_monotone_sweep():
    # knob order gives costs 40, 10, 30, 20, 5 with PGRs 0.8, 0.4, 0.3, 0.9, -0.1 — neither monotone
    cost = [40, 10, 30, 20, 5]
    g = [0.8, 0.4, 0.3, 0.9, -0.1]
    f = pareto_frontier(cost, g)
    # origin, then (10, .4), (20, .9); (30, .3) and (40, .8) are dominated; (5, -.1) is worse than M_w for
    # free
    assert f.cost.tolist() == [0, 10, 20]
    assert f.pgr.tolist() == [0, 0.4, 0.9]
    assert f.index.tolist() == [-1, 1, 3]
    # CPT(50%): between (10, .4) and (20, .9): 10 + 10 * (0.1 / 0.5) = 12
    assert cpt(f, 0.5) == pytest.approx(12.0)
    assert cpt(f, 0.9) == pytest.approx(20.0)
    assert cpt(f, 0.95) is None  # above the best point: unreached, not extrapolated


def test_frontier_ties_in_cost_keep_the_better_point_and_need_strict_improvement():
    f = pareto_frontier([10, 10, 20, 30], [0.2, 0.5, 0.5, 0.6])
    # (10, .5) beats (10, .2); (20, .5) does not strictly improve on (10, .5)
    assert f.cost.tolist() == [0, 10, 30]
    assert f.pgr.tolist() == [0, 0.5, 0.6]
    # a zero-cost point better than M_w replaces the origin
    f0 = pareto_frontier([0, 10], [0.1, 0.3])
    assert f0.cost.tolist() == [0, 10] and f0.pgr.tolist() == [0.1, 0.3] and f0.index.tolist() == [0, 1]


def test_frontier_without_origin():
    f = pareto_frontier([0.2, 0.1], [0.9, 0.5], origin=False)
    assert f.cost.tolist() == [0.1, 0.2]
    assert cpt(f, 0.3) == pytest.approx(0.1)  # the cheapest point already reaches lower levels


def test_delta_ibc_hand_computed_with_unreached_levels():
    # normalised costs: (0.1, PGR .5) and (0.3, PGR .9)
    f = pareto_frontier([0.1, 0.3], [0.5, 0.9])
    per = delta_ibc_levels(f)
    # levels 1..50%: on the line from the origin to (0.1, .5), c = p / 5, so p / c - 1 = 4 exactly
    assert np.allclose(per[:50], 4.0)
    # levels 51..90%: c(p) = 0.1 + (p - 0.5) * (0.2 / 0.4)
    p = np.arange(51, 91) / 100
    assert np.allclose(per[50:90], p / (0.1 + (p - 0.5) * 0.5) - 1)
    # levels 91..100% are unreached
    assert np.isnan(per[90:]).all()
    value, n = delta_ibc(f)
    assert n == 90
    assert value == pytest.approx((50 * 4.0 + np.sum(p / (0.1 + (p - 0.5) * 0.5) - 1)) / 90)
    # spot value: at 70%, c = 0.2, ratio 3.5 -> 2.5
    assert per[69] == pytest.approx(2.5)


def test_delta_ibc_when_nothing_beats_weak():
    f = pareto_frontier([0.1, 0.2], [0.0, -0.2])
    assert f.cost.tolist() == [0.0]
    assert delta_ibc(f) == (None, 0)
    assert cpt(f, 0.5) is None


def test_level_reached_exactly_despite_float_rounding():
    # 60 queries, M_w 3/60, M_s 23/60, router 22/60: PGR is exactly 19/20 but 0.9499999999999998 in floats
    g = pgr(22 / 60, 3 / 60, 23 / 60)
    assert g < 0.95
    f = pareto_frontier([0.4], [g])
    assert cpt(f, 0.95) == pytest.approx(0.4)


def test_trim_thr_math500_row_is_consistent():
    """The frontier convention reproduces the paper's TRIM-Thr MATH-500 row (CPT 9.45 / 15.95 / 25.08 %, ΔIBC 4.75).

    Tolerance 0.005: the paper prints two decimals, so a value that rounds to the printed one is within 0.005.
    """
    f = pareto_frontier([0.0945, 0.1595, 0.2508], [0.50, 0.80, 0.95])
    per = delta_ibc_levels(f)
    # the per-level values at the three CPT points
    assert per[49] == pytest.approx(4.29, abs=0.005)
    assert per[79] == pytest.approx(4.02, abs=0.005)
    assert per[94] == pytest.approx(2.79, abs=0.005)
    # a frontier from the 3 points alone (plus the free M_w origin) reaches 95 levels and averages 4.08, below
    # the paper's 4.75 (whose real curve is concave between the points)
    value, n = delta_ibc(f)
    assert n == 95
    assert value == pytest.approx(4.08, abs=0.005)
    assert value < 4.75
    # without the origin, levels below 50% would cost the whole 9.45% and the average drops to 2.71: the check
    # pins the convention that the frontier starts at M_w's free point (0, r_w)
    no_origin, _ = delta_ibc(pareto_frontier([0.0945, 0.1595, 0.2508], [0.50, 0.80, 0.95], origin=False))
    assert no_origin == pytest.approx(2.71, abs=0.005)
    # the absolute CPTs (43.68 / 73.74 / 115.99 tokens) imply one C̄_s ≈ 462 tokens within rounding
    implied = np.array([43.68, 73.74, 115.99]) / np.array([0.0945, 0.1595, 0.2508])
    assert implied.max() - implied.min() < 0.5


# ---------------------------------------------------------------------------- records → summary
def _records(n=10, r_w=0.5, r_s=0.9, cs=100.0, groups=()):
    """Records over n queries: weak/strong plus router groups (policy, knob, accuracy, mean tokens)."""
    ids = [f"q{i}" for i in range(n)]

    def outcomes(acc):
        k = round(acc * n)
        return np.r_[np.ones(k), np.zeros(n - k)]

    parts = [
        Records.from_arrays("weak", None, ids, outcomes(r_w), np.zeros(n)),
        Records.from_arrays("strong", None, ids, outcomes(r_s), np.full(n, cs)),
    ]
    for policy, knob, acc, tok in groups:
        parts.append(Records.from_arrays(policy, knob, ids, outcomes(acc), np.full(n, tok)))
    return Records.concat(parts)


def test_summarize_shape_and_values():
    rec = _records(
        groups=[
            ("thr", 0.5, 0.7, 10.0),
            ("thr", 0.9, 0.6, 50.0),
            ("thr", 0.7, 0.9, 30.0),
            ("thr", 0.1, 0.5, 0.0),
        ]
    )
    s = summarize(rec)
    assert s["weak"] == {"accuracy": 0.5}
    assert s["strong"] == {"accuracy": 0.9, "mean_tokens": 100.0}
    thr = s["policies"]["thr"]
    assert [p["knob"] for p in thr["points"]] == [0.1, 0.5, 0.7, 0.9]  # sorted by knob
    assert [p["on_frontier"] for p in thr["points"]] == [False, True, True, False]
    assert thr["points"][1] == {
        "knob": 0.5,
        "accuracy": 0.7,
        "mean_tokens": 10.0,
        "fraction": 0.1,
        "pgr": pytest.approx(0.5),
        "on_frontier": True,
    }
    # frontier (0,0) (0.1,.5) (0.3,1.0): CPT(50%) = 10 tokens, CPT(80%) at c = 0.1 + 0.3 * 0.4 = 0.22,
    # CPT(95%) 0.28
    assert thr["cpt"]["50"]["tokens"] == pytest.approx(10.0)
    assert thr["cpt"]["80"]["fraction"] == pytest.approx(0.22)
    assert thr["cpt"]["95"]["tokens"] == pytest.approx(28.0)
    assert thr["levels_reached"] == 100
    json.dumps(s)  # serialisable


def test_summarize_reports_unreached_levels_as_null():
    s = summarize(_records(groups=[("rand", 1.0, 0.6, 40.0)]))
    pol = s["policies"]["rand"]
    assert pol["cpt"] == {"50": None, "80": None, "95": None}
    assert pol["levels_reached"] == 25 and pol["max_pgr"] == pytest.approx(0.25)
    assert pol["delta_ibc"] == pytest.approx(0.25 / 0.4 - 1)  # straight line from the origin: constant ratio
    assert json.loads(json.dumps(s))["policies"]["rand"]["cpt"]["95"] is None


def test_delta_ibc_on_common_levels_does_not_favour_a_policy_that_stops_early():
    # "early" stops at PGR 0.2 for 5% of M_s's tokens (ratio 4 on its 20 levels); "full" reaches PGR 1 for half
    # the tokens, through PGR 0.2 at 10% (ratio 2 there). On its own levels "full" averages over the expensive
    # high levels too; on the 20 levels both reach, the comparison is like for like.
    rec = _records(
        n=20,
        r_w=0.5,
        r_s=1.0,
        groups=[("early", 1.0, 0.6, 5.0), ("full", 1.0, 0.6, 10.0), ("full", 2.0, 1.0, 50.0)],
    )
    s = summarize(rec)
    early, full = s["policies"]["early"], s["policies"]["full"]
    assert early["levels_reached"] == 20 and full["levels_reached"] == 100
    assert early["delta_ibc"] == pytest.approx(3.0)
    lv = PGR_LEVELS[20:]
    own_full = (np.sum(np.full(20, 1.0)) + np.sum(lv / (0.1 + (lv - 0.2) * 0.5) - 1)) / 100
    assert full["delta_ibc"] == pytest.approx(own_full)
    assert s["common_levels"] == 20
    assert early["delta_ibc_common"] == pytest.approx(3.0) and full["delta_ibc_common"] == pytest.approx(1.0)
    assert s["pairwise"] == [
        {"policies": ["early", "full"], "levels": 20, "delta_ibc": [pytest.approx(3.0), pytest.approx(1.0)]}
    ]
    # a policy that never beats M_w shares no level with anyone
    s = summarize(
        _records(n=20, r_w=0.5, r_s=1.0, groups=[("full", 1.0, 0.6, 10.0), ("none", 1.0, 0.5, 5.0)])
    )
    assert s["common_levels"] == 0 and s["policies"]["full"]["delta_ibc_common"] is None
    assert s["policies"]["full"]["delta_ibc"] == pytest.approx(1.0)  # its own levels still count
    vals, n = delta_ibc_common([pareto_frontier(np.array([0.05]), np.array([0.2]))])
    assert n == 20 and vals == [pytest.approx(3.0)]
    json.dumps(s)


def test_summarize_errors_and_dropping():
    with pytest.raises(DataFormatError, match="reserved policy 'strong'"):
        summarize(_records().select(np.array([p != "strong" for p in _records().policy])))
    rec = Records.concat(
        [
            _records(groups=[("thr", 0.5, 0.7, 10.0)]),
            Records.from_arrays("thr", 0.6, ["q0", "q1"], [1, 1], [5, 5]),
        ]
    )
    with pytest.raises(DataFormatError, match="covers 2 queries"):
        summarize(rec)
    s = summarize(rec, incomplete="drop")
    assert s["dropped"] == [{"policy": "thr", "knob": 0.6, "n_queries": 2}]
    assert [p["knob"] for p in s["policies"]["thr"]["points"]] == [0.5]
    dup = Records.concat([_records(), Records.from_arrays("thr", 0.5, ["q0", "q0"], [1, 1], [5, 5])])
    with pytest.raises(DataFormatError, match="repeat a query_id"):
        summarize(dup)
    with pytest.raises(InvalidParameterError, match="strong model to beat"):
        summarize(_records(r_w=0.9, r_s=0.9))


# ---------------------------------------------------------------------------- files and CLI
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_records_round_trip_and_torn_tail(tmp_path, suffix):
    rec = _records(groups=[("thr", 0.25, 0.7, 12.5)])
    path = tmp_path / f"r{suffix}"
    write_records(path, rec)
    back = read_records(path)
    assert len(back) == len(rec)
    assert list(back.rows()) == list(rec.rows())
    assert math.isnan(back.knob[0])  # reserved policies have no knob
    # a kill mid-write leaves a torn last line: reading ignores it, appending drops it first
    with path.open("a") as fh:
        fh.write("thr,0.5,q0,1" if suffix == ".csv" else '{"policy": "thr", "kn')
    assert len(read_records(path)) == len(rec)
    with RecordWriter(path) as w:
        w.write(Records.from_arrays("thr", 0.5, ["q0"], [1], [3]))
    again = read_records(path)
    assert len(again) == len(rec) + 1 and again.knob[-1] == 0.5


def test_records_bad_input_messages(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("policy,knob,query,correct,strong_tokens\nweak,,q0,1,0\n")
    with pytest.raises(DataFormatError, match="lacks \\['query_id'\\]"):
        read_records(bad)
    bad.write_text("policy,knob,query_id,correct,strong_tokens\nweak,,q0,yes,0\n")
    with pytest.raises(DataFormatError, match="'correct' must be 0 or 1"):
        read_records(bad)
    bad.write_text("policy,knob,query_id,correct,strong_tokens\nweak,,q0,1,-3\n")
    with pytest.raises(DataFormatError, match="strong_tokens"):
        read_records(bad)
    with pytest.raises(InvalidParameterError, match=r"\.csv or \.jsonl"):
        read_records(tmp_path / "x.txt")


def test_metrics_cli(tmp_path):
    rec = _records(groups=[("thr", 0.5, 0.7, 10.0), ("thr", 0.7, 0.9, 30.0), ("random", 1.0, 0.6, 40.0)])
    path = tmp_path / "records.csv"
    write_records(path, rec)
    out = tmp_path / "summary.json"
    res = CliRunner().invoke(main, ["metrics", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "TRIM-Thr" in res.output and "unreached" in res.output and "10.00 (10.00%)" in res.output
    s = json.loads(out.read_text())
    assert set(s["policies"]) == {"thr", "random"}
    assert s["policies"]["random"]["cpt"]["50"] is None
    assert set(s["policies"]["thr"]["cpt"]["95"]) == {"tokens", "fraction"}
    res = CliRunner().invoke(main, ["metrics", str(path), "--markdown"])
    assert res.exit_code == 0 and res.output.startswith("| Method |")
    # user errors: clear message, no traceback
    res = CliRunner().invoke(main, ["metrics", str(tmp_path / "missing.csv")])
    assert res.exit_code != 0 and "does not exist" in res.output
    only_router = tmp_path / "r.csv"
    write_records(only_router, Records.from_arrays("thr", 0.1, ["q0"], [1], [3]))
    res = CliRunner().invoke(main, ["metrics", str(only_router)])
    assert res.exit_code == 1 and "reserved policy 'weak'" in res.output and "Traceback" not in res.output


def test_markdown_table_rows():
    s = summarize(_records(groups=[("pomdp", 1e-3, 0.7, 10.0), ("automix", 0.3, 0.6, 40.0)]))
    md = markdown_table(s, note="Scores simulated.")
    lines = md.splitlines()
    assert lines[0].startswith("| Method | CPT(50%) | CPT(80%) | CPT(95%) | ΔIBC")
    # baselines first, as in the paper's Table 1
    assert lines[2].startswith("| AutoMix-PRM") and lines[3].startswith("| TRIM-POMDP | 10.00 (10.00%)")
    assert "Scores simulated." in md
    assert PGR_LEVELS[0] == 0.01 and PGR_LEVELS[-1] == 1.0 and PGR_LEVELS.shape == (100,)
