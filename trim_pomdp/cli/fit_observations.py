"""``trim-pomdp fit-observations``: fit the TRIM-POMDP observation function on scored solutions."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from trim_pomdp.cli._common import (
    FiniteFloat,
    cli_errors,
    data_dir_option,
    device_option,
    out_option,
    seed_option,
    time_limit_option,
)

__all__ = ["NO_SCORES_MESSAGE", "command"]

NO_SCORES_MESSAGE = (
    "no PRM scores given. Choose one of the three ways to get them:\n"
    "  --scores FILE     scored-items JSONL (any data: ProcessBench from `trim-pomdp score-processbench`, your own)\n"
    "  --prm MODEL       score ProcessBench now with a transformers PRM, e.g. Qwen/Qwen2.5-Math-PRM-7B, GPU\n"
    "  --synthetic-prm   simulated scores calibrated to Qwen2.5-Math-PRM-7B (no GPU; the card says simulated)"
)


def _parse_bandwidth(ctx: click.Context, param: click.Parameter, value: str) -> str | float:
    from trim_pomdp.exceptions import InvalidParameterError
    from trim_pomdp.observation_models.fitting import check_bandwidth

    try:
        return check_bandwidth(value if value in ("scott", "silverman", "cv") else float(value))
    except ValueError as exc:
        if isinstance(exc, InvalidParameterError):
            raise click.BadParameter(str(exc)) from None
        raise click.BadParameter(
            f"{value!r}: use scott, silverman, cv or a positive number such as 0.05"
        ) from None


def _parse_excluded(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """The splits to leave out: the default ones unless named with --split, none for 'none'."""
    from trim_pomdp.prm.scoring import DEFAULT_EXCLUDED_SPLITS

    if not value:
        asked = set(ctx.params.get("splits") or ())
        return tuple(s for s in DEFAULT_EXCLUDED_SPLITS if s not in asked)
    return () if value == ("none",) else value


def _command_line(params: dict[str, Any]) -> str:
    """The command that reproduces this run (for the card; file names only, no folders of this machine)."""
    args = ["trim-pomdp", "fit-observations", "--bench", params["bench"]]
    for s in params["splits"]:
        args += ["--split", s]
    for s in params["exclude_splits"] or ("none",):
        args += ["--exclude-split", s]
    if params["data_dir"] is not None:
        args += ["--data-dir", "PROCESSBENCH_DIR"]
    for flag, key in (("--scores", "scores"), ("--prm", "prm_model"), ("--prm-name", "prm_name")):
        if params[key] is not None:
            args += [flag, Path(params[key]).name if key == "scores" else str(params[key])]
    if params["synthetic_prm"]:
        args.append("--synthetic-prm")
    args += [
        "--supervision",
        params["supervision"],
        "--n-bins",
        str(params["n_bins"]),
        "--bins",
        params["bins"],
    ]
    args += ["--density-scale", params["density_scale"], "--bandwidth", str(params["bandwidth"])]
    if params["r_only"] is not None:
        args.append("--r-only" if params["r_only"] else "--with-m")
    if params["rho"] is not None:
        args += ["--rho", str(params["rho"])]
    args += ["--seed", str(params["seed"]), "--out", "OUT"]
    return shlex.join(args)


def _print_summary(model: Any, cv_folds: int) -> None:
    """Counts, bandwidths, the source of each t = 1 density, the held-out log-likelihood and the chain."""
    from rich.console import Console
    from rich.table import Table

    from trim_pomdp.constants import HIDDEN_CLASSES

    c = model.card
    held = c.get("held_out_loglik", {}).get("nats_per_step", {})
    kind = c.get("supervision", "steps")
    title = (
        f"Observation model ({'SIMULATED scores, ' if c.get('simulated') else ''}{', '.join(c.get('splits', []))}; "
        f"{kind} supervision"
        + (f"; held-out loglik: {cv_folds}-fold by item, nats/step, binned" if held else "")
        + ")"
    )
    summary = Table(title=title)
    counts = "expected steps" if kind == "outcome" else "steps"
    for col in ("class", counts, "t≥2", "t=1", "h (r, m)", "h t=1", "t=1 fit on", "held-out loglik"):
        summary.add_column(col, justify="left" if col in ("class", "t=1 fit on") else "right")
    for name in HIDDEN_CLASSES:
        bw = c["bandwidths"][name]
        summary.add_row(
            name,
            f"{c['counts'][name]:g}",
            f"{c['counts_t_ge_2'][name]:g}",
            f"{c['counts_t_eq_1'][name]:g}",
            ", ".join(f"{x:.4f}" for x in bw["pair"]),
            f"{bw['first'][0]:.4f}",
            "t=1 steps" if c["first_step_source"][name].startswith("first") else "all steps",
            f"{held[name]:.3f}" if held else "-",
        )
    console = Console()
    console.print(summary)
    chain = f"p_w = {c['p_w']:.4f}" if c.get("p_w") is not None else "p_w: -"
    chain += f", rho = {c['rho']:.4f}" if c.get("rho") is not None else ", rho: -"
    console.print(f"chain: {chain} ({c.get('rho_source', c.get('chain_source', ''))})")
    if kind == "outcome":
        em = c["em"]
        console.print(
            f"EM: {em['iterations']} iterations, {'converged' if em['converged'] else 'NOT converged'} "
            f"({em['stop_reason']}), log-likelihood {em['log_likelihood']:.2f} "
            f"({em['log_likelihood_per_step'][-1]:.5f} nats/step), {len(em['restarts'])} restart(s), "
            f"{em['seconds']:.1f} s"
        )


@click.command("fit-observations")
@click.option(
    "--bench",
    type=click.Choice(["processbench"]),
    default="processbench",
    show_default=True,
    help="Benchmark of --prm / --synthetic-prm (a --scores file may hold any data).",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    metavar="NAME",
    help="Split(s) to fit on, by the names the data holds (repeatable; default all of them).",
)
@click.option(
    "--exclude-split",
    "exclude_splits",
    multiple=True,
    metavar="NAME",
    callback=_parse_excluded,
    help="Split(s) to leave out (repeatable). Default: math (unless named by --split), whose ProcessBench "
    "problems are MATH test problems that overlap MATH-500; 'none' keeps every split.",
)
@data_dir_option("Folder with ProcessBench's <split>.json files; default: the hub's Qwen/ProcessBench.")
@click.option(
    "--scores",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Scored-items JSONL (from `trim-pomdp score-processbench`, or any data in that format).",
)
@click.option(
    "--prm",
    "prm_model",
    default=None,
    metavar="MODEL",
    help="Score ProcessBench first with this transformers PRM (writes OUT/scores.jsonl; resumable).",
)
@click.option("--synthetic-prm", is_flag=True, help="Use simulated scores (SyntheticPRM); the card says so.")
@click.option("--prm-name", default=None, help="Name of the PRM behind --scores, for the card.")
@click.option(
    "--supervision",
    type=click.Choice(["auto", "steps", "outcome"]),
    default="auto",
    show_default=True,
    help="steps: classes from first-error labels; outcome: EM from final-answer correctness alone; auto: steps "
    "where every record has step labels, outcome otherwise.",
)
@click.option(
    "--n-bins",
    type=click.IntRange(min=1, max=200),
    default=20,
    show_default=True,
    help="Bins per axis of the discretised observation (n x n pair bins).",
)
@click.option(
    "--bins",
    type=click.Choice(["uniform", "logit", "quantile"]),
    default=None,
    help="Bin edges: equal widths, logit-spaced (fine near 0 and 1), or per-axis quantiles of the training "
    "scores. Default: the library's default (see the observation-models guide).",
)
@click.option(
    "--density-scale",
    type=click.Choice(["score", "logit"]),
    default=None,
    help="Fit the class densities on the scores or on their logit scale. Default: the library's default.",
)
@click.option(
    "--bandwidth",
    default="scott",
    show_default=True,
    callback=_parse_bandwidth,
    help="scott | silverman (scaled by the data's spread) | cv | a number in [1e-4, 1] (kernel s.d.).",
)
@click.option(
    "--r-only/--with-m",
    default=None,
    help="Use only the newest score r, or also m = min of the earlier scores (which repeats evidence a belief "
    "filter has already seen). Default: with m for step supervision, r only for outcome supervision.",
)
@click.option(
    "--rho",
    type=FiniteFloat(min=0.0, max=1.0, max_open=True),
    default=None,
    help="Outcome supervision: fix P(right final answer | an erroneous step) instead of estimating it.",
)
@click.option(
    "--em-restarts", type=click.IntRange(min=1), default=3, show_default=True, help="Outcome: EM runs."
)
@click.option(
    "--em-tol",
    type=FiniteFloat(min=0.0, min_open=True),
    default=1e-6,
    show_default=True,
    help="Outcome: stop when the log-likelihood per step gains less (nats).",
)
@click.option(
    "--em-max-iter",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Outcome: iterations per run.",
)
@time_limit_option(60.0, help="Outcome: seconds for all EM runs together (then the best iterate is kept).")
@seed_option(help="Seed of the synthetic PRM, the CV folds and EM's restarts.")
@click.option(
    "--cv-folds",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Step supervision: folds (by item) for the held-out log-likelihood in the summary; 0 skips it.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="With --prm.")
@device_option("With --prm: torch device (default cuda if available).")
@click.option(
    "--plot", is_flag=True, help="Also write OUT/observation_densities.png (heatmaps; needs [plots])."
)
@out_option("Output folder for observation_model.npz and observation_model.json.")
@click.pass_context
@cli_errors
def command(ctx: click.Context, **p: Any) -> None:
    """Fit class-conditional reflected-KDE densities of (r_t, min r_{1:t-1}) per hidden class on scored solutions.

    Needs PRM scores from exactly one of --scores, --prm or --synthetic-prm. With step labels the classes come
    from them; with final-answer correctness only (--supervision outcome) they are inferred by EM. Writes
    OUT/observation_model.npz and OUT/observation_model.json (card) and prints counts, bandwidths, held-out
    log-likelihoods and the chain's p_w and rho.
    """
    from trim_pomdp.cli.score_processbench import print_processbench_metrics
    from trim_pomdp.observation_models.binning import DEFAULT_BINS, DEFAULT_DENSITY_SCALE
    from trim_pomdp.observation_models.supervision import fit_scored_items
    from trim_pomdp.prm.scoring import check_scoring_extras, processbench_scores

    given = [
        f
        for f, k in (("--scores", "scores"), ("--prm", "prm_model"), ("--synthetic-prm", "synthetic_prm"))
        if p[k]
    ]
    if not given:
        raise click.UsageError(NO_SCORES_MESSAGE)
    if len(given) > 1:
        raise click.UsageError(f"give exactly one score source, got {' and '.join(given)}")
    if p["prm_name"] is not None and p["scores"] is None:
        raise click.UsageError("--prm-name only labels the scores of --scores FILE")
    p["bins"] = p["bins"] or DEFAULT_BINS
    p["density_scale"] = p["density_scale"] or DEFAULT_DENSITY_SCALE
    ctx.params.update(bins=p["bins"], density_scale=p["density_scale"])
    out: Path = p["out_dir"]
    if p["prm_model"] is not None:
        check_scoring_extras(p["data_dir"])  # before any data is loaded
        click.echo(
            f"scoring ProcessBench with {p['prm_model']} into {out / 'scores.jsonl'} (rerun to resume)",
            err=True,
        )
    source = processbench_scores(
        scores=p["scores"],
        prm=p["prm_model"],
        synthetic=p["synthetic_prm"],
        splits=list(p["splits"]) or None,
        exclude_splits=p["exclude_splits"],
        data_dir=p["data_dir"],
        seed=p["seed"],
        prm_name=p["prm_name"],
        score_file=out / "scores.jsonl",
        batch_size=p["batch_size"],
        device=p["device"],
        log=lambda line: click.echo(line, err=True),
    )
    if p["prm_model"] is not None:
        print_processbench_metrics(
            source.items, f"ProcessBench with {p['prm_model']} ({len(source.items)} items)"
        )
    present = list(dict.fromkeys(si.item.split for si in source.items))
    card = {"bench": p["bench"], "splits": present, "seed": p["seed"], "command": _command_line(ctx.params)}
    card.update(source.card, n_items=len(source.items))
    click.echo(f"fitting the class densities on {len(source.items)} items ({', '.join(present)})", err=True)
    result = fit_scored_items(
        source.items,
        supervision=p["supervision"],
        n_bins=p["n_bins"],
        bins=p["bins"],
        density_scale=p["density_scale"],
        bandwidth=p["bandwidth"],
        r_only=p["r_only"],
        cv_folds=p["cv_folds"],
        seed=p["seed"],
        rho=p["rho"],
        em=None
        if p["supervision"] == "steps"
        else {
            "restarts": p["em_restarts"],
            "tol": p["em_tol"],
            "max_iter": p["em_max_iter"],
            "time_limit": p["time_limit"],
        },
        card=card,
        source=str(p["scores"] or "the scored items"),
        progress=True,
    )
    npz, js = result.model.save(out)
    _print_summary(result.model, p["cv_folds"])
    click.echo(f"wrote {npz} and {js}")
    if p["plot"]:
        from trim_pomdp.observation_models.plots import plot_class_densities

        click.echo(f"wrote {plot_class_densities(result.model, out / 'observation_densities.png')}")
