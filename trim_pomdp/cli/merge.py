"""``trim-pomdp merge``: join the records of sharded ``trim-pomdp run`` outputs."""

from __future__ import annotations

from pathlib import Path

import click

from trim_pomdp.cli._common import out_option

__all__ = ["command"]


@click.command("merge")
@click.argument(
    "dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@out_option("Merged run directory.")
def command(dirs: tuple[Path, ...], out_dir: Path) -> None:
    """Merge the traces and per-query records of run directories DIRS (e.g. one run's shards) into OUT."""
    from trim_pomdp.generation.runs import merge_runs

    info = merge_runs(list(dirs), out_dir)
    click.echo(
        f"merged {info['inputs']} directories: {info['records']} records "
        f"({info['duplicates']} duplicates dropped) -> {out_dir}/records.jsonl"
    )
