"""``trim-pomdp train-agg``: train the TRIM-Agg PPO router for one λ.

A thin wrapper around :func:`trim_pomdp.evaluation.runner.train_and_evaluate_agg`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trim_pomdp.cli._common import FiniteFloat, obs_option, out_option, seed_option

__all__ = ["command"]


@click.command("train-agg")
@click.option(
    "--lambda",
    "lam",
    type=FiniteFloat(min=0),
    required=True,
    metavar="Λ",
    help="Price of one M_s output token (in units of R).",
)
@out_option("Directory for the router.")
@click.option(
    "--source",
    type=click.Choice(["model", "simulator"]),
    default="model",
    show_default=True,
    help="Episode source: the TRIM-POMDP's own generative process, or the evaluation simulator.",
)
@click.option(
    "--timesteps",
    type=click.IntRange(min=1),
    default=300_000,
    show_default=True,
    help="PPO environment steps.",
)
@seed_option(help="Seed of PPO and of the environments (evaluation episodes use seed + 1).")
@click.option(
    "--n-envs", type=click.IntRange(min=1), default=8, show_default=True, help="Environments per PPO rollout."
)
@click.option(
    "--params",
    "params_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="TrimParams JSON for --source model (default: the shipped defaults).",
)
@obs_option("Observation model (.npz or directory) for --source model.")
@click.option(
    "--eval-episodes",
    type=click.IntRange(min=0),
    default=10_000,
    show_default=True,
    help="Episodes for the evaluation after training (0: skip).",
)
@click.option(
    "--compare-pomdp/--no-compare-pomdp",
    default=True,
    show_default=True,
    help="With --source model, also evaluate the exact POMDP policy and report the gap.",
)
@click.option(
    "--split",
    type=click.Choice(["gsm8k", "math", "olympiadbench", "omnimath"]),
    default=None,
    help="ProcessBench split whose statistics drive --source simulator (default: the simulator's own).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Report training progress.")
def command(
    lam: float,
    out_dir: Path,
    source: str,
    timesteps: int,
    seed: int,
    n_envs: int,
    params_path: Path | None,
    obs_path: Path | None,
    eval_episodes: int,
    compare_pomdp: bool,
    split: str | None,
    progress: bool,
) -> None:
    """Train TRIM-Agg (PPO, the paper's Table 3) for one λ and save it to OUT.

    Writes OUT/agg_policy.npz, OUT/agg.json, OUT/ppo.zip and OUT/evaluation.json. Training checkpoints to
    OUT/ppo.zip + OUT/checkpoint.json as it goes; running the same command again resumes from there.
    """
    from rich.console import Console

    from trim_pomdp.evaluation.runner import train_and_evaluate_agg

    console = Console(stderr=True)
    results = train_and_evaluate_agg(
        out_dir, lam, source=source, params=params_path, obs=obs_path, split=split, timesteps=timesteps,
        seed=seed, n_envs=n_envs, eval_episodes=eval_episodes, compare_pomdp=compare_pomdp, progress=progress,
        log=console.print,
    )  # fmt: skip
    if "agg" in results:
        _print_results(console, results, eval_episodes)


def _print_results(console: Any, results: dict[str, Any], episodes: int) -> None:
    from rich.table import Table

    rows = [("TRIM-Agg", results["agg"])]
    if "pomdp" in results:
        rows.append(("TRIM-POMDP (exact)", results["pomdp"]))
    table = Table(title=f"{episodes} evaluation episodes ({results['source']['type']}, λ={results['lam']:g})")
    for col in ("router", "return", "accuracy", "M_s tokens", "regenerate rate"):
        table.add_column(col)
    for name, r in rows:
        table.add_row(
            name,
            f"{r['ret']:.4f} ± {r['ret_se']:.4f}",
            f"{r['accuracy']:.4f}",
            f"{r['strong_tokens']:.1f}",
            f"{r['regenerate_rate']:.3f}",
        )
    console.print(table)
    if results.get("relative_gap") is not None:
        console.print(f"return gap to the exact POMDP policy: {100 * results['relative_gap']:.2f}%")
