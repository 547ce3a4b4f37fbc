"""``trim-pomdp demo --out DIR``: the main job on the shipped defaults, in a few minutes.

Loads the shipped observation model, estimates the POMDP's parameters from labelled simulated training
queries, solves a λ sweep with the finite-horizon solver, sweeps TRIM-Thr, a cheap TRIM-Agg, AutoMix-PRM, the
oracle and the random query routers on the same simulated evaluation queries, prints the Table-1-style table
and writes the curves (:func:`trim_pomdp.evaluation.runner.evaluate_simulated`).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import click

from trim_pomdp.cli._common import lambda_option, out_option, seed_option
from trim_pomdp.exceptions import TrimPomdpError

__all__ = ["DEMO_AGG_LAMBDAS", "DEMO_AGG_TIMESTEPS", "command"]

#: TRIM-Agg in the demo: one λ, a short PPO run (the demo must finish in ~3 minutes on 2 cores).
DEMO_AGG_LAMBDAS = (1e-3,)
DEMO_AGG_TIMESTEPS = 30_000


@click.command("demo")
@out_option("Output folder.")
@click.option(
    "--n-queries",
    type=click.IntRange(min=50),
    default=2000,
    show_default=True,
    help="Simulated evaluation queries.",
)
@click.option(
    "--agg-timesteps",
    type=click.IntRange(min=1),
    default=DEMO_AGG_TIMESTEPS,
    show_default=True,
    help="PPO timesteps per λ for TRIM-Agg (kept small so the demo is quick).",
)
@click.option("--no-agg", is_flag=True, help="Skip TRIM-Agg (no torch / stable-baselines3 needed).")
@seed_option(help="Seed of the evaluation queries.")
@lambda_option(
    "POMDP λ grid: comma-separated or a log range LO:HI:N (default 0, 1e-5, 3e-5 and 15 values 1e-4 … 3e-2).",
    metavar="Λ",
)
def command(
    out_dir: Path, n_queries: int, agg_timesteps: int, no_agg: bool, seed: int, lambda_spec: str | None
) -> None:
    """Fit (shipped observation model), solve a λ sweep, evaluate every router on the default simulator,
    print the table and write the plot to OUT. Rerunning resumes. Scores and outcomes are SIMULATED.
    """
    from rich.console import Console

    from trim_pomdp.cli.evaluate import print_reports
    from trim_pomdp.cli.solve import parse_lambdas
    from trim_pomdp.evaluation.runner import evaluate_simulated
    from trim_pomdp.evaluation.simulator import load_default_simulator_params
    from trim_pomdp.evaluation.sweep import ALL_ROUTERS, DEFAULT_LAMBDAS, SweepSettings
    from trim_pomdp.pomdp import default_observation_model

    console = Console(width=max(Console().width, 120))
    t0 = time.perf_counter()
    routers = tuple(r for r in ALL_ROUTERS if not (no_agg and r == "agg"))
    if "agg" in routers and importlib.util.find_spec("stable_baselines3") is None:
        console.print(
            "[yellow]stable-baselines3 is not installed: skipping TRIM-Agg "
            "(pip install 'trim-pomdp\\[rl]' to include it)[/]"
        )
        routers = tuple(r for r in routers if r != "agg")
    try:
        obs = default_observation_model()
    except (FileNotFoundError, TrimPomdpError) as exc:
        raise click.ClickException(f"the demo needs the shipped observation model: {exc}") from None
    settings = SweepSettings(
        routers=routers,
        n_queries=n_queries,
        n_train=n_queries,
        seed=seed,
        lambdas=tuple(parse_lambdas(lambda_spec)) if lambda_spec else DEFAULT_LAMBDAS,
        agg_lambdas=DEMO_AGG_LAMBDAS,
        agg_timesteps=agg_timesteps,
    )
    params = load_default_simulator_params()
    _print_plan(console, obs, params, settings)
    report = evaluate_simulated(
        out_dir, settings, params, obs_model_loader=lambda: obs, extra_card={"demo": True}, log=console.log,
        progress=True,
    )  # fmt: skip
    print_reports(console, [report])
    console.print(
        f"plot: {out_dir / 'curves.png'}   table: {out_dir / 'table.md'}   records: {out_dir / 'records.csv'}"
    )
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s")


def _print_plan(console: Any, obs: Any, params: Any, settings: Any) -> None:
    from trim_pomdp.evaluation.simulator import SIMULATED_NOTE

    card = getattr(obs, "card", {}) or {}
    agg = "agg" in settings.routers
    console.print(f"[bold yellow]{SIMULATED_NOTE}[/]")
    console.print(
        f"1. fit: shipped observation model ({obs.n_bins}x{obs.n_bins} bins; PRM scores "
        f"{'SIMULATED' if card.get('simulated', True) else 'real'}; {card.get('prm', 'see its card')})\n"
        f"2. simulator: {params.weak_generator} -> {params.strong_generator}, ProcessBench '{params.split}' "
        f"statistics, {settings.n_queries} evaluation + {settings.n_train} training queries\n"
        f"3. solve: TRIM-POMDP for {len(settings.lambdas)} λ values (certified finite-horizon solver), "
        "parameters estimated from the labelled training queries\n"
        "4. evaluate: TRIM-POMDP, TRIM-Thr, "
        + ("TRIM-Agg, " if agg else "")
        + "AutoMix-PRM, oracle and random query routers on the same queries"
    )
    if agg:
        console.print(
            f"[yellow]TRIM-Agg here is CHEAP: {len(settings.agg_lambdas)} λ value(s) x {settings.agg_timesteps} "
            "PPO timesteps (the paper trains far longer); it is usually not converged and can be far from its "
            "best. For a fair TRIM-Agg use: trim-pomdp evaluate --agg-timesteps 300000 --out DIR[/]"
        )
