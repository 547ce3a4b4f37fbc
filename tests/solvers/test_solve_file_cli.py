"""`trim-pomdp solve-file`: writes policy.npz + policy.json with bounds; clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from trim_pomdp.cli import main
from trim_pomdp.solvers import AlphaVectorPolicy

FIX = Path(__file__).parents[1] / "fixtures" / "pomdp"


def test_solve_file_writes_policy_and_card(tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main,
        [
            "solve-file",
            str(FIX / "corridor.pomdp"),
            "--out",
            str(out),
            "--precision",
            "1e-4",
            "--time-limit",
            "20",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    card = json.loads((out / "policy.json").read_text())
    assert {"lower_bound", "upper_bound", "solve_seconds"} <= set(card)
    assert card["lower_bound"] <= card["upper_bound"] <= card["lower_bound"] + 1e-4
    policy = AlphaVectorPolicy.load(out / "policy")
    assert policy.n_states == 3
    assert float(policy.value(np.array([0.5, 0.0, 0.5]))) == card["lower_bound"]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["lower_bound"] == card["lower_bound"] and summary["converged"] is True


def test_solve_file_pomdpx_with_progress_horizon_and_start(tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "solve-file",
            str(FIX / "factored.pomdpx"),
            "--out",
            str(tmp_path),
            "--horizon",
            "3",
            "--start",
            "0,0,1,0",
        ],
    )
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "policy.json").read_text())
    assert card["lower_bound"] == card["upper_bound"] and card["parameters"]["finite_horizon"] == 3


def test_solve_file_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["solve-file", str(tmp_path / "missing.pomdp"), "--out", str(tmp_path)])
    assert res.exit_code != 0 and "does not exist" in res.output
    bad = tmp_path / "bad.pomdp"
    bad.write_text("discount: 0.9\nstates: 2\nactions: 1\nobservations: 1\nT: 0 : 0 : 7 1.0\n")
    res = runner.invoke(main, ["solve-file", str(bad), "--out", str(tmp_path)])
    assert res.exit_code != 0 and "line 5" in res.output and "Traceback" not in res.output
    res = runner.invoke(
        main, ["solve-file", str(FIX / "corridor.pomdp"), "--out", str(tmp_path), "--start", "0.5,0.5"]
    )
    assert res.exit_code != 0 and "3 non-negative numbers" in res.output
    res = runner.invoke(
        main, ["solve-file", str(FIX / "corridor.pomdp"), "--out", str(tmp_path), "--precision", "0"]
    )
    assert res.exit_code != 0 and "--precision" in res.output


def test_solve_file_refuses_non_finite_numbers_in_one_line(tmp_path):
    runner = CliRunner()
    for option in ("--time-limit", "--precision"):
        res = runner.invoke(
            main, ["solve-file", str(FIX / "corridor.pomdp"), "--out", str(tmp_path), option, "nan"]
        )
        assert res.exit_code == 2 and option in res.output and "not a finite number" in res.output
        assert "Traceback" not in res.output


def test_solve_file_library_call(tmp_path):
    from trim_pomdp.solvers.files import solve_file

    lines: list[str] = []
    policy, info = solve_file(FIX / "corridor.pomdp", tmp_path, precision=1e-3, echo=lines.append)
    assert lines and lines[0].startswith("corridor.pomdp: 3 states")
    assert (
        info.solver == "pointbased"
        and info.converged
        and policy.card["model_file"].endswith("corridor.pomdp")
    )
    assert AlphaVectorPolicy.load(tmp_path / "policy").info == info
