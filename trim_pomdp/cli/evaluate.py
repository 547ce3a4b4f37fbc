"""``trim-pomdp evaluate``: sweep routers on the simulator (or summarise records) into tables and curves.

A thin wrapper around :func:`trim_pomdp.evaluation.runner.evaluate`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from trim_pomdp.cli._common import data_dir_option, lambda_option, obs_option, out_option, seed_option
from trim_pomdp.cli.solve import parse_lambdas
from trim_pomdp.evaluation.sweep import (
    ALL_ROUTERS,
    DEFAULT_AGG_TIMESTEPS,
    DEFAULT_LAMBDAS,
)

__all__ = ["command", "parse_floats", "print_reports"]


def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """``"0.2,0.5"`` → (0.2, 0.5); ``None`` passes through."""
    if text is None:
        return None
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not vals:
        raise click.BadParameter(f"{what} is empty")
    return vals


def print_reports(console: Any, reports: list[Any], comparisons: bool = True) -> None:
    """The Table-1-style table of each report (and, for sweeps, the comparisons read off it)."""
    from trim_pomdp.evaluation.tables import comparison_lines, rich_table

    for title, _, summary in reports:
        console.print(rich_table(summary, title=title))
        for line in comparison_lines(summary) if comparisons else ():
            console.print(f"  {line}")


def _obs_loader(path: Path | None) -> Any:
    if path is None:
        return None
    from trim_pomdp.pomdp import load_observation_model

    return lambda: load_observation_model(path)


@click.command("evaluate")
@click.option(
    "--routers",
    default=",".join(ALL_ROUTERS),
    show_default=True,
    help="Comma-separated routers to sweep (add seq for TRIM-Seq).",
)
@click.option(
    "--simulator",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Simulator parameters JSON (one split, or a multi-split file like the shipped default).",
)
@click.option(
    "--records",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Summarise existing per-query records (e.g. from `trim-pomdp run`) instead of simulating.",
)
@click.option(
    "--split",
    default=None,
    help="ProcessBench split whose statistics the simulator uses, train and eval (default: math, or the "
    "split of a single-split --simulator file).",
)
@click.option(
    "--train-split", default=None, help="Cross-dataset: fit/train routers on this split's statistics..."
)
@click.option(
    "--eval-split", default=None, help="...and evaluate on these (comma-separated), one folder each."
)
@data_dir_option("Re-estimate the simulator statistics per split from ProcessBench <split>.json files here.")
@click.option(
    "--n-queries",
    type=click.IntRange(min=10),
    default=2000,
    show_default=True,
    help="Simulated evaluation queries (the same for every router and knob).",
)
@click.option(
    "--n-train",
    type=click.IntRange(min=10),
    default=2000,
    show_default=True,
    help="Simulated labelled training queries (POMDP estimates, AutoMix bins, threshold grid).",
)
@seed_option(help="Seed of the evaluation queries.")
@click.option(
    "--train-seed", type=int, default=1, show_default=True, help="Seed of training queries and PPO."
)
@lambda_option(
    "POMDP λ grid: comma-separated or a log range LO:HI:N (default 0, 1e-5, 3e-5 and 15 values 1e-4 … 3e-2).",
    metavar="Λ",
)
@click.option(
    "--agg-lambdas",
    default=None,
    help="TRIM-Agg/TRIM-Seq λ grid (default: the paper's grid of the training split's family, e.g. 8e-4 … 3e-4 "
    "for math).",
)
@click.option(
    "--agg-timesteps",
    type=click.IntRange(min=1),
    default=DEFAULT_AGG_TIMESTEPS,
    show_default=True,
    help="Cap on PPO timesteps per λ for TRIM-Agg/TRIM-Seq (training stops once the held-out return stops "
    "improving).",
)
@click.option("--thresholds", default=None, help="TRIM-Thr grid (default 0..1 by 0.05 plus score quantiles).")
@obs_option("Observation model (dir or .npz) for the POMDP.")
@click.option("--pomdp-gate", is_flag=True, help="Use BeliefRouter's re-planning gate (δ = 0.375).")
@out_option("Output folder.")
def command(
    routers: str,
    simulator: Path | None,
    records: Path | None,
    split: str | None,
    train_split: str | None,
    eval_split: str | None,
    data_dir: Path | None,
    n_queries: int,
    n_train: int,
    seed: int,
    train_seed: int,
    lambda_spec: str | None,
    agg_lambdas: str | None,
    agg_timesteps: int,
    thresholds: str | None,
    obs_path: Path | None,
    pomdp_gate: bool,
    out_dir: Path,
) -> None:
    """Sweep each router's knob on simulated queries (or summarise RECORDS) and write records.csv,
    summary.json, table.md, curves.csv and curves.png into OUT. Rerun the same command to resume a killed run.

    Scores and outcomes of the simulator are SIMULATED (calibrated to ProcessBench); every output says so.
    """
    from rich.console import Console

    from trim_pomdp.evaluation.runner import evaluate
    from trim_pomdp.evaluation.simulator import SIMULATED_NOTE
    from trim_pomdp.evaluation.sweep import SweepSettings

    console = Console(width=max(Console().width, 120))
    settings = SweepSettings(
        routers=tuple(r.strip() for r in routers.split(",") if r.strip()),
        n_queries=n_queries,
        n_train=n_train,
        seed=seed,
        train_seed=train_seed,
        lambdas=tuple(parse_lambdas(lambda_spec)) if lambda_spec else DEFAULT_LAMBDAS,
        agg_lambdas=tuple(parse_lambdas(agg_lambdas, "--agg-lambdas")) if agg_lambdas else None,
        agg_timesteps=agg_timesteps,
        thresholds=parse_floats(thresholds, "--thresholds"),
        pomdp_gate=pomdp_gate,
    )
    t0 = time.perf_counter()
    if records is None:
        console.print(f"[bold yellow]{SIMULATED_NOTE}[/]")
        if "agg" in settings.routers or "seq" in settings.routers:
            lams = settings.agg_lambdas
            grid = "the paper's grid" if lams is None else ", ".join(f"{x:g}" for x in lams)
            console.print(
                f"TRIM-Agg/TRIM-Seq: PPO per λ ({grid}) until the held-out return stops improving, at most "
                f"{settings.agg_timesteps} timesteps."
            )
    reports = evaluate(
        out_dir, settings, records=records, simulator=simulator, data_dir=data_dir, split=split,
        train_split=train_split, eval_splits=[x.strip() for x in (eval_split or "").split(",") if x.strip()],
        obs_model_loader=_obs_loader(obs_path), log=console.log, progress=True,
    )  # fmt: skip
    print_reports(console, reports, comparisons=records is None)
    if records is not None:
        click.echo(f"wrote {out_dir}/summary.json, table.md, curves.csv, curves.png")
    else:
        click.echo(
            f"wrote {out_dir} in {time.perf_counter() - t0:.0f} s (records.csv, summary.json, table.md, curves.*)"
        )
