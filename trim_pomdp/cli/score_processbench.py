"""``trim-pomdp score-processbench --prm MODEL --out FILE``: score every ProcessBench step with a real PRM."""

from __future__ import annotations

from pathlib import Path

import click

from trim_pomdp.exceptions import TrimPomdpError

__all__ = ["command"]


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
    type=click.Choice(["gsm8k", "math", "olympiadbench", "omnimath"]),
    help="ProcessBench split(s) to score (repeatable; default all four).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder with <split>.json (e.g. ../shared/data/processbench); default: the hub's Qwen/ProcessBench.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Solutions per forward pass (each batch is appended to --out when done).",
)
@click.option(
    "--device", default=None, help="torch device, e.g. cuda, cuda:1, cpu (default: cuda if available)."
)
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
def command(
    prm_name: str,
    out: Path,
    splits: tuple[str, ...],
    data_dir: Path | None,
    batch_size: int,
    device: str | None,
    dtype: str | None,
    limit: int | None,
    trust_remote_code: bool,
) -> None:
    """Score ProcessBench with a PRM in the Qwen2.5-Math-PRM format (transformers backend; GPU recommended).

    Writes one JSON line per item (the item's fields plus "prm_scores", one P(step correct) per step), appending
    as batches finish, so an interrupted run resumes where it stopped. Then prints the ProcessBench accuracies
    of everything in --out. Feed the file to `trim-pomdp fit-observations --scores FILE`.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from trim_pomdp.datasets.processbench import SPLITS, load_processbench
    from trim_pomdp.datasets.scored import (
        ScoredItem,
        load_scored_items,
        processbench_metrics,
        save_scored_items,
    )

    console = Console(stderr=True)
    chosen = list(splits) or list(SPLITS)
    try:
        items = load_processbench(chosen, data_dir=data_dir)
    except (TrimPomdpError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    if limit is not None:
        kept, seen = [], {}
        for it in items:
            seen[it.split] = seen.get(it.split, 0) + 1
            if seen[it.split] <= limit:
                kept.append(it)
        items = kept

    done: set[tuple[str, str]] = set()
    if out.exists():
        try:
            previous = load_scored_items(out, ignore_torn_tail=True)
        except TrimPomdpError as exc:
            raise click.ClickException(f"{exc}\nFix or remove {out}, or choose another --out.") from None
        others = sorted({p.prm for p in previous if p.prm not in (None, prm_name)})
        if others:
            raise click.ClickException(
                f"{out} holds scores of another PRM ({', '.join(map(str, others))}); choose another --out for {prm_name}"
            )
        done = {(p.item.split, p.item.id) for p in previous}
    todo = [it for it in items if (it.split, it.id) not in done]
    click.echo(
        f"{len(items)} ProcessBench items selected, {len(items) - len(todo)} already in {out}, "
        f"{len(todo)} to score",
        err=True,
    )

    if todo:
        from trim_pomdp.prm.transformers_backend import TransformersPRM

        try:
            prm = TransformersPRM.from_pretrained(
                prm_name,
                device=device,
                dtype=dtype,
                trust_remote_code=trust_remote_code,
                batch_size=batch_size,
            )
        except TrimPomdpError as exc:
            raise click.ClickException(str(exc)) from None
        columns = (TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("score", total=len(todo))
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                try:
                    scores = prm.score_batch([(it.problem, it.steps) for it in chunk])
                except TrimPomdpError as exc:
                    raise click.ClickException(f"while scoring {chunk[0].id}…{chunk[-1].id}: {exc}") from None
                save_scored_items(
                    out, [ScoredItem(it, s, prm=prm_name) for it, s in zip(chunk, scores)], append=True
                )
                progress.advance(task, len(chunk))

    scored = [s for s in load_scored_items(out) if s.item.split in chosen] if out.exists() else []
    table = Table(title=f"ProcessBench with {prm_name} ({len(scored)} items in {out})")
    for col in ("split", "items", "error acc %", "correct acc %", "F1"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, m in processbench_metrics(scored).items():
        table.add_row(
            split,
            str(m["n_error"] + m["n_correct"]),
            f"{m['error']:.1f}",
            f"{m['correct']:.1f}",
            f"{m['f1']:.1f}",
        )
    Console().print(table)
    click.echo(f"scores written to {out}")
