"""`trim-pomdp solve`: one λ, sweeps with resume, parameter overrides, clear errors."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
from click.testing import CliRunner

from trim_pomdp.cli import main
from trim_pomdp.cli.solve import parse_lambdas
from trim_pomdp.observation_models.observation import ObservationModel
from trim_pomdp.pomdp import TrimParams, TrimPolicy


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    n = 4
    pair = rng.dirichlet(np.ones(n * n), size=3).reshape(3, n, n)
    first = rng.dirichlet(np.ones(n), size=3)
    ObservationModel(np.linspace(0, 1, n + 1), pair, first, card={"test": True}).save(tmp_path / "obs")
    H, K = 6, 2
    TrimParams(
        p_w=0.8,
        p_s=0.9,
        horizon=H,
        bucket_edges=[60],
        bucket_probs=np.full((H, K), 0.5),
        hazard=np.full(H, 0.2),
        bucket_mean_tokens=[40, 90],
    ).to_json(tmp_path / "params.json")
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, ["solve", *map(str, args)], catch_exceptions=False)


def test_parse_lambdas():
    assert parse_lambdas("5e-4") == [5e-4]
    assert parse_lambdas("1e-4, 5e-4") == [1e-4, 5e-4]
    vals = parse_lambdas("1e-4:1e-3:5")
    assert len(vals) == 5 and vals[0] == pytest.approx(1e-4) and vals[-1] == pytest.approx(1e-3)
    for bad in ("-1e-4", "abc", "1e-4:1e-3", "0:1e-3:3", "1e-4:1e-3:0"):
        with pytest.raises(click.BadParameter):
            parse_lambdas(bad)


def test_single_lambda_writes_policy_and_prints_summary(files):
    out = files / "one"
    res = run(
        "--lambda",
        "5e-4",
        "--obs",
        files / "obs",
        "--params",
        files / "params.json",
        "--out",
        out,
        "--mc-episodes",
        4000,
    )
    assert res.exit_code == 0, res.output
    card = json.loads((out / "policy.json").read_text())
    for key in ("lambda", "lower_bound", "upper_bound", "solve_seconds"):
        assert key in card
    assert card["lambda"] == 5e-4 and card["upper_bound"] - card["lower_bound"] <= 1e-3
    for text in ("V(b0) ∈", "accuracy", "strong tokens", "Regenerate region", "solved in"):
        assert text in res.output
    pol = TrimPolicy.load(out)
    assert pol.lam == 5e-4 and pol.horizon == 6


def test_sweep_writes_one_policy_per_lambda_and_resumes(files):
    out = files / "sweep"
    args = [
        "--lambda",
        "1e-4:1e-2:3",
        "--obs",
        files / "obs",
        "--params",
        files / "params.json",
        "--out",
        out,
        "--mc-episodes",
        2000,
        "--p-w",
        0.85,
    ]
    res = run(*args)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["policies"]) == 3 and summary["params"]["p_w"] == 0.85
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == ["lambda_0.0001", "lambda_0.001", "lambda_0.01"]
    toks = [r["strong_tokens"] for r in summary["policies"]]
    assert toks[0] >= toks[-1]
    stamp = (out / "lambda_0.001" / "policy.npz").stat().st_mtime_ns
    res = run(*args)
    assert res.exit_code == 0
    assert (out / "lambda_0.001" / "policy.npz").stat().st_mtime_ns == stamp  # resumed, not re-solved
    broken = out / "lambda_0.01" / "policy.npz"
    broken.write_bytes(broken.read_bytes()[:100])  # a sweep killed mid-copy, or a damaged disk
    res = run(*args)
    assert res.exit_code == 0, res.output
    assert (out / "lambda_0.001" / "policy.npz").stat().st_mtime_ns == stamp
    assert TrimPolicy.load(out / "lambda_0.01").params.lam == pytest.approx(0.01)  # solved again, loads


@pytest.mark.parametrize(
    "args,message",
    [
        (["--lambda", "-1"], "λ must be finite and >= 0"),
        (["--horizon", "0"], "horizon"),
        (["--p-w", "1.5"], "[0, 1]"),
        (["--p-s", "-0.2"], "[0, 1]"),
        (["--weak-generator", "x"], "both"),
        (["--difficulty-classes", "0"], "must be >= 1 (1 is the pooled model)"),
        (["--difficulty-classes", "two"], "must be an integer >= 1 or auto"),
        (["--difficulty-data", "simulator"], "--difficulty-data needs --difficulty-classes"),
        (["--difficulty-classes", "2", "--difficulty-data", "nowhere.jsonl"], "neither 'simulator'"),
        (["--difficulty-classes", "500", "--difficulty-queries", "200"], "need at least 2500 problems"),
    ],
)
def test_clear_errors(files, args, message):
    res = CliRunner().invoke(
        main,
        [
            "solve",
            "--obs",
            str(files / "obs"),
            "--params",
            str(files / "params.json"),
            "--out",
            str(files / "e"),
            *args,
        ],
    )
    assert res.exit_code != 0
    assert message in res.output
    assert "Traceback" not in res.output


def test_difficulty_classes_are_estimated_and_solved(files):
    out = files / "classes"
    res = run(
        "--obs", files / "obs", "--params", files / "params.json", "--out", out, "--mc-episodes", 2000,
        "--difficulty-classes", 2, "--difficulty-data", "simulator", "--difficulty-queries", 300, "--no-regions",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # the console wraps long lines
    assert "estimated 2 difficulty classes from 300 problems (simulated training queries (SIMULATED))" in text
    assert "held-out log-likelihood per problem D=1:" in text and "difficulty classes D=2" in text
    pol = TrimPolicy.load(out)
    dc = pol.params.difficulty
    assert dc.n_classes == 2 and dc.p_w[0] > dc.p_w[1] and dc.card["estimated_from"]["queries"] == 300
    card = json.loads((out / "policy.json").read_text())
    assert card["upper_bound"] - card["lower_bound"] <= 1e-3
    # one class is the pooled model: the parameters' own classes are dropped
    pol.params.to_json(files / "classes.json")
    res = run(
        "--obs", files / "obs", "--params", files / "classes.json", "--out", files / "pooled", "--mc-episodes", 0,
        "--difficulty-classes", 1, "--no-regions",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert TrimPolicy.load(files / "pooled").params.difficulty is None


def test_mismatched_observation_bins(files):
    params = TrimParams.from_json(files / "params.json")
    bad = json.loads(params.to_json())
    (files / "p2.json").write_text(json.dumps(bad))
    rng = np.random.default_rng(1)
    n = 3
    ObservationModel(
        np.linspace(0, 1, n + 1),
        rng.dirichlet(np.ones(n * n), size=3).reshape(3, n, n),
        rng.dirichlet(np.ones(n), size=3),
    ).save(files / "obs3")
    # a well-formed model of another size solves; a corrupted one is rejected with a clear message
    res = run(
        "--obs",
        files / "obs3",
        "--params",
        files / "p2.json",
        "--out",
        files / "ok",
        "--mc-episodes",
        0,
        "--no-regions",
    )
    assert res.exit_code == 0, res.output
    data = dict(np.load(files / "obs3" / "observation_model.npz", allow_pickle=False))
    data["pair_probs"] = data["pair_probs"][:, :2, :2] if "pair_probs" in data else None
    if data["pair_probs"] is not None:
        np.savez(files / "obs3" / "observation_model.npz", **data)
        res = CliRunner().invoke(
            main,
            [
                "solve",
                "--obs",
                str(files / "obs3"),
                "--params",
                str(files / "p2.json"),
                "--out",
                str(files / "bad"),
            ],
        )
        assert res.exit_code != 0 and "Traceback" not in res.output


def test_unavailable_solver_gives_a_clear_error(files, monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *a):
        if name.endswith(".sarsop"):
            raise ImportError("not built")
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", fake)
    res = CliRunner().invoke(
        main,
        [
            "solve",
            "--obs",
            str(files / "obs"),
            "--params",
            str(files / "params.json"),
            "--out",
            str(files / "s"),
            "--solver",
            "sarsop",
            "--mc-episodes",
            "0",
        ],
    )
    assert res.exit_code != 0 and "--solver native" in res.output and "Traceback" not in res.output


def test_default_observation_model_is_used_without_obs(files):
    try:
        from trim_pomdp.observation_models.observation import load_shipped_observation_model

        load_shipped_observation_model()
    except FileNotFoundError:
        res = CliRunner().invoke(
            main, ["solve", "--params", str(files / "params.json"), "--out", str(files / "d")]
        )
        assert res.exit_code != 0 and "observation model" in res.output and "Traceback" not in res.output
        return
    res = run("--lambda", "5e-4", "--out", files / "d", "--mc-episodes", 2000, "--no-regions")
    assert res.exit_code == 0, res.output
    card = json.loads((files / "d" / "policy.json").read_text())
    assert card["upper_bound"] - card["lower_bound"] <= 1e-3


def test_estimating_parameters_from_processbench(tmp_path):
    from tests._support.data import require_shared_data

    root = require_shared_data("processbench")
    n = 3
    rng = np.random.default_rng(2)
    ObservationModel(
        np.linspace(0, 1, n + 1),
        rng.dirichlet(np.ones(n * n), size=3).reshape(3, n, n),
        rng.dirichlet(np.ones(n), size=3),
    ).save(tmp_path / "obs")
    res = run(
        "--weak-generator",
        "Qwen2.5-7B-Instruct",
        "--strong-generator",
        "Qwen2.5-72B-Instruct",
        "--processbench",
        root,
        "--obs",
        tmp_path / "obs",
        "--horizon",
        8,
        "--out",
        tmp_path / "est",
        "--mc-episodes",
        0,
        "--no-regions",
    )
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "est" / "policy.json").read_text())
    assert card["params"]["card"]["weak_generator"] == "Qwen2.5-7B-Instruct"
    assert card["params"]["horizon"] == 8
    res = CliRunner().invoke(
        main,
        [
            "solve",
            "--weak-generator",
            "nope",
            "--strong-generator",
            "Qwen2.5-72B-Instruct",
            "--processbench",
            str(root),
            "--obs",
            str(tmp_path / "obs"),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert res.exit_code != 0 and "available" in res.output and "Traceback" not in res.output


def test_plot_writes_the_regions_figure(files):
    pytest.importorskip("matplotlib")
    out = files / "plot"
    res = run(
        "--lambda",
        "1e-3",
        "--obs",
        files / "obs",
        "--params",
        files / "params.json",
        "--out",
        out,
        "--mc-episodes",
        0,
        "--no-regions",
        "--plot",
    )
    assert res.exit_code == 0, res.output
    assert (out / "regions.png").stat().st_size > 1000
    assert parse_lambdas("1e-4,1e-4,2e-4") == [1e-4, 2e-4]


def test_sarsop_backend_option_reaches_the_worker(files, monkeypatch):
    """--solver sarsop --sarsop-backend native: the flattened model crosses to the (fake) Julia worker per λ."""
    from pathlib import Path

    tests_dir = Path(__file__).parents[2]
    path = __import__("os").environ.get("PYTHONPATH", "")
    monkeypatch.setenv(
        "PYTHONPATH", __import__("os").pathsep.join([str(tests_dir)] + ([path] if path else []))
    )
    monkeypatch.setenv("TRIM_POMDP_SARSOP_FAKE", "tests._support.sarsop_fakes:blind")
    out = files / "sarsop"
    res = run(
        "--lambda", "1e-4,1e-2", "--obs", files / "obs", "--params", files / "params.json",
        "--solver", "sarsop", "--sarsop-backend", "native", "--mc-episodes", 0, "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for lam in ("lambda_0.0001", "lambda_0.01"):
        card = json.loads((out / lam / "policy.json").read_text())
        assert card["lower_bound"] is not None
    bad = CliRunner().invoke(
        main, ["solve", "--solver", "sarsop", "--sarsop-backend", "no-such-backend", "--out", str(out)]
    )
    assert bad.exit_code != 0 and "sarsop-backend" in bad.output and "appl" in bad.output
