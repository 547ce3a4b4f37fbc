"""TRIM-Agg and TRIM-Seq in evaluate's sweeps: the paper's grid by default, TRIM-Seq beside TRIM-Agg, collapse."""

from __future__ import annotations

import json

import pytest

from trim_pomdp.evaluation.records import read_records
from trim_pomdp.evaluation.simulator import load_default_simulator_params
from trim_pomdp.evaluation.sweep import (
    ALL_ROUTERS,
    SWEEP_ROUTERS,
    Benchmark,
    SweepSettings,
    plan_groups,
    run_sweep,
)
from trim_pomdp.routers.rl.convergence import Convergence
from trim_pomdp.routers.rl.grids import LAMBDA_GRIDS


def _groups(settings: SweepSettings, split: str = "math") -> dict[str, list[float | None]]:
    p = load_default_simulator_params(split)
    out: dict[str, list[float | None]] = {}
    for g in plan_groups(Benchmark(p, p, settings)):
        out.setdefault(g.policy, []).append(g.knob)
    return out


def test_the_sweep_uses_the_paper_grid_of_the_training_split():
    assert "seq" in SWEEP_ROUTERS and "seq" not in ALL_ROUTERS  # asked for by name: a transformer per λ
    s = SweepSettings(routers=("agg", "seq"), n_queries=50, n_train=50)
    groups = _groups(s)
    assert groups["agg"] == groups["seq"] == list(LAMBDA_GRIDS["math"])
    assert _groups(s, "omnimath")["agg"] == list(LAMBDA_GRIDS["aime"])
    own = SweepSettings(routers=("agg",), n_queries=50, n_train=50, agg_lambdas=(1e-3,))
    assert _groups(own)["agg"] == [1e-3]


def test_seq_is_swept_and_saved_beside_agg(tmp_path):
    pytest.importorskip("stable_baselines3")
    p = load_default_simulator_params()
    crit = Convergence(eval_every=128, eval_episodes=100, min_timesteps=0)
    settings = SweepSettings(
        routers=("seq",),
        n_queries=100,
        n_train=100,
        agg_lambdas=(1e-3,),
        agg_timesteps=1,
        agg_convergence=crit,
    )
    path = run_sweep(Benchmark(p, p, settings), tmp_path)
    assert {k for pol, k in read_records(path).groups() if pol == "seq"} == {1e-3}
    assert (tmp_path / "seq" / "lam-0.001" / "seq.json").is_file()
    assert (tmp_path / "seq" / "lam-0.001" / "learning_curve.csv").is_file()
    card = json.loads((tmp_path / "evaluate.json").read_text())
    assert card["dropped_groups"] == [] and card["settings"]["agg_convergence"]["eval_episodes"] == 100


def test_a_collapsed_lambda_is_reported_and_dropped(tmp_path, monkeypatch):
    pytest.importorskip("stable_baselines3")
    from trim_pomdp.routers.rl import training
    from trim_pomdp.routers.threshold import ThresholdRouter

    def collapsed(kind, source, lam, **kw):  # what train_router returns for a constant policy
        return training.TrainedRouter(ThresholdRouter(0.0), "never regenerates" if lam > 1e-3 else None, None)

    monkeypatch.setattr(training, "train_router", collapsed)
    p = load_default_simulator_params()
    settings = SweepSettings(routers=("agg",), n_queries=100, n_train=100, agg_lambdas=(1e-3, 1e-2))
    said: list[str] = []
    path = run_sweep(Benchmark(p, p, settings), tmp_path, log=said.append)
    assert {k for pol, k in read_records(path).groups() if pol == "agg"} == {1e-3}
    card = json.loads((tmp_path / "evaluate.json").read_text())
    assert card["dropped_groups"] == [{"policy": "agg", "knob": 1e-2, "reason": "collapsed"}]
    assert any("λ=0.01 dropped from the sweep: the router never regenerates" in m for m in said)
