"""``trim-pomdp solve --lambda 5e-4 --out DIR``: build and solve the TRIM-POMDP into policies.

One λ writes ``DIR/policy.npz`` + ``DIR/policy.json``; a list (``1e-4,5e-4``) or log range (``1e-4:1e-3:20``)
writes ``DIR/lambda_<λ>/policy.*`` per value plus ``DIR/summary.json``. A sweep resumes: a λ whose policy
exists with the same configuration is not solved again (:func:`trim_pomdp.pomdp.sweep.solve_lambdas`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from trim_pomdp.cli._common import (
    data_dir_option,
    lambda_option,
    obs_option,
    option,
    out_option,
    seed_option,
    time_limit_option,
)
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.registry import SARSOP_BACKENDS, SOLVERS, canonical_sarsop_backend, canonical_solver

__all__ = ["RegisteredName", "command", "parse_lambdas"]


class RegisteredName(click.ParamType):
    """A name from :mod:`trim_pomdp.registry`: help shows the registered names, older spellings still parse."""

    name = "name"

    def __init__(self, names: Sequence[str], canonical: Callable[[str], str]) -> None:
        self.names = tuple(names)
        self.canonical = canonical

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(self.names) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return self.canonical(str(value))
        except InvalidParameterError as exc:
            self.fail(str(exc), param, ctx)


def parse_lambdas(text: str, param_hint: str = "--lambda") -> list[float]:
    """:func:`trim_pomdp.pomdp.sweep.parse_lambdas` with its errors as :class:`click.BadParameter`."""
    from trim_pomdp.pomdp.sweep import parse_lambdas as parse

    try:
        return parse(text)
    except InvalidParameterError as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None


@click.command("solve")
@lambda_option(
    "Price per strong token: a value (5e-4), a list (1e-4,5e-4) or a log range LO:HI:N. "
    "Default: the parameters' λ (5e-4 in the shipped defaults).",
    default=None,
    metavar="Λ",
)
@out_option("Output directory for policy.npz/policy.json (one sub-directory per λ for several).")
@obs_option("Observation model (observation_model.json/.npz or its folder).")
@click.option(
    "--params",
    "params_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TRIM parameters JSON (TrimParams.to_json). Default: the shipped defaults.",
)
@click.option(
    "--weak-generator", default=None, help="Estimate parameters from ProcessBench for this weak generator."
)
@click.option(
    "--strong-generator", default=None, help="... and this strong generator (both required together)."
)
@data_dir_option("Folder of ProcessBench <split>.json files for the estimation (default: the hub dataset).")
@click.option(
    "--tokenizer",
    default=None,
    help="Hugging Face tokenizer for step lengths in the estimation (default: the ceil(len/4) proxy).",
)
@click.option("--p-w", type=float, default=None, help="Override p_w, the weak model's next-step accuracy.")
@click.option("--p-s", type=float, default=None, help="Override p_s, the strong model's next-step accuracy.")
@click.option("--horizon", type=int, default=None, help="Override the horizon H (number of steps).")
@click.option(
    "--strong-weak-ratio", type=float, default=None, help="Override the strong/weak step-length ratio."
)
@click.option(
    "--difficulty-classes",
    default=None,
    metavar="D|auto",
    help="Latent difficulty classes with their own p_w, p_s, estimated from --difficulty-data: D classes, or "
    "auto (D by held-out likelihood); 1 is the pooled model. Default: the parameters' own (none shipped).",
)
@click.option(
    "--difficulty-data",
    default=None,
    metavar="SOURCE",
    help="Per-problem data for --difficulty-classes: simulator (the default simulator's training queries, "
    "SIMULATED), processbench (the items of --weak/--strong-generator) or a scored-items JSONL. Default: "
    "processbench with the two generators, else simulator.",
)
@click.option(
    "--difficulty-queries",
    type=int,
    default=2000,
    show_default=True,
    help="Simulated training queries for --difficulty-data simulator.",
)
@click.option(
    "--precision", type=float, default=1e-3, show_default=True, help="Target gap of the bounds at b0."
)
@time_limit_option(None, help="Seconds per solve (bounds stay certified).")
@click.option(
    "--mode",
    type=click.Choice(["auto", "exact", "grid"]),
    default="auto",
    show_default=True,
    help="Mode of the finite-horizon solver.",
)
@option(
    "--solver",
    type=RegisteredName(list(SOLVERS), canonical_solver),
    default="finite-horizon",
    show_default=True,
    help="Solver (native is the finite-horizon solver's old name).",
)
@option(
    "--sarsop-backend",
    type=RegisteredName(list(SARSOP_BACKENDS), canonical_sarsop_backend),
    default="sarsop.jl",
    show_default=True,
    help="With --solver sarsop: APPL's SARSOP through SARSOP.jl (as in the paper), NativeSARSOP.jl, or "
    "APPL's pomdpsol run directly without Julia (appl; pomdpsol on PATH or TRIM_POMDP_POMDPSOL).",
)
@click.option(
    "--mc-episodes",
    type=int,
    default=None,
    help="Monte Carlo episodes under the model for accuracy/strong tokens per λ (0: skip). "
    "Default 100000 for one λ, 20000 per λ in a sweep.",
)
@seed_option(help="Seed of the Monte Carlo episodes.")
@click.option(
    "--plot", is_flag=True, help="Also write regions.png (regenerate regions per t) per λ (needs matplotlib)."
)
@click.option(
    "--regions/--no-regions", default=True, show_default=True, help="Print the regenerate-region table."
)
def command(
    lambda_spec: str | None,
    out_dir: Path,
    obs_path: Path | None,
    params_path: Path | None,
    weak_generator: str | None,
    strong_generator: str | None,
    data_dir: Path | None,
    tokenizer: str | None,
    p_w: float | None,
    p_s: float | None,
    horizon: int | None,
    strong_weak_ratio: float | None,
    difficulty_classes: str | None,
    difficulty_data: str | None,
    difficulty_queries: int,
    precision: float,
    time_limit: float | None,
    mode: str,
    solver: str,
    sarsop_backend: str,
    mc_episodes: int | None,
    seed: int,
    plot: bool,
    regions: bool,
) -> None:
    """Build the TRIM-POMDP and solve it for one or more λ; print bounds, accuracy and strong tokens."""
    from rich.console import Console

    from trim_pomdp.pomdp import ModelProcess, load_trim_pomdp
    from trim_pomdp.pomdp.sweep import solve_lambdas
    from trim_pomdp.routers.rollout import rollout

    if not precision > 0 and mode != "exact":
        raise click.BadParameter(f"must be > 0, got {precision}", param_hint="--precision")
    if mc_episodes is not None and (mc_episodes < 0 or mc_episodes == 1):
        raise click.BadParameter("must be 0 (skip) or >= 2", param_hint="--mc-episodes")
    trim = load_trim_pomdp(
        params_path, obs_path, weak_generator=weak_generator, strong_generator=strong_generator,
        data_dir=data_dir, tokenizer=tokenizer, p_w=p_w, p_s=p_s, horizon=horizon,
        strong_weak_ratio=strong_weak_ratio,
    )  # fmt: skip
    lams = parse_lambdas(lambda_spec) if lambda_spec is not None else [trim.params.lam]
    n_mc = mc_episodes if mc_episodes is not None else (100_000 if len(lams) == 1 else 20_000)
    console = Console(width=max(Console().width, 110))
    if difficulty_classes is not None:
        trim = _with_classes(
            console, trim, difficulty_classes, difficulty_data, difficulty_queries, seed,
            weak_generator=weak_generator, strong_generator=strong_generator, data_dir=data_dir,
        )  # fmt: skip
    elif difficulty_data is not None:
        raise click.UsageError("--difficulty-data needs --difficulty-classes D (or auto)")
    p, n = trim.params, int(trim.obs_model.n_bins)
    console.print(
        f"TRIM-POMDP: p_w={p.p_w:.4f} p_s={p.p_s:.4f} H={p.horizon} K={p.n_buckets} bins={n}×{n} solver={solver}"
    )
    if p.difficulty is not None:
        dc = p.difficulty
        console.print(
            f"difficulty classes D={dc.n_classes}: prior {_fmt(dc.prior)}, p_w {_fmt(dc.p_w)}, p_s {_fmt(dc.p_s)}"
        )
    result = solve_lambdas(
        trim, lams, out_dir, solver=solver, precision=precision, time_limit=time_limit, mode=mode,
        sarsop_backend=sarsop_backend, plot=plot,
        evaluate=(lambda pol, tp: rollout(pol, ModelProcess(tp), n_mc, seed=seed)) if n_mc else None,
    )  # fmt: skip
    if len(lams) == 1:
        _print_one(console, result.rows[0], result.policies[lams[0]], out_dir, regions)
    else:
        _print_sweep(console, result.rows)
        console.print(f"wrote {len(result.rows)} policies and {result.summary_path}")


def _fmt(v: Any) -> str:
    return "[" + ", ".join(f"{x:.4f}" for x in v) + "]"


def _with_classes(
    console: Any,
    trim: Any,
    spec: str,
    source: str | None,
    queries: int,
    seed: int,
    **where: Any,
) -> Any:
    """``trim`` with difficulty classes estimated as the options say (``1``: the pooled model)."""
    from trim_pomdp.pomdp import TrimPOMDP
    from trim_pomdp.pomdp.difficulty import load_evidence, with_difficulty

    n_classes: int | str = "auto" if spec.strip().lower() == "auto" else -1
    if n_classes != "auto":
        try:
            n_classes = int(spec)
        except ValueError:
            raise click.BadParameter(
                f"must be an integer >= 1 or auto, got {spec!r}", param_hint="--difficulty-classes"
            ) from None
        if n_classes < 1:
            raise click.BadParameter(
                f"must be >= 1 (1 is the pooled model), got {n_classes}", param_hint="--difficulty-classes"
            )
        if n_classes == 1:
            return TrimPOMDP(trim.params.replace(difficulty=None), trim.obs_model)
    from trim_pomdp.evaluation.simulator import Simulator

    ev = load_evidence(source, queries=queries, seed=seed, simulator=Simulator, **where)
    params, warned = with_difficulty(trim.params, ev, n_classes, seed=seed)
    for text in warned:
        console.print(f"warning: {text}", highlight=False, markup=False)
    card = params.difficulty.card
    held = ", ".join(f"D={k}: {v:.4f}" for k, v in card["heldout_loglik_per_problem"].items())
    console.print(
        f"estimated {card['n_classes']} difficulty classes from {ev.n} problems ({ev.card.get('source')}); "
        f"held-out log-likelihood per problem {held} (auto: D={card['heldout_choice']})",
        highlight=False,
        markup=False,
    )
    return TrimPOMDP(params, trim.obs_model)


def _print_one(console: Any, row: dict[str, Any], policy: Any, out: Path, regions: bool) -> None:
    from trim_pomdp.pomdp import format_region_table, regenerate_region_table

    info = policy.info
    console.print(f"λ = {row['lambda']:g}: solved in {info.seconds:.3f} s ({info.iterations} passes)")
    console.print(
        f"V(b0) ∈ [{info.lower_bound:.6f}, {info.upper_bound:.6f}] (gap {info.gap:.2e}, "
        f"{'converged' if info.converged else 'NOT converged'})"
    )
    if "accuracy" in row:
        console.print(
            f"Monte Carlo under the model ({row['mc_episodes']} episodes): accuracy "
            f"{row['accuracy']:.4f} ± {row['accuracy_se']:.4f}, strong tokens "
            f"{row['strong_tokens']:.2f} ± {row['strong_tokens_se']:.2f}, return "
            f"{row['mc_return']:.4f} ± {row['mc_return_se']:.4f}"
        )
    if regions:
        console.print(
            "Regenerate region (non-final steps): smallest b(S2) on the S0–S2 edge from which "
            "`regenerate` is chosen, and % of the simplex"
        )
        table = format_region_table(regenerate_region_table(policy, resolution=30))
        console.print(table, highlight=False, markup=False)
    console.print(f"wrote {out / 'policy.npz'} and {out / 'policy.json'}")


def _print_sweep(console: Any, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=f"TRIM-POMDP policies ({len(rows)} λ values)")
    for col in ("λ", "lower", "upper", "gap", "seconds", "accuracy", "strong tokens"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['lambda']:.4g}",
            f"{r['lower_bound']:.5f}",
            f"{r['upper_bound']:.5f}",
            f"{r['gap']:.1e}",
            f"{r['solve_seconds']:.3f}",
            f"{r['accuracy']:.4f}" if "accuracy" in r else "-",
            f"{r['strong_tokens']:.1f}" if "strong_tokens" in r else "-",
        )
    console.print(table)
