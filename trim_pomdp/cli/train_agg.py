"""``trim-pomdp train-agg``: train TRIM-Agg (or TRIM-Seq) with PPO for one λ.

A thin wrapper around one library call per kind of episodes:
:func:`trim_pomdp.evaluation.runner.train_and_evaluate_agg` for the TRIM-POMDP's own process and the simulator,
:func:`trim_pomdp.generation.episodes.train_live` for live generations (the model options of ``trim-pomdp run``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import click

from trim_pomdp.cli._common import FiniteFloat, obs_option, out_option, seed_option
from trim_pomdp.routers.rl.grids import DEFAULT_CONVERGENCE, DEFAULT_MAX_TIMESTEPS

__all__ = ["command"]

#: The options of ``trim-pomdp run`` that ``--source live`` takes too (the dataset, the models, the caps).
LIVE_OPTIONS = (
    "dataset", "data_dir", "weak", "weak_model", "weak_mode", "weak_template", "weak_tokenizer", "step_detection",
    "strong", "strong_url", "claude_step_mode", "claude_continuation", "claude_prompt_cache", "prm", "prm_model",
    "prm_batch_size", "device", "limit", "cache", "max_steps", "max_tokens_per_step", "max_solution_tokens",
    "answer_format", "repetition", "temperature", "strong_temperature", "timeout", "max_retries",
)  # fmt: skip


def _live_options() -> list[click.Parameter]:
    """Copies of ``run``'s own options (one spelling and help text for both commands), none required here."""
    from trim_pomdp.cli.run import command as run_command

    out = []
    for p in run_command.params:
        if p.name in LIVE_OPTIONS:
            q = copy.copy(p)
            q.required = False
            out.append(q)
    return out


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
    "--router",
    "router_kind",
    type=click.Choice(["agg", "seq"]),
    default="agg",
    show_default=True,
    help="TRIM-Agg (MLP on aggregated features) or TRIM-Seq (transformer on the score sequence).",
)
@click.option(
    "--source",
    type=click.Choice(["model", "simulator", "live"]),
    default="model",
    show_default=True,
    help="Episodes: the TRIM-POMDP's own process, the evaluation simulator, or live generations "
    "(--dataset, --weak, --strong, --prm, ... as for `trim-pomdp run`).",
)
@click.option(
    "--timesteps",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_TIMESTEPS,
    show_default=True,
    help="PPO environment steps: the cap (training stops earlier once the held-out return stops improving), "
    "or the whole budget with --fixed-budget.",
)
@click.option(
    "--fixed-budget", is_flag=True, help="Train exactly --timesteps steps (no held-out convergence check)."
)
@click.option(
    "--eval-every",
    type=click.IntRange(min=1),
    default=DEFAULT_CONVERGENCE.eval_every,
    show_default=True,
    help="Steps between two evaluations on the held-out batch.",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=DEFAULT_CONVERGENCE.patience,
    show_default=True,
    help="Stop after this many held-out evaluations in a row without an improvement.",
)
@click.option(
    "--min-timesteps",
    type=click.IntRange(min=0),
    default=DEFAULT_CONVERGENCE.min_timesteps,
    show_default=True,
    help="Never stop for convergence before this many steps.",
)
@click.option(
    "--heldout-episodes",
    type=click.IntRange(min=1),
    default=DEFAULT_CONVERGENCE.eval_episodes,
    show_default=True,
    help="Held-out episodes (--source model or simulator), the same at every evaluation.",
)
@click.option(
    "--holdout",
    type=FiniteFloat(min=0),
    default=0.2,
    show_default=True,
    help="--source live: problems held out for the convergence check (a fraction below 1, or a count).",
)
@seed_option(help="Seed of PPO and of the environments (evaluation episodes use seed + 1).")
@click.option(
    "--n-envs",
    type=click.IntRange(min=1),
    default=None,
    help="Episodes in flight (default 32; 16 with --source live).",
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
    help="Episodes for the evaluation after training (0: skip; not with --source live).",
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
    router_kind: str,
    source: str,
    timesteps: int,
    fixed_budget: bool,
    eval_every: int,
    patience: int,
    min_timesteps: int,
    heldout_episodes: int,
    holdout: float,
    seed: int,
    n_envs: int | None,
    params_path: Path | None,
    obs_path: Path | None,
    eval_episodes: int,
    compare_pomdp: bool,
    split: str | None,
    progress: bool,
    **live: Any,
) -> None:
    """Train TRIM-Agg (PPO, the paper's Table 3) or TRIM-Seq for one λ and save it to OUT.

    By default training stops once the return on a fixed held-out batch has stopped improving (at most
    --timesteps steps) and keeps the best router evaluated. Writes the router (agg_policy.npz + agg.json, or
    seq_policy.npz + seq.json), learning_curve.csv/.json/.png, a checkpoint (checkpoint.npz + checkpoint.json:
    running the same command again resumes from it) and evaluation.json (training.json with --source live).

    With --source live every episode is a problem of --dataset solved step by step by the real models, and every
    generation and PRM score is cached (--cache, default OUT/cache.sqlite): share the cache between λ values
    and routers, and they reuse each other's calls.
    """
    from rich.console import Console

    from trim_pomdp.exceptions import InvalidParameterError
    from trim_pomdp.routers.rl.convergence import Convergence

    console = Console(stderr=True)
    _check_source_options(source)
    conv = None
    if not fixed_budget:
        conv = Convergence(
            eval_every=eval_every,
            eval_episodes=heldout_episodes,
            patience=patience,
            min_timesteps=min_timesteps,
        )
    common: dict[str, Any] = {
        "router": router_kind,
        "convergence": conv,
        "timesteps": timesteps,
        "seed": seed,
    }
    if source == "live":
        from trim_pomdp.generation.episodes import train_live
        from trim_pomdp.generation.experiment import RunConfig

        if not live.get("dataset"):
            raise InvalidParameterError("--source live needs --dataset NAME|FILE (the problems to train on)")
        run = RunConfig(router=f"{router_kind} training", out_dir=out_dir, **live)
        hold: float | int = int(holdout) if holdout >= 1 else holdout
        res = train_live(run, lam, out_dir, holdout=hold, n_envs=n_envs or 16, progress=progress,
                         log=console.print, **common)  # fmt: skip
        _print_live(console, res)
        return
    from trim_pomdp.evaluation.runner import train_and_evaluate_agg

    results = train_and_evaluate_agg(
        out_dir, lam, source=source, params=params_path, obs=obs_path, split=split, n_envs=n_envs or 32,
        eval_episodes=eval_episodes, compare_pomdp=compare_pomdp, progress=progress, log=console.print, **common,
    )  # fmt: skip
    if results.get("collapsed"):
        console.print(f"[yellow]the router collapsed to a constant policy: it {results['collapsed']}[/]")
    if "agg" in results:
        _print_results(console, results, eval_episodes)


command.params.extend(_live_options())


#: Options that only ``--source model`` / ``simulator`` read.
SIMULATED_OPTIONS = ("params_path", "obs_path", "split", "heldout_episodes", "eval_episodes", "compare_pomdp")


def _check_source_options(source: str) -> None:
    """Refuse an option given on the command line that the chosen ``--source`` would ignore."""
    from click.core import ParameterSource

    from trim_pomdp.exceptions import InvalidParameterError

    ctx = click.get_current_context()
    given = [
        p for p in ctx.command.params
        if p.name is not None and ctx.get_parameter_source(p.name) is ParameterSource.COMMANDLINE
    ]  # fmt: skip
    wrong = [p for p in given if p.name in (SIMULATED_OPTIONS if source == "live" else LIVE_OPTIONS)]
    if wrong:
        names = ", ".join(p.opts[0] for p in wrong)
        other = "--source model or simulator" if source == "live" else "--source live"
        raise InvalidParameterError(f"{names}: only read with {other}, not with --source {source}")


def _print_live(console: Any, res: dict[str, Any]) -> None:
    best = res.get("heldout_best") or {}
    cache = res["cache"]
    rate = "n/a" if cache["hit_rate"] is None else f"{100 * cache['hit_rate']:.1f}%"
    sps = res.get("steps_per_second")
    console.print(
        f"λ={res['lam']:g}: {res['timesteps_trained']} PPO steps ({'n/a' if sps is None else f'{sps:.2f}'} steps/s, "
        f"stopped: {res['stopped']}); held-out return {best.get('ret', float('nan')):.4f}, accuracy "
        f"{best.get('accuracy', float('nan')):.3f}, M_s tokens {best.get('strong_tokens', float('nan')):.1f}; "
        f"cache: {cache['hits']} hits, {cache['misses']} misses ({rate} hits)"
    )
    if res.get("collapsed"):
        console.print(f"[yellow]the router collapsed to a constant policy: it {res['collapsed']}[/]")


def _print_results(console: Any, results: dict[str, Any], episodes: int) -> None:
    from rich.table import Table

    from trim_pomdp.registry import ROUTERS

    rows = [(ROUTERS[results.get("router", "agg")].label, results["agg"])]
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
