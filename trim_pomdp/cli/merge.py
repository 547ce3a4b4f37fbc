"""``trim-pomdp merge``: join the records of sharded ``trim-pomdp run`` outputs."""

from __future__ import annotations

import click

from trim_pomdp.exceptions import TrimPomdpError

__all__ = ["command"]


@click.command("merge")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Merged run directory."
)
def command(dirs, out_dir):
    """Merge the traces and per-query records of run directories DIRS (e.g. one run's shards) into OUT."""
    from trim_pomdp.generation.runs import merge_runs

    try:
        info = merge_runs(list(dirs), out_dir)
    except TrimPomdpError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"merged {info['inputs']} directories: {info['records']} records "
        f"({info['duplicates']} duplicates dropped) -> {out_dir}/records.jsonl"
    )
