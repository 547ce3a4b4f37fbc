"""`trim-pomdp evaluate` / `demo`: sweeps on the simulator, outputs, resume, records mode, cross-dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from trim_pomdp.cli import main
from trim_pomdp.evaluation.metrics import summarize
from trim_pomdp.evaluation.records import Records, RecordWriter, read_records, write_records
from trim_pomdp.evaluation.simulator import SIMULATED_NOTE, Simulator, load_default_simulator_params
from trim_pomdp.evaluation.sweep import Benchmark, SweepSettings, estimate_trim_params, run_sweep

SMALL = ["--n-queries", "150", "--n-train", "150"]


@pytest.fixture(scope="module")
def obs_model_dir(tmp_path_factory):
    """A small observation model fitted on simulated labelled steps (no shipped artifact needed)."""
    from trim_pomdp.observation_models.observation import ObservationModel

    table = Simulator().step_table(400, seed=7)
    d = tmp_path_factory.mktemp("obs")
    ObservationModel.fit(table, n_bins=6, card={"simulated": True}).save(d)
    return d


def _invoke(args):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def test_evaluate_writes_everything(tmp_path, obs_model_dir):
    out = tmp_path / "ev"
    res = _invoke(
        [
            "evaluate",
            "--routers",
            "pomdp,thr,automix,oracle,random",
            *SMALL,
            "--lambdas",
            "3e-4,3e-3,3e-2",
            "--thresholds",
            "0,0.3,0.6,0.9",
            "--observation-model",
            str(obs_model_dir),
            "--out",
            str(out),
        ]
    )
    assert "SIMULATED" in res.output and "TRIM-POMDP" in res.output
    for name in ("records.csv", "summary.json", "table.md", "curves.csv", "curves.png", "evaluate.json"):
        assert (out / name).is_file(), name
    recs = read_records(out / "records.csv")
    groups = recs.groups()
    assert ("weak", None) in groups and ("strong", None) in groups
    assert {k for p, k in groups if p == "pomdp"} == {3e-4, 3e-3, 3e-2}
    assert {k for p, k in groups if p == "thr"} == {0.0, 0.3, 0.6, 0.9}
    assert all(idx.size == 150 for idx in groups.values())
    s = json.loads((out / "summary.json").read_text())
    assert s["simulated"] is True and s["note"] == SIMULATED_NOTE
    assert set(s["policies"]) == {"pomdp", "thr", "automix", "oracle", "random"}
    assert set(s["policies"]["thr"]["cpt"]) == {"50", "80", "95"}
    # the summary is exactly what `trim-pomdp metrics` computes from the records
    assert summarize(recs)["policies"]["thr"]["delta_ibc"] == pytest.approx(s["policies"]["thr"]["delta_ibc"])
    assert "SIMULATED" in (out / "table.md").read_text()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = json.loads((out / "evaluate.json").read_text())
    assert card["simulated"] is True and card["identity"]["n_queries"] == 150
    # threshold 0 never regenerates: it is M_w alone on the same queries (common random numbers)
    weak = recs.select(recs.policy == "weak")
    thr0 = recs.select((recs.policy == "thr") & (recs.knob == 0.0))
    assert np.array_equal(weak.correct, thr0.correct) and (thr0.strong_tokens == 0).all()


def test_evaluate_resumes_a_killed_run(tmp_path):
    out = tmp_path / "ev"
    args = ["evaluate", "--routers", "thr,oracle", *SMALL, "--thresholds", "0.2,0.5,0.8", "--out", str(out)]
    _invoke(args)
    path = out / "records.csv"
    full = read_records(path)
    # simulate a kill in the middle of the oracle sweep: drop its last groups, tear the last line
    oracle_knobs = sorted({k for p, k in full.groups() if p == "oracle"})
    keep = ~((full.policy == "oracle") & (full.knob >= oracle_knobs[5]))
    partial = full.select(keep)
    write_records(path, partial)
    extra = full.select((full.policy == "oracle") & (full.knob == oracle_knobs[5]))
    with RecordWriter(path) as w:
        w.write(extra.select(np.arange(len(extra)) < 40))  # a group cut short
    with path.open("a") as fh:
        fh.write("oracle,0.3,sim-0-00004")  # torn line
    res = _invoke(args)
    assert "resumed" in res.output
    again = read_records(path)
    assert len(again) == len(full)
    summarize(again)  # no duplicated (policy, knob, query) rows
    a = {(r["policy"], r["knob"], r["query_id"]): r for r in full.rows()}
    b = {(r["policy"], r["knob"], r["query_id"]): r for r in again.rows()}
    assert a == b  # the resumed run reproduces the same records
    # other queries cannot be mixed into the same folder
    res = CliRunner().invoke(
        main, ["evaluate", "--routers", "thr", "--n-queries", "120", "--n-train", "150", "--out", str(out)]
    )
    assert res.exit_code != 0 and "other queries" in res.output


def test_evaluate_records_mode(tmp_path):
    ids = [f"q{i}" for i in range(20)]
    rec = Records.concat(
        [
            Records.from_arrays("weak", None, ids, np.r_[np.ones(8), np.zeros(12)], np.zeros(20)),
            Records.from_arrays("strong", None, ids, np.r_[np.ones(16), np.zeros(4)], np.full(20, 300.0)),
            Records.from_arrays("thr", 0.5, ids, np.r_[np.ones(14), np.zeros(6)], np.full(20, 60.0)),
            Records.from_arrays("other", 1.0, ids, np.r_[np.ones(10), np.zeros(10)], np.full(20, 10.0)),
        ]
    )
    src = tmp_path / "run.jsonl"
    write_records(src, rec)
    out = tmp_path / "ev"
    res = _invoke(["evaluate", "--routers", "thr", "--records", str(src), "--out", str(out)])
    assert "TRIM-Thr" in res.output
    s = json.loads((out / "summary.json").read_text())
    assert set(s["policies"]) == {"thr"} and "simulated" not in s
    res = CliRunner().invoke(
        main, ["evaluate", "--routers", "pomdp", "--records", str(src), "--out", str(out)]
    )
    assert res.exit_code != 0 and "none of --routers" in res.output


def test_cross_dataset_evaluation(tmp_path):
    out = tmp_path / "cross"
    _invoke(
        [
            "evaluate",
            "--routers",
            "thr,automix",
            *SMALL,
            "--thresholds",
            "0.3,0.7",
            "--train-split",
            "omnimath",
            "--eval-split",
            "math,gsm8k",
            "--out",
            str(out),
        ]
    )
    for split in ("math", "gsm8k"):
        card = json.loads((out / split / "evaluate.json").read_text())
        assert card["cross_dataset"] == {"train_split": "omnimath", "eval_split": split}
        assert card["train_split"] == "omnimath"
        assert (out / split / "summary.json").is_file()
    table = (out / "table.md").read_text()
    assert "fitted on omnimath" in table and "evaluated on gsm8k" in table
    res = CliRunner().invoke(main, ["evaluate", "--train-split", "omnimath", "--out", str(out)])
    assert res.exit_code != 0 and "both --train-split and --eval-split" in res.output


def test_evaluate_user_errors(tmp_path):
    res = CliRunner().invoke(main, ["evaluate", "--routers", "thr,bogus", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "bogus" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["evaluate", "--lambdas", "1e-3,abc", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "comma-separated numbers" in res.output
    res = CliRunner().invoke(
        main, ["evaluate", "--split", "aime", "--routers", "thr", "--out", str(tmp_path / "x")]
    )
    assert res.exit_code != 0 and "available" in res.output


def test_agg_in_sweep_trains_and_saves(tmp_path):
    pytest.importorskip("stable_baselines3")
    p = load_default_simulator_params()
    settings = SweepSettings(
        routers=("agg",), n_queries=100, n_train=100, agg_lambdas=(1e-3,), agg_timesteps=256
    )
    bench = Benchmark(p, p, settings)
    path = run_sweep(bench, tmp_path)
    recs = read_records(path)
    assert {k for pol, k in recs.groups() if pol == "agg"} == {1e-3}
    assert (tmp_path / "agg" / "lam-0.001" / "agg.json").is_file()


def test_estimated_pomdp_parameters_track_the_simulator():
    sim = Simulator()
    stats = sim.labelled_statistics(3000, seed=4)
    params = estimate_trim_params(stats, n_buckets=4)
    assert params.card["simulated"] is True and params.n_buckets == 4
    # pooled S0/(S0+S2) over-weights easy problems, so it sits above the Beta mean but near it
    assert sim.params.p_w_mean < params.p_w < sim.params.p_w_mean + 0.1
    assert sim.params.p_s_mean < params.p_s < 1.0
    assert params.strong_weak_ratio == pytest.approx(sim.params.strong_ratio, rel=0.05)
    assert params.hazard[-1] == 1.0 and np.allclose(params.bucket_probs.sum(axis=1), 1.0)


def test_evaluate_with_a_simulator_file(tmp_path):
    params = load_default_simulator_params("omnimath")
    path = tmp_path / "sim.json"
    params.to_json(path)
    out = tmp_path / "ev"
    _invoke(
        [
            "evaluate",
            "--routers",
            "thr",
            *SMALL,
            "--thresholds",
            "0.5",
            "--simulator",
            str(path),
            "--out",
            str(out),
        ]
    )
    card = json.loads((out / "evaluate.json").read_text())
    assert card["benchmark"] == "omnimath" and card["eval_simulator"]["params"]["split"] == "omnimath"
    res = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--routers",
            "thr",
            "--simulator",
            str(path),
            "--split",
            "math",
            "--out",
            str(tmp_path / "ev2"),
        ],
    )
    assert res.exit_code != 0 and "holds one split" in res.output


def test_demo_runs_on_the_shipped_defaults(tmp_path):
    from trim_pomdp.pomdp import default_observation_model

    try:
        default_observation_model()
    except FileNotFoundError as exc:
        pytest.skip(f"the shipped observation model is absent: {exc}")
    out = tmp_path / "demo"
    res = _invoke(["demo", "--out", str(out), "--no-agg", "--n-queries", "120", "--lambdas", "1e-3,1e-2"])
    assert "SIMULATED" in res.output and "TRIM-POMDP vs TRIM-Thr" in res.output
    assert (out / "curves.png").is_file() and (out / "table.md").is_file()
    s = json.loads((out / "summary.json").read_text())
    assert set(s["policies"]) == {"pomdp", "thr", "automix", "oracle", "random"}
    assert json.loads((out / "evaluate.json").read_text())["demo"] is True
