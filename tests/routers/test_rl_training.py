"""The RL training budget: the paper's λ grids, the convergence rule, collapse, and train_router's folder."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

from tests._support.toys import ToyProcess
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.routers.rl.convergence import Convergence, ConvergenceTracker, collapse, write_curve
from trim_pomdp.routers.rl.grids import LAMBDA_GRIDS, default_lambdas, family_of

SMALL_PPO = {"n_steps": 64, "batch_size": 128, "n_epochs": 1}


def test_the_paper_grids_per_family():
    math, aime = LAMBDA_GRIDS["math"], LAMBDA_GRIDS["aime"]
    assert (math[0], math[-1]) == (8e-4, 3e-4) and (aime[0], aime[-1]) == (3e-4, 8e-5)
    for grid in (math, aime):  # regular intervals, from the cheapest regenerations down
        assert np.allclose(np.diff(grid), np.diff(grid)[0], rtol=0.02) and all(np.diff(grid) < 0)
    assert default_lambdas(None) == default_lambdas("math500") == default_lambdas("gsm8k") == math
    assert default_lambdas("OlympiadBench") == default_lambdas("minerva") == default_lambdas("aime24") == aime
    assert family_of("omnimath") == "aime"
    with pytest.raises(InvalidParameterError, match=r"no λ grid for 'math5000'.*math500"):
        family_of("math5000")


def _result(ret: float, rate: float = 0.5) -> SimpleNamespace:
    return SimpleNamespace(ret=ret, ret_se=0.01, accuracy=ret, strong_tokens=10.0, regenerate_rate=rate)


def test_convergence_stops_after_patience_without_improvement_and_resumes():
    crit = Convergence(eval_every=10, eval_episodes=5, patience=2, min_delta=0.01, min_timesteps=40)
    tr = ConvergenceTracker(crit)
    assert tr.due(0)
    for t, ret in [(0, 0.1), (10, 0.3), (20, 0.305), (30, 0.30)]:  # +0.005 does not count as an improvement
        tr.record(t, _result(ret), 0.0)
    assert tr.best is not None and tr.best["timesteps"] == 10 and tr.stale == 2
    assert tr.stopped is None  # patience spent, but not min_timesteps yet
    assert not tr.due(35) and tr.due(40)
    back = ConvergenceTracker.from_state(crit, json.loads(json.dumps(tr.state())))
    back.record(40, _result(0.2), 0.0)
    assert back.stopped == "converged" and back.best["ret"] == 0.3
    assert [r["best"] for r in back.curve] == [False, True, False, False, False]
    other = ConvergenceTracker.from_state(Convergence(patience=3), tr.state())  # another criterion: afresh
    assert other.curve == [] and other.best is None
    with pytest.raises(InvalidParameterError, match="patience"):
        Convergence(patience=0)
    with pytest.raises(InvalidParameterError, match="min_delta"):
        Convergence(min_delta=float("nan"))


def test_collapse_names_constant_policies(tmp_path):
    assert collapse(0.0) == "never regenerates" and collapse(1.0) == "always regenerates"
    assert collapse(0.3) is None and collapse(None) is None
    tr = ConvergenceTracker(Convergence())
    tr.record(0, _result(0.4, 0.0), 1.5)
    path = write_curve(tr.curve, tmp_path, {"lam": 1e-3})
    rows = list(csv.DictReader(path.open()))
    assert rows[0]["ret"] == "0.4" and rows[0]["best"] == "True"
    assert json.loads((tmp_path / "learning_curve.json").read_text())["lam"] == 1e-3


def test_the_curve_plots_without_a_standard_error(tmp_path):
    pytest.importorskip("matplotlib")
    from trim_pomdp.routers.rl.convergence import plot_curve

    tr = ConvergenceTracker(Convergence())
    tr.record(
        0, SimpleNamespace(**{**vars(_result(0.4)), "ret_se": float("nan")}), 0.0
    )  # one held-out episode
    tr.record(64, _result(0.5), 0.0)
    resumed = json.loads(json.dumps(tr.state(), default=str).replace("NaN", "null"))["curve"]  # as read back
    assert resumed[0]["ret_se"] is None
    assert plot_curve(resumed, tmp_path / "c.png").stat().st_size > 0


@pytest.mark.parametrize("kind", ["agg", "seq"])
def test_train_router_writes_the_folder_and_a_finished_router_is_reused(kind, tmp_path):
    pytest.importorskip("stable_baselines3")
    from trim_pomdp.routers.rl.training import finished_router, train_router

    crit = Convergence(eval_every=256, eval_episodes=64, patience=1, min_timesteps=0, min_delta=10.0)
    messages: list[str] = []
    out = tmp_path / kind
    trained = train_router(
        kind, ToyProcess, 5e-4, out=out, convergence=crit, timesteps=4096, n_envs=2,
        hyperparameters=SMALL_PPO, log=messages.append, plot=False,
    )  # fmt: skip
    card = trained.card
    # min_delta 10: no evaluation after the first improves on it, so patience 1 stops at the second one
    assert card["stopped"] == "converged" and card["timesteps_trained"] < 4096
    curve = list(csv.DictReader((out / "learning_curve.csv").open()))
    assert [int(r["timesteps"]) for r in curve][:2] == [0, 256] and curve[0]["best"] == "True"
    rate = float(curve[0]["regenerate_rate"])
    assert trained.collapsed == collapse(rate) and card["collapsed"] == trained.collapsed
    assert any("collapsed" in m for m in messages) == (trained.collapsed is not None)
    again = finished_router(kind, out)
    assert again is not None and again.collapsed == trained.collapsed
    assert again.router.card["convergence"]["best"]["timesteps"] == 0
    assert finished_router(kind, tmp_path / "nothing") is None
    with pytest.raises(InvalidParameterError, match="agg, seq"):
        train_router("thr", ToyProcess, 5e-4)


def test_train_router_resumes_and_says_so(tmp_path):
    pytest.importorskip("stable_baselines3")
    from trim_pomdp.routers.rl.training import train_router

    messages: list[str] = []
    out = tmp_path / "lam-0.0005"  # not made yet, and a dot in its name: the checkpoint still goes inside
    kw = {"out": out, "convergence": None, "n_envs": 2, "hyperparameters": SMALL_PPO, "plot": False}
    first = train_router("agg", ToyProcess, 5e-4, timesteps=256, **kw)
    assert first.card["stopped"] == "budget" and first.card["checkpoint"] == "none"
    assert (out / "checkpoint.npz").is_file() and not list(tmp_path.glob("lam-0.*.json"))
    second = train_router("agg", ToyProcess, 5e-4, timesteps=512, log=messages.append, **kw)
    assert second.card["resumed_from_timesteps"] == 256 and second.card["timesteps_trained"] == 512
    assert any("resumed from the checkpoint" in m for m in messages)
    other = train_router("agg", ToyProcess, 1e-3, timesteps=256, log=messages.append, **kw)  # another λ
    assert other.card["checkpoint"].startswith("replaced") and other.card["resumed_from_timesteps"] == 0
    assert any("trained from scratch" in m for m in messages)
