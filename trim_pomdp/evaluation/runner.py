"""``trim-pomdp evaluate`` and ``trim-pomdp demo`` as library calls: where the queries come from, and the reports.

:func:`evaluate` runs one of three evaluations into a folder and returns the summaries it wrote:

- **records**: summarise per-query records someone else produced (e.g. ``trim-pomdp run``), no simulation;
- **simulated, in distribution**: sweep the routers on one split's simulator (training and evaluation queries
  from the same statistics, different seeds);
- **cross-dataset**: fit or train the routers on one split and evaluate them on others, one sub-folder each,
  plus a combined ``table.md``.

:func:`train_and_evaluate_agg` (``trim-pomdp train-agg``) trains TRIM-Agg for one λ and compares it with the
exact POMDP policy on the same episodes.

Each sweep resumes where a killed run stopped (:func:`~trim_pomdp.evaluation.sweep.run_sweep`). Outputs of the
simulator are SIMULATED, and say so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp.evaluation.records import RESERVED_POLICIES, read_records, write_records
from trim_pomdp.evaluation.simulator import SimulatorParams, load_default_simulator_params
from trim_pomdp.evaluation.sweep import Benchmark, SweepSettings, run_sweep, write_reports
from trim_pomdp.exceptions import InvalidParameterError

__all__ = [
    "Report",
    "agg_training_source",
    "evaluate",
    "evaluate_records",
    "evaluate_simulated",
    "simulator_params",
    "train_and_evaluate_agg",
]

#: One written evaluation: ``(title, folder, summary)``.
Report = tuple[str, Path, dict[str, Any]]

PathLike = str | os.PathLike[str]


def simulator_params(
    simulator: PathLike | None = None, data_dir: PathLike | None = None, split: str | None = None
) -> SimulatorParams:
    """Simulator parameters of one split: from a file, re-estimated from ProcessBench, or the shipped ones.

    ``split=None`` means the file's own split for a single-split file, else ``math``.
    """
    if simulator is not None:
        path = Path(simulator)
        try:
            multi = "splits" in json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
            multi = False  # SimulatorParams.from_json names what is wrong with the file
        if multi:
            return SimulatorParams.from_json(path, split=split)
        params = SimulatorParams.from_json(path)
        if split is not None and split != params.split:
            raise InvalidParameterError(
                f"{path} holds one split ({params.split!r}); split {split!r} needs a multi-split file or "
                "--data-dir DIR (ProcessBench's <split>.json files)"
            )
        return params
    if data_dir is not None:
        from trim_pomdp.datasets.processbench import load_processbench
        from trim_pomdp.evaluation.simulator_estimation import estimate_simulator_params

        return estimate_simulator_params(load_processbench(data_dir=data_dir), split=split or "math")
    return load_default_simulator_params(split or "math")


def evaluate_simulated(
    out: PathLike,
    settings: SweepSettings,
    eval_params: SimulatorParams,
    train_params: SimulatorParams | None = None,
    *,
    title: str | None = None,
    obs_model_loader: Callable[[], Any] | None = None,
    extra_card: dict[str, Any] | None = None,
    agg_dir: PathLike | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> Report:
    """Sweep every router of ``settings`` on simulated queries, then write the reports into ``out``.

    ``train_params`` defaults to ``eval_params`` (in distribution); the other arguments are those of
    :func:`~trim_pomdp.evaluation.sweep.run_sweep`.
    """
    train_params = train_params if train_params is not None else eval_params
    title = title or f"{eval_params.split} (simulated)"
    bench = Benchmark(eval_params, train_params, settings, name=eval_params.split)
    out = Path(out)
    records = run_sweep(
        bench,
        out,
        obs_model_loader=obs_model_loader,
        log=log,
        extra_card=extra_card,
        agg_dir=None if agg_dir is None else Path(agg_dir),
        progress=progress,
    )
    return title, out, write_reports(records, out, title=title, log=log)


def evaluate_records(
    records: PathLike, routers: Sequence[str], out: PathLike, *, log: Callable[[str], None] | None = None
) -> Report:
    """Summarise the ``routers`` (and the reserved ``weak``/``strong``) of an existing records file into ``out``.

    The selected records are copied to ``out/records.csv`` beside the reports.
    """
    src = Path(records)
    recs = read_records(src)
    keep = np.array([p in routers or p in RESERVED_POLICIES for p in recs.policy], dtype=bool)
    selected = recs.select(keep)
    routed = [p for p in recs.policies() if p not in RESERVED_POLICIES]
    if routed and not any(p not in RESERVED_POLICIES for p in selected.policies()):
        raise InvalidParameterError(
            f"none of --routers {list(routers)} is in {src}; it holds {sorted(set(recs.policy))}"
        )
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_records(out_dir / "records.csv", selected)
    title = f"Routing metrics: {src.name}"
    return (
        title,
        out_dir,
        write_reports(out_dir / "records.csv", out_dir, title=title, simulated=False, log=log),
    )


def evaluate(
    out: PathLike,
    settings: SweepSettings,
    *,
    records: PathLike | None = None,
    simulator: PathLike | None = None,
    data_dir: PathLike | None = None,
    split: str | None = None,
    train_split: str | None = None,
    eval_splits: Sequence[str] | None = None,
    obs_model_loader: Callable[[], Any] | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> list[Report]:
    """Run the evaluation the arguments describe (see the module docstring) and return its reports.

    Parameters
    ----------
    out : path
        Output folder (one sub-folder per evaluation split in the cross-dataset setting).
    settings : SweepSettings
        Routers and grids (only ``routers`` is used with ``records``).
    records : path, optional
        Summarise this records file instead of simulating.
    simulator, data_dir, split
        Where the simulator's statistics come from (see :func:`simulator_params`).
    train_split, eval_splits : optional
        Cross-dataset evaluation: fit on ``train_split``, evaluate on each of ``eval_splits``.
    obs_model_loader : callable, optional
        Returns the POMDP router's observation model (default: the shipped one).
    log : callable, optional
        Receives one-line messages.
    progress : bool
        Report progress per ``(policy, knob)`` group.
    """
    out = Path(out)
    if records is not None:
        if simulator is not None or train_split or eval_splits or data_dir is not None:
            raise InvalidParameterError("--records summarises existing records: drop the simulator options")
        return [evaluate_records(records, settings.routers, out, log=log)]
    common: dict[str, Any] = {"obs_model_loader": obs_model_loader, "log": log, "progress": progress}
    if train_split is None and not eval_splits:
        params = simulator_params(simulator, data_dir, split)
        return [evaluate_simulated(out, settings, params, **common)]
    if not (train_split and eval_splits):
        raise InvalidParameterError("cross-dataset evaluation needs both --train-split and --eval-split")
    train = simulator_params(simulator, data_dir, train_split)
    reports = []
    for name in eval_splits:
        ev = simulator_params(simulator, data_dir, name)
        reports.append(
            evaluate_simulated(
                out / ev.split,
                settings,
                ev,
                train,
                title=f"trained on {train.split}, evaluated on {ev.split} (simulated)",
                extra_card={"cross_dataset": {"train_split": train.split, "eval_split": ev.split}},
                agg_dir=out / f"agg-trained-on-{train.split}",
                **common,
            )
        )
    tables = [(folder / "table.md").read_text(encoding="utf-8") for _, folder, _ in reports]
    (out / "table.md").write_text(
        f"## Cross-dataset generalisation: routers fitted on {train.split}\n\n" + "\n".join(tables),
        encoding="utf-8",
    )
    return reports


def agg_training_source(
    source: str,
    *,
    params: PathLike | None = None,
    obs: PathLike | None = None,
    lam: float | None = None,
    split: str | None = None,
) -> tuple[Callable[[], Any], dict[str, Any], Any]:
    """Episodes to train TRIM-Agg on: ``(factory, card, model)``.

    ``"model"``: the TRIM-POMDP's own process (parameters ``params`` or the shipped ones, λ set to ``lam``,
    observation model ``obs``); ``"simulator"``: the evaluation simulator of ``split`` (then ``model`` is
    ``None``).
    """
    if source == "model":
        from trim_pomdp.pomdp import ModelProcess, load_trim_pomdp

        trim = load_trim_pomdp(params, obs, lam=lam)
        card: dict[str, Any] = {
            "type": "ModelProcess",
            "params": str(params) if params is not None else "default",
            "observation_model": str(obs) if obs is not None else "shipped",
        }
        return (lambda: ModelProcess(trim)), card, trim
    if source == "simulator":
        from trim_pomdp.evaluation.simulator import Simulator

        sim_params = load_default_simulator_params(split)
        card = {"type": "Simulator", "split": sim_params.split, "simulated_prm_scores": True}
        return (lambda: Simulator(sim_params)), card, None
    raise InvalidParameterError(f"source must be 'model' or 'simulator', got {source!r}")


def train_and_evaluate_agg(
    out: PathLike,
    lam: float,
    *,
    source: str = "model",
    params: PathLike | None = None,
    obs: PathLike | None = None,
    split: str | None = None,
    timesteps: int | None = None,
    seed: int = 0,
    n_envs: int = 32,
    eval_episodes: int = 10_000,
    compare_pomdp: bool = True,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    router: str = "agg",
    convergence: Any = "default",
) -> dict[str, Any]:
    """Train TRIM-Agg (or TRIM-Seq, ``router="seq"``) for one λ into ``out``, resuming there; then evaluate it.

    Training is :func:`~trim_pomdp.routers.rl.training.train_router`: by default until the return on a fixed
    held-out batch stops improving (``convergence``, or ``None`` for exactly ``timesteps`` steps; ``timesteps``
    is the cap, default :data:`~trim_pomdp.routers.rl.grids.DEFAULT_MAX_TIMESTEPS`), with the learning curve
    written beside the router. The evaluation (``eval_episodes`` fresh episodes of the training source) is
    written to ``out/evaluation.json`` and returned: ``agg`` (the trained router, whichever it is; and, on the
    model's own process with ``compare_pomdp``, ``pomdp``, the exact policy's, and ``relative_gap``, the return
    the router leaves on the table) as :meth:`~trim_pomdp.routers.rollout.RolloutResult.to_dict` rows, with
    ``collapsed`` and ``stopped`` from training.
    """
    import time

    from trim_pomdp._internal.artifacts import write_json
    from trim_pomdp.registry import ROUTERS
    from trim_pomdp.routers.belief import BeliefRouter
    from trim_pomdp.routers.rl.grids import DEFAULT_CONVERGENCE, DEFAULT_MAX_TIMESTEPS
    from trim_pomdp.routers.rl.training import train_router
    from trim_pomdp.routers.rollout import rollout

    say = log or (lambda msg: None)
    if not (lam >= 0):
        raise InvalidParameterError(f"--lambda must be >= 0, got {lam}")
    factory, card, trim = agg_training_source(source, params=params, obs=obs, lam=lam, split=split)
    conv = DEFAULT_CONVERGENCE if convergence == "default" else convergence
    cap = timesteps or DEFAULT_MAX_TIMESTEPS
    budget = f"until the held-out return stops improving, at most {cap} steps" if conv else f"{cap} steps"
    label = ROUTERS[router].label if router in ROUTERS else router
    say(f"training {label} for λ={lam:g} on {card['type']} ({budget}, {n_envs} envs, seed {seed})")
    out_dir = Path(out)
    trained = train_router(
        router, factory, lam, out=out_dir, convergence=conv, timesteps=cap, seed=seed, n_envs=n_envs,
        progress=progress, source_card=card, log=say,
    )  # fmt: skip
    rcard = trained.card
    secs = rcard["train_seconds"]
    say(f"saved the router to {out_dir} ({secs:.0f} s of training, stopped: {rcard['stopped']})")
    results: dict[str, Any] = {
        "lam": lam, "router": router, "source": card, "train_seconds": rcard["train_seconds"],
        "stopped": rcard["stopped"], "timesteps_trained": rcard["timesteps_trained"],
        "collapsed": trained.collapsed, "heldout_best": (rcard.get("convergence") or {}).get("best"),
    }  # fmt: skip
    if eval_episodes:
        reward = float(trim.params.reward) if trim is not None else 1.0
        say(f"evaluating on {eval_episodes} fresh episodes")
        res = rollout(trained.router, factory(), eval_episodes, lam=lam, reward=reward, seed=seed + 1)
        results["agg"] = res.to_dict()
        if trim is not None and compare_pomdp:
            from trim_pomdp.pomdp import solve_trim

            say("solving the exact POMDP policy for comparison")
            t0 = time.perf_counter()
            policy = solve_trim(trim)
            results["pomdp_solve_seconds"] = time.perf_counter() - t0
            exact = BeliefRouter(policy, trim, gate=False)
            pres = rollout(exact, factory(), eval_episodes, lam=lam, reward=reward, seed=seed + 1)
            results["pomdp"] = pres.to_dict()
            results["relative_gap"] = (pres.ret - res.ret) / abs(pres.ret) if pres.ret else None
    write_json(out_dir / "evaluation.json", results)
    return results
