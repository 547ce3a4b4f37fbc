"""Budget calibration: intervals, the choice, records, the λ search, the simulator and model sources, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from trim_pomdp.cli import main
from trim_pomdp.evaluation.calibrate import (
    Point,
    Target,
    calibrate_model,
    calibrate_records,
    calibrate_simulator,
    coverage_check,
    measure,
    search_lambda,
    select,
)
from trim_pomdp.evaluation.records import Records, write_records
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError

FRACTION = Target("strong_fraction", 0.2)
COARSE = (1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 1e-1)


def test_target_domain():
    for kind, value in (("strong_fraction", 0.0), ("strong_fraction", 1.5), ("strong_tokens", -1), ("x", 1)):
        with pytest.raises(InvalidParameterError):
            Target(kind, value)
    with pytest.raises(InvalidParameterError):
        Target("strong_tokens", float("nan"))


def test_ratio_interval_matches_the_bootstrap(rng):
    c = rng.gamma(2.0, 300.0, 4000)
    t = np.where(rng.random(4000) < 0.3, c * rng.uniform(0.2, 1.0, 4000), 0.0)
    p = measure(1.0, t, np.ones(4000), c, FRACTION)
    assert p.value == pytest.approx(t.sum() / c.sum())
    idx = rng.integers(0, 4000, (2000, 4000))
    boot = t[idx].sum(axis=1) / c[idx].sum(axis=1)
    assert p.sd / np.sqrt(p.n) == pytest.approx(boot.std(), rel=0.1)
    tok = measure(1.0, t, np.ones(4000), None, Target("strong_tokens", 50))
    assert tok.value == pytest.approx(t.mean()) and tok.sd == pytest.approx(t.std(ddof=1))
    lo, hi = p.interval(1.96)
    lo_h, hi_h = p.interval(1.96, heldout_n=4000)
    assert hi_h - lo_h == pytest.approx((hi - lo) * np.sqrt(2))


def test_select_prefers_the_most_spending_point_within_the_target():
    pts = [
        Point(k, v, 0.5, a, 100) for k, v, a in ((1, 0.3, 0.9), (2, 0.19, 0.8), (3, 0.1, 0.7), (4, 0.05, 0.6))
    ]
    best, ok = select(pts, FRACTION, z=1.96, conservative=False)
    assert ok and best.knob == 2
    best, ok = select(pts, FRACTION, z=1.96, conservative=True)  # upper ends: 0.288, 0.198, 0.148
    assert ok and best.knob == 3
    best, ok = select(pts, Target("strong_fraction", 0.01), z=1.96, conservative=False)
    assert not ok and best.knob == 4


def _records(tmp_path):
    ids = [f"q{i}" for i in range(200)]
    r = np.random.default_rng(3)
    cs = r.integers(200, 800, 200).astype(float)
    rows = [Records.from_arrays("strong", None, ids, np.ones(200), cs)]
    rows.append(Records.from_arrays("weak", None, ids, np.zeros(200), np.zeros(200)))
    for k, share in ((0.2, 0.05), (0.4, 0.12), (0.6, 0.18), (0.8, 0.3)):
        spend = np.where(r.random(200) < share * 2, cs * 0.5, 0.0)
        rows.append(Records.from_arrays("thr", k, ids, r.random(200) < 0.5 + share, spend))
    records = Records.concat(rows)
    path = tmp_path / "records.csv"
    write_records(path, records)
    return path, records


def test_records_pick_the_knob_and_name_the_router(tmp_path):
    _, records = _records(tmp_path)
    cal = calibrate_records(records, FRACTION)
    fractions = {p.knob: p.value for p in cal.points}
    within = [k for k, v in fractions.items() if v <= 0.2]
    assert cal.meets and cal.knob == max(within, key=lambda k: fractions[k])
    assert cal.router == f"thr:{cal.knob:g}" and cal.interval[0] < cal.achieved < cal.interval[1]
    tokens = calibrate_records(records, Target("strong_tokens", 20.0))
    assert tokens.achieved <= 20.0
    no_strong = records.select(records.policy != "strong")
    with pytest.raises(DataFormatError, match="policy 'strong'"):
        calibrate_records(no_strong, FRACTION)
    assert calibrate_records(no_strong, Target("strong_tokens", 1e9)).meets
    with pytest.raises(InvalidParameterError, match="no policy 'pomdp'"):
        calibrate_records(records, FRACTION, policy="pomdp")


def test_records_name_a_policy_folder_of_a_sweep(tmp_path):
    ids = [f"q{i}" for i in range(50)]
    cs = np.full(50, 100.0)
    parts = [Records.from_arrays("strong", None, ids, np.ones(50), cs)]
    parts += [
        Records.from_arrays("pomdp", lam, ids, np.ones(50), cs * f) for lam, f in ((1e-4, 0.4), (1e-3, 0.1))
    ]
    recs = Records.concat(parts)
    (tmp_path / "sweep" / "lambda_0.001").mkdir(parents=True)
    cal = calibrate_records(recs, FRACTION, policies=tmp_path / "sweep")
    assert cal.knob == 1e-3 and cal.router == str((tmp_path / "sweep" / "lambda_0.001").resolve())
    cal = calibrate_records(recs, FRACTION)
    assert cal.router is None and "trim-pomdp solve --lambda 0.001" in cal.note


def test_search_finds_the_boundary_and_refines_it():
    calls = []

    def evaluate(lam):
        calls.append(lam)
        return Point(lam, 1.0 / (1.0 + 1000 * lam), 0.0, 0.5, 1000)  # falls as λ grows; 0.2 at λ = 4e-3

    grid = tuple(np.geomspace(1e-5, 1e-1, 17))
    pts = search_lambda(evaluate, FRACTION, grid, refine=8, z=1.96, conservative=False)
    best, ok = select(pts, FRACTION, z=1.96, conservative=False)
    assert ok and best.value <= 0.2 and best.knob == pytest.approx(4e-3, rel=0.05)
    assert len(calls) == len(set(calls)) <= 2 + 4 + 8
    # a target no λ of the grid spends more than: the smallest λ, once
    calls.clear()
    pts = search_lambda(evaluate, Target("strong_fraction", 1.0), grid, refine=8, z=1.96, conservative=False)
    assert [p.knob for p in pts] == [grid[0]]


@pytest.fixture(scope="module")
def simulated():
    return calibrate_simulator(FRACTION, n_queries=400, n_train=400, lambdas=COARSE, refine=4)


def test_simulator_calibration_meets_the_target_and_its_policy_reproduces_it(simulated, tmp_path):
    from trim_pomdp.evaluation.simulator import Simulator
    from trim_pomdp.routers import BeliefRouter
    from trim_pomdp.routers.rollout import rollout

    cal, policy = simulated
    assert cal.meets and cal.simulated and cal.source == "simulator" and cal.achieved <= 0.2
    assert cal.achieved > 0.1  # the refinement got close to the target, not merely under it
    assert cal.interval[0] < cal.achieved < cal.interval[1]
    assert cal.heldout_interval[0] < cal.interval[0] and cal.knob == policy.lam
    policy.save(tmp_path / "p")
    router = BeliefRouter.load(tmp_path / "p", gate=False, floor=1e-300)
    sim = Simulator()
    _, tokens = rollout(router, sim, 400, seed=0, lam=0.0, keep_episodes=True).outcomes()
    assert tokens.sum() / sim.queries(400, 0).strong_tokens.sum() == pytest.approx(cal.achieved)


def test_model_calibration_uses_the_models_own_process():
    from trim_pomdp.pomdp import build_trim_pomdp

    cal, policy = calibrate_model(
        Target("strong_fraction", 0.1), build_trim_pomdp(), n_queries=2000, lambdas=COARSE
    )
    assert cal.source == "model" and not cal.simulated and cal.meets and cal.achieved <= 0.1
    assert policy.lam == cal.knob


def test_coverage_check_counts_held_out_draws_inside_the_interval():
    res = coverage_check(
        FRACTION, draws=6, n_queries=300, heldout_n=300, n_train=300, lambdas=COARSE, refine=3
    )
    assert res["draws"] == 6 and len(res["rows"]) == 6
    assert res["inside"] == sum(r["inside"] for r in res["rows"]) and res["inside"] >= 4
    for row in res["rows"]:
        lo, hi = row["interval"]
        assert row["inside"] == (lo <= row["heldout"] <= hi)
    assert len({r["heldout"] for r in res["rows"]}) == 6  # fresh queries every draw


def test_cli_on_records_then_serve_loads_the_named_router(tmp_path):
    from trim_pomdp.serve.config import load_routers

    path, _ = _records(tmp_path)
    out = tmp_path / "cal"
    r = CliRunner().invoke(
        main, ["calibrate", "--target-strong-fraction", "0.2", "--records", str(path), "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    card = json.loads((out / "calibration.json").read_text())
    assert card["format"] == "trim-pomdp/calibration/1" and card["router"].startswith("thr:")
    assert "meets the target 0.2" in r.output and not card["simulated"]
    (served,) = load_routers([str(out)]).values()
    assert served.model == f"trim-thr/k={card['knob']:g}"


def test_cli_on_the_simulator_writes_a_servable_policy(tmp_path):
    from trim_pomdp.serve.config import load_routers

    out = tmp_path / "cal"
    args = [
        "calibrate",
        "--target-strong-tokens",
        "60",
        "--n-queries",
        "300",
        "--n-train",
        "300",
        "--lambda",
        "1e-4,1e-3,1e-2",
        "--refine",
        "2",
        "--out",
        str(out),
        "--plot",
    ]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert (
        "(SIMULATED)" in r.output and (out / "policy.npz").is_file() and (out / "calibration.png").is_file()
    )
    card = json.loads((out / "calibration.json").read_text())
    assert card["simulated"] and card["achieved"] <= 60
    (served,) = load_routers([str(out)]).values()
    assert served.model == f"trim-pomdp/lambda={card['knob']:g}"


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["calibrate", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "one of --target-strong-fraction" in r.output
    r = runner.invoke(main, ["calibrate", "--target-strong-fraction", "1.5", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2
    path, _ = _records(tmp_path)
    args = [
        "calibrate",
        "--target-strong-fraction",
        "0.2",
        "--records",
        str(path),
        "--coverage-draws",
        "3",
        "--out",
        str(tmp_path / "x"),
    ]
    r = runner.invoke(main, args)
    assert r.exit_code == 1 and r.output.startswith("Error: the coverage check runs on the simulator only")
    args = [
        "calibrate",
        "--target-strong-fraction",
        "0.0001",
        "--records",
        str(path),
        "--out",
        str(tmp_path / "y"),
    ]
    r = runner.invoke(main, args)
    assert r.exit_code == 1 and "no knob meets the target" in r.output
