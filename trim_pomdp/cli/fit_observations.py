"""``trim-pomdp fit-observations``: fit the TRIM-POMDP observation function on ProcessBench."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from trim_pomdp.cli._common import cli_errors, data_dir_option, device_option, out_option, seed_option
from trim_pomdp.datasets.processbench import SPLITS

__all__ = ["NO_SCORES_MESSAGE", "command"]

NO_SCORES_MESSAGE = (
    "no PRM scores given. Choose one of the three ways to get them:\n"
    "  --scores FILE     scored-items JSONL made by `trim-pomdp score-processbench --prm MODEL --out FILE`\n"
    "  --prm MODEL       score ProcessBench now with a transformers PRM, e.g. Qwen/Qwen2.5-Math-PRM-7B, GPU\n"
    "  --synthetic-prm   simulated scores calibrated to Qwen2.5-Math-PRM-7B (no GPU; the card says simulated)"
)


def _parse_bandwidth(ctx: click.Context, param: click.Parameter, value: str) -> str | float:
    if value in ("scott", "silverman", "cv"):
        return value
    try:
        bw = float(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: use scott, silverman, cv or a positive number such as 0.05"
        ) from None
    if not bw > 0:
        raise click.BadParameter(f"{value!r}: a numeric bandwidth must be positive")
    return bw


def _command_line(params: dict[str, Any]) -> str:
    """The command that reproduces this run (for the card)."""
    args = ["trim-pomdp", "fit-observations", "--bench", params["bench"]]
    for s in params["splits"]:
        args += ["--split", s]
    for flag, key in (("--data-dir", "data_dir"), ("--scores", "scores"), ("--prm", "prm_model")):
        if params[key] is not None:
            args += [flag, str(params[key])]
    if params["synthetic_prm"]:
        args.append("--synthetic-prm")
    args += ["--n-bins", str(params["n_bins"]), "--bandwidth", str(params["bandwidth"])]
    args += ["--seed", str(params["seed"])]
    if params["r_only"]:
        args.append("--r-only")
    args += ["--out", str(params["out_dir"])]
    return shlex.join(args)


def _print_summary(model: Any, splits: list[str], cv_folds: int) -> None:
    """Counts, bandwidths, the source of each t = 1 density and the held-out log-likelihood per class."""
    from rich.console import Console
    from rich.table import Table

    from trim_pomdp.constants import HIDDEN_CLASSES

    c = model.card
    held = c.get("held_out_loglik", {}).get("nats_per_step", {})
    summary = Table(
        title=f"Observation model ({'SIMULATED scores, ' if c.get('simulated') else ''}"
        f"{', '.join(splits)}); held-out loglik: {cv_folds}-fold by item, nats/step"
    )
    for col in ("class", "steps", "t≥2", "t=1", "h (r, m)", "h t=1", "t=1 fit on", "held-out loglik"):
        summary.add_column(col, justify="left" if col in ("class", "t=1 fit on") else "right")
    for name in HIDDEN_CLASSES:
        bw = c["bandwidths"][name]
        summary.add_row(
            name,
            str(c["counts"][name]),
            str(c["counts_t_ge_2"][name]),
            str(c["counts_t_eq_1"][name]),
            ", ".join(f"{x:.4f}" for x in bw["pair"]),
            f"{bw['first'][0]:.4f}",
            "t=1 steps" if c["first_step_source"][name].startswith("first") else "all steps",
            f"{held[name]:.3f}" if held else "-",
        )
    Console().print(summary)


@click.command("fit-observations")
@click.option(
    "--bench",
    type=click.Choice(["processbench"]),
    default="processbench",
    show_default=True,
    help="Benchmark with step labels to fit on.",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    type=click.Choice(SPLITS),
    help="ProcessBench split(s) to fit on (repeatable; default all four).",
)
@data_dir_option("Folder with ProcessBench's <split>.json files; default: the hub's Qwen/ProcessBench.")
@click.option(
    "--scores",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Scored-items JSONL from `trim-pomdp score-processbench`.",
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
    "--n-bins",
    type=click.IntRange(min=1, max=200),
    default=20,
    show_default=True,
    help="Bins per axis of the discretised observation (n x n pair bins).",
)
@click.option(
    "--bandwidth",
    default="scott",
    show_default=True,
    callback=_parse_bandwidth,
    help="scott | silverman (scaled by the data's spread) | cv | a number (kernel std).",
)
@click.option(
    "--r-only",
    is_flag=True,
    help="Ignore m = min of earlier scores: the model then uses only the newest score r.",
)
@seed_option(help="Seed of the synthetic PRM and the CV folds.")
@click.option(
    "--cv-folds",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Folds (by item) for the held-out log-likelihood in the summary; 0 skips it.",
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
    """Fit class-conditional reflected-KDE densities of (r_t, min r_{1:t-1}) per hidden class on ProcessBench.

    Needs PRM scores from exactly one of --scores, --prm or --synthetic-prm. Writes OUT/observation_model.npz
    and OUT/observation_model.json (card) and prints counts, bandwidths and held-out log-likelihoods.
    """
    from trim_pomdp.cli.score_processbench import print_processbench_metrics
    from trim_pomdp.datasets.scored import step_table
    from trim_pomdp.observation_models.fitting import fit_observation_model
    from trim_pomdp.prm.scoring import processbench_scores

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
    out: Path = p["out_dir"]
    chosen = list(p["splits"]) or list(SPLITS)
    if p["prm_model"] is not None:
        click.echo(
            f"scoring ProcessBench with {p['prm_model']} into {out / 'scores.jsonl'} (rerun to resume)",
            err=True,
        )
    source = processbench_scores(
        scores=p["scores"],
        prm=p["prm_model"],
        synthetic=p["synthetic_prm"],
        splits=chosen,
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
    card = {"bench": p["bench"], "splits": chosen, "seed": p["seed"], "command": _command_line(ctx.params)}
    card.update(source.card, n_items=len(source.items))
    click.echo(f"fitting the class densities on {len(source.items)} items", err=True)
    fit = dict(n_bins=p["n_bins"], bandwidth=p["bandwidth"], r_only=p["r_only"], cv_folds=p["cv_folds"])
    model = fit_observation_model(step_table(source.items), **fit, seed=p["seed"], card=card)
    npz, js = model.save(out)
    _print_summary(model, chosen, p["cv_folds"])
    click.echo(f"wrote {npz} and {js}")
    if p["plot"]:
        from trim_pomdp.observation_models.plots import plot_class_densities

        click.echo(f"wrote {plot_class_densities(model, out / 'observation_densities.png')}")
