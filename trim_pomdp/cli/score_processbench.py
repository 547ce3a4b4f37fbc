"""``trim-pomdp score-processbench --prm MODEL --out FILE``: score every ProcessBench step with a real PRM."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from trim_pomdp.cli._common import cli_errors, device_option, option
from trim_pomdp.datasets.processbench import SPLITS

__all__ = ["command", "print_processbench_metrics"]


def print_processbench_metrics(scored: Sequence[Any], title: str) -> None:
    """The ProcessBench accuracies per split of ``scored`` (scored items), as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    from trim_pomdp.datasets.scored import processbench_metrics

    table = Table(title=title)
    for col in ("split", "items", "error acc %", "correct acc %", "F1"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, m in processbench_metrics(scored).items():
        n = m["n_error"] + m["n_correct"]
        table.add_row(split, str(n), f"{m['error']:.1f}", f"{m['correct']:.1f}", f"{m['f1']:.1f}")
    Console().print(table)


@click.command("score-processbench")
@click.option(
    "--prm",
    "prm_name",
    required=True,
    metavar="MODEL",
    help="PRM hub id or local folder, e.g. Qwen/Qwen2.5-Math-PRM-7B.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Scored-items JSONL file; items already in it are skipped (rerun to resume).",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    type=click.Choice(SPLITS),
    help="ProcessBench split(s) to score (repeatable; default all four).",
)
# not data_dir_option: a folder that does not exist is reported by the loader, which names the missing split
@option(
    "--data-dir",
    "data_dir",
    aliases=("--processbench",),
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder with ProcessBench's <split>.json files; default: the hub's Qwen/ProcessBench.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Solutions per forward pass (each batch is appended to --out when done).",
)
@device_option("torch device, e.g. cuda, cuda:1, cpu (default: cuda if available).")
@click.option(
    "--dtype", default=None, help="Model dtype, e.g. bfloat16, float32 (default: bfloat16 on CUDA)."
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Score only the first N items of each split (a quick try).",
)
@click.option(
    "--trust-remote-code/--no-trust-remote-code",
    default=True,
    show_default=True,
    help="Allow the checkpoint's own modelling code (Qwen2.5-Math-PRM needs it).",
)
@cli_errors
def command(prm_name: str, out: Path, splits: tuple[str, ...], **options: Any) -> None:
    """Score ProcessBench with a PRM in the Qwen2.5-Math-PRM format (transformers backend; GPU recommended).

    Writes one JSON line per item (the item's fields plus "prm_scores", one P(step correct) per step), appending
    as batches finish, so an interrupted run resumes where it stopped. Then prints the ProcessBench accuracies
    of everything in --out. Feed the file to `trim-pomdp fit-observations --scores FILE`.
    """
    from trim_pomdp.prm.scoring import score_processbench

    scored = score_processbench(
        prm_name, out, splits=splits, log=lambda line: click.echo(line, err=True), **options
    )
    print_processbench_metrics(scored, f"ProcessBench with {prm_name} ({len(scored)} items in {out})")
    click.echo(f"scores written to {out}")
