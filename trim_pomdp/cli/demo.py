"""``trim-pomdp demo --out DIR``: the main job on the shipped defaults, in a few minutes.

Loads the shipped observation model, estimates the POMDP's parameters from labelled simulated training
queries,
solves a λ sweep with the native solver, sweeps TRIM-Thr, a cheap TRIM-Agg, AutoMix-PRM, the oracle and the
random
query routers on the same simulated evaluation queries, prints the Table-1-style table and writes the curves.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from trim_pomdp.exceptions import TrimPomdpError

__all__ = ["DEMO_AGG_LAMBDAS", "DEMO_AGG_TIMESTEPS", "command"]

#: TRIM-Agg in the demo: one λ, a short PPO run (the demo must finish in ~3 minutes on 2 cores).
DEMO_AGG_LAMBDAS = (1e-3,)
DEMO_AGG_TIMESTEPS = 30_000


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
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
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the evaluation queries.")
@click.option(
    "--lambdas", default=None, help="POMDP λ grid, comma-separated (default 15 values, 1e-4 … 3e-2)."
)
def command(
    out: Path, n_queries: int, agg_timesteps: int, no_agg: bool, seed: int, lambdas: str | None
) -> None:
    """Fit (shipped observation model), solve a λ sweep, evaluate every router on the default simulator,
    print the table and write the plot to OUT. Rerunning resumes. Scores and outcomes are SIMULATED.
    """
    from rich.console import Console

    from trim_pomdp.cli.evaluate import parse_floats, run_evaluation
    from trim_pomdp.evaluation.simulator import SIMULATED_NOTE, load_default_simulator_params
    from trim_pomdp.evaluation.sweep import ALL_ROUTERS, DEFAULT_LAMBDAS, SweepSettings

    lam_grid = parse_floats(lambdas, "--lambdas") or DEFAULT_LAMBDAS

    console = Console(width=max(Console().width, 120))
    t0 = time.perf_counter()
    routers = tuple(r for r in ALL_ROUTERS if not (no_agg and r == "agg"))
    if "agg" in routers:
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            console.print(
                "[yellow]stable-baselines3 is not installed: skipping TRIM-Agg "
                "(pip install 'trim-pomdp\\[rl]' to include it)[/]"
            )
            routers = tuple(r for r in routers if r != "agg")
    try:
        from trim_pomdp.pomdp import default_observation_model

        obs = default_observation_model()
    except (FileNotFoundError, TrimPomdpError) as exc:
        raise click.ClickException(f"the demo needs the shipped observation model: {exc}") from None
    card = getattr(obs, "card", {}) or {}
    params = load_default_simulator_params()
    console.print(f"[bold yellow]{SIMULATED_NOTE}[/]")
    console.print(
        f"1. fit: shipped observation model ({obs.n_bins}x{obs.n_bins} bins; PRM scores "
        f"{'SIMULATED' if card.get('simulated', True) else 'real'}; {card.get('prm', 'see its card')})\n"
        f"2. simulator: {params.weak_generator} -> {params.strong_generator}, ProcessBench '{params.split}' "
        f"statistics, {n_queries} evaluation + {n_queries} training queries\n"
        f"3. solve: TRIM-POMDP for {len(lam_grid)} λ values (native certified solver), parameters "
        "estimated from the labelled training queries\n"
        "4. evaluate: TRIM-POMDP, TRIM-Thr, "
        + ("TRIM-Agg, " if "agg" in routers else "")
        + "AutoMix-PRM, oracle and random query routers on the same queries"
    )
    if "agg" in routers:
        console.print(
            f"[yellow]TRIM-Agg here is CHEAP: {len(DEMO_AGG_LAMBDAS)} λ value(s) x {agg_timesteps} PPO "
            "timesteps "
            "(the paper trains far longer); it is usually not converged and can be far from its best. "
            "For a fair "
            "TRIM-Agg use: trim-pomdp evaluate --agg-timesteps 300000 --out DIR[/]"
        )
    settings = SweepSettings(
        routers=routers,
        n_queries=n_queries,
        n_train=n_queries,
        seed=seed,
        lambdas=lam_grid,
        agg_lambdas=DEMO_AGG_LAMBDAS,
        agg_timesteps=agg_timesteps,
    )
    try:
        run_evaluation(
            out,
            settings,
            params,
            params,
            title=f"{params.split} (simulated)",
            obs_loader=lambda: obs,
            console=console,
            extra_card={"demo": True},
        )
    except TrimPomdpError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"plot: {out / 'curves.png'}   table: {out / 'table.md'}   records: {out / 'records.csv'}")
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s")
