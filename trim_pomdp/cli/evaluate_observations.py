"""``trim-pomdp evaluate-observations``: how well an observation model explains scored data it was not fitted on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trim_pomdp.cli._common import FiniteFloat, cli_errors, out_option

__all__ = ["command", "print_evaluation"]


def print_evaluation(summary: dict[str, Any], details: dict[str, Any], title: str) -> None:
    """The summary as two tables (final answers, steps) and the notes, on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    outcome = summary["outcome"]
    if outcome is not None:
        table = Table(title=f"{title}: P(final answer right), {details['n_items_with_outcome']} items")
        for col in ("predictor", "AUROC", "Brier", "ECE"):
            table.add_column(col, justify="left" if col == "predictor" else "right")
        for name, m in outcome.items():
            label = (
                f"belief (p_w {details['p_w']:.4f}, rho {details['rho']:.3f})" if name == "belief" else name
            )
            table.add_row(
                label,
                "-" if m["auroc"] is None else f"{m['auroc']:.4f}",
                f"{m['brier']:.4f}",
                f"{m['ece']:.4f}",
            )
        console.print(table)
    steps = summary["steps"]
    if steps is not None:
        table = Table(title=f"{title}: steps of {details['n_items_with_step_labels']} labelled items")
        for col in ("class log-loss", "S2 AUROC (belief)", "S2 AUROC (1 - score)"):
            table.add_column(col, justify="right")
        table.add_row(*("-" if v is None else f"{v:.4f}" for v in steps.values()))
        console.print(table)
    for note in details["notes"]:
        console.print(f"note: {note}")


def _write(out: Path, ev: Any, plot: bool) -> list[Path]:
    from trim_pomdp._internal.artifacts import write_json
    from trim_pomdp._internal.jsonl import JsonlWriter

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json", out / "report.json"]
    write_json(written[0], ev.summary)
    write_json(written[1], ev.details)
    if ev.predictions:
        written.append(out / "predictions.jsonl")
        with JsonlWriter(written[-1], append=False) as w:
            keys = [k for k in ev.predictions if k != "id"]
            for i, item_id in enumerate(ev.predictions["id"]):
                w.write({"id": item_id, **{k: float(ev.predictions[k][i]) for k in keys}})
        if plot:
            from trim_pomdp.observation_models.plots import plot_reliability

            written.append(plot_reliability(ev.details["reliability"], out / "reliability.png"))
    return written


@click.command("evaluate-observations")
@click.option(
    "--obs",
    "obs_path",
    default=None,
    metavar="DIR|NAME",
    help="Observation model: a directory or .npz from `trim-pomdp fit-observations`, or the name of a shipped "
    "one (see --list). Default: the default shipped model.",
)
@click.option(
    "--scores",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scored-items JSONL to evaluate on (data the model was not fitted on).",
)
@click.option(
    "--split", "splits", multiple=True, metavar="NAME", help="Evaluate only these splits (repeatable)."
)
@click.option(
    "--p-w",
    type=FiniteFloat(min=0.0, max=1.0, min_open=True, max_open=True),
    default=None,
    help="The chain's next-step accuracy. Default: the model card's p_w, else the shipped TRIM parameters'.",
)
@click.option(
    "--rho",
    type=FiniteFloat(min=0.0, max=1.0, max_open=True),
    default=None,
    help="P(right final answer | an erroneous step). Default: the model card's rho, else 0.",
)
@click.option(
    "--plot/--no-plot", default=True, show_default=True, help="Write OUT/reliability.png (needs [plots])."
)
@out_option("Output folder: summary.json, report.json, predictions.jsonl, reliability.png.")
@cli_errors
def command(obs_path: str | None, scores: Path, splits: tuple[str, ...], out_dir: Path, **p: Any) -> None:
    """Score an observation model's belief on scored solutions: P(right final answer) and per-step classes.

    The belief filter runs over every solution, continuing at every step. Against final-answer correctness it
    reports AUROC, Brier score and ECE of P(right) = b_T(S0) + rho (1 - b_T(S0)) beside the minimum, the last and
    the product of the step scores; against step labels, the class log-loss and the AUROC of P(S2) for the first
    erroneous step. OUT/summary.json holds exactly {n_items, outcome, steps}; OUT/report.json the rest.
    """
    from trim_pomdp.datasets.scored import load_scored_items, select_splits
    from trim_pomdp.observation_models.evaluate import evaluate_observations
    from trim_pomdp.observation_models.shipped import load_named_observation_model

    model, name = load_named_observation_model(obs_path)
    items = select_splits(load_scored_items(scores), list(splits) or None, source=str(scores))
    p_w = p["p_w"]
    if p_w is None and model.card.get("p_w") is None:
        from trim_pomdp.pomdp.defaults import load_default_params

        p_w = load_default_params().p_w
    ev = evaluate_observations(model, items, p_w=p_w, rho=p["rho"])
    if p["p_w"] is None and model.card.get("p_w") is None:
        ev.details["sources"]["p_w"] = "the shipped TRIM parameters (the model's card records none)"
    ev.details["observation_model_path"] = name
    ev.details["scores_file"] = scores.name
    print_evaluation(ev.summary, ev.details, f"{name} on {scores.name}")
    for path in _write(out_dir, ev, p["plot"]):
        click.echo(f"wrote {path}")
