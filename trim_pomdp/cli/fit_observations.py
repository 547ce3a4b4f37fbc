"""``trim-pomdp fit-observations``: fit the TRIM-POMDP observation function on ProcessBench."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from trim_pomdp.exceptions import TrimPomdpError

__all__ = ["NO_SCORES_MESSAGE", "command"]

SPLIT_CHOICES = ["gsm8k", "math", "olympiadbench", "omnimath"]

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


def _command_line(params: dict) -> str:
    """The command that reproduces this run (for the card)."""
    args = ["trim-pomdp", "fit-observations", "--bench", params["bench"]]
    for s in params["splits"]:
        args += ["--split", s]
    if params["data_dir"] is not None:
        args += ["--data-dir", str(params["data_dir"])]
    if params["scores"] is not None:
        args += ["--scores", str(params["scores"])]
    if params["prm_model"] is not None:
        args += ["--prm", params["prm_model"]]
    if params["synthetic_prm"]:
        args.append("--synthetic-prm")
    args += [
        "--n-bins",
        str(params["n_bins"]),
        "--bandwidth",
        str(params["bandwidth"]),
        "--seed",
        str(params["seed"]),
    ]
    if params["r_only"]:
        args.append("--r-only")
    args += ["--out", str(params["out"])]
    return shlex.join(args)


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
    type=click.Choice(SPLIT_CHOICES),
    help="ProcessBench split(s) to fit on (repeatable; default all four).",
)
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder with <split>.json (e.g. ../shared/data/processbench); default: hub Qwen/ProcessBench.",
)
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
    "--r-only", is_flag=True, help="Ignore m = min of earlier scores (m carries no class information)."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the synthetic PRM and the CV folds."
)
@click.option(
    "--cv-folds",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Folds (by item) for the held-out log-likelihood in the summary; 0 skips it.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="With --prm.")
@click.option("--device", default=None, help="With --prm: torch device (default cuda if available).")
@click.option(
    "--plot", is_flag=True, help="Also write OUT/observation_densities.png (heatmaps; needs [plots])."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder for observation_model.npz and observation_model.json.",
)
@click.pass_context
def command(
    ctx: click.Context,
    bench: str,
    splits: tuple[str, ...],
    data_dir: Path | None,
    scores: Path | None,
    prm_model: str | None,
    synthetic_prm: bool,
    prm_name: str | None,
    n_bins: int,
    bandwidth: str | float,
    r_only: bool,
    seed: int,
    cv_folds: int,
    batch_size: int,
    device: str | None,
    plot: bool,
    out: Path,
) -> None:
    """Fit class-conditional reflected-KDE densities of (r_t, min r_{1:t-1}) per hidden class on ProcessBench.

    Needs PRM scores from exactly one of --scores, --prm or --synthetic-prm. Writes OUT/observation_model.npz
    and OUT/observation_model.json (card) and prints counts, bandwidths and held-out log-likelihoods.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table

    from trim_pomdp.constants import HIDDEN_CLASSES
    from trim_pomdp.datasets.processbench import HUB_DATASET, SPLITS, load_processbench
    from trim_pomdp.datasets.scored import load_scored_items, step_table
    from trim_pomdp.observation_models.fitting import held_out_log_likelihood
    from trim_pomdp.observation_models.observation import ObservationModel

    sources = [
        s
        for s, given in (
            ("--scores", scores is not None),
            ("--prm", prm_model is not None),
            ("--synthetic-prm", synthetic_prm),
        )
        if given
    ]
    if not sources:
        raise click.UsageError(NO_SCORES_MESSAGE)
    if len(sources) > 1:
        raise click.UsageError(f"give exactly one score source, got {' and '.join(sources)}")
    if prm_name is not None and scores is None:
        raise click.UsageError("--prm-name only labels the scores of --scores FILE")
    chosen = list(splits) or list(SPLITS)
    err = Console(stderr=True)
    card: dict = {"bench": bench, "splits": chosen, "seed": seed, "command": _command_line(ctx.params)}
    data_source = f"local JSON {data_dir}" if data_dir is not None else f"hub {HUB_DATASET}"

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        if scores is not None:
            with err.status(f"reading {scores}"):
                scored = [s for s in load_scored_items(scores) if s.item.split in chosen]
            if not scored:
                raise click.ClickException(f"{scores} holds no items of the split(s) {', '.join(chosen)}")
            names = sorted({s.prm for s in scored if s.prm})
            card["prm"] = prm_name or (", ".join(names) if names else f"unknown (scores from {scores.name})")
            card["simulated"] = any(s.simulated for s in scored)
            card["data_source"] = f"ProcessBench scored items {scores}"
            card["scores_file"] = str(scores)
        elif prm_model is not None:
            from trim_pomdp.cli.score_processbench import command as score_command

            out.mkdir(parents=True, exist_ok=True)
            score_file = out / "scores.jsonl"
            err.print(f"scoring ProcessBench with {prm_model} into {score_file} (rerun to resume)")
            ctx.invoke(
                score_command,
                prm_name=prm_model,
                out=score_file,
                splits=tuple(chosen),
                data_dir=data_dir,
                batch_size=batch_size,
                device=device,
            )
            scored = [s for s in load_scored_items(score_file) if s.item.split in chosen]
            card.update(
                prm=prm_model,
                simulated=False,
                data_source=f"ProcessBench ({data_source})",
                scores_file=str(score_file),
            )
        else:
            from trim_pomdp.prm.synthetic import SyntheticPRM

            with err.status(f"loading ProcessBench ({data_source})"):
                items = load_processbench(chosen, data_dir=data_dir)
            prm = SyntheticPRM()
            with err.status(f"simulating PRM scores for {len(items)} items"):
                scored = prm.score_items(items, seed=seed)
            prm_card = prm.card
            card.update(
                prm=prm_card["prm"],
                prm_card=prm_card,
                simulated=True,
                data_source=f"ProcessBench ({data_source}) with SIMULATED PRM scores",
                replace_with_real_scores=[
                    "trim-pomdp score-processbench --prm Qwen/Qwen2.5-Math-PRM-7B --out scores.jsonl",
                    "trim-pomdp fit-observations --bench processbench --scores scores.jsonl --out DIR",
                ],
            )
        table = step_table(scored)
        card["n_items"] = len(scored)
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("fitting class densities", total=None)
            model = ObservationModel.fit(
                table, n_bins=n_bins, bandwidth=bandwidth, r_only=r_only, card=card, random_state=seed
            )
            progress.update(task, total=1, completed=1)
            held: dict[str, float] = {}
            if cv_folds >= 2:
                task = progress.add_task(f"{cv_folds}-fold held-out log-likelihood", total=None)
                held = held_out_log_likelihood(
                    table, n_folds=cv_folds, bandwidth=bandwidth, r_only=r_only, seed=seed
                )
                progress.update(task, total=1, completed=1)
        if held:
            model.card["held_out_loglik"] = {"folds": cv_folds, "by": "item", "nats_per_step": held}
        npz, js = model.save(out)
    except TrimPomdpError as exc:
        raise click.ClickException(str(exc)) from None
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None

    summary = Table(
        title=f"Observation model ({'SIMULATED scores, ' if model.card.get('simulated') else ''}"
        f"{', '.join(chosen)}); held-out loglik: {cv_folds}-fold by item, nats/step"
    )
    for col in ("class", "steps", "t≥2", "t=1", "h (r, m)", "h t=1", "t=1 fit on", "held-out loglik"):
        summary.add_column(col, justify="left" if col in ("class", "t=1 fit on") else "right")
    c = model.card
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
    click.echo(f"wrote {npz} and {js}")
    if plot:
        from trim_pomdp.observation_models.plots import plot_class_densities

        try:
            png = plot_class_densities(model, out / "observation_densities.png")
        except TrimPomdpError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"wrote {png}")
