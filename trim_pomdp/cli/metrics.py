"""``trim-pomdp metrics RESULTS [--out summary.json]``: the paper's metrics from per-query records.

A thin wrapper around :func:`trim_pomdp.evaluation.metrics.summarize`.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["command"]


@click.command("metrics")
@click.argument("results", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the summary (weak/strong accuracies, per-policy ΔIBC, CPT and sweep points) as JSON here.",
)
@click.option(
    "--drop-incomplete",
    is_flag=True,
    help="Leave out (policy, knob) groups that do not cover the same queries as 'strong' instead of failing.",
)
@click.option("--markdown", is_flag=True, help="Print the table as Markdown instead of a terminal table.")
def command(results: Path, out: Path | None, drop_incomplete: bool, markdown: bool) -> None:
    """Compute C̄, PGR, CPT(50/80/95%) and ΔIBC from RESULTS and print a Table-1-style table.

    RESULTS is a .csv or .jsonl file of per-query records with columns/keys exactly
    policy,knob,query_id,correct,strong_tokens; the reserved policies 'weak' (M_w alone) and 'strong'
    (M_s alone, whose strong_tokens are C_s) must be present.
    """
    from trim_pomdp._internal.artifacts import write_json
    from trim_pomdp.evaluation.metrics import summarize
    from trim_pomdp.evaluation.records import read_records
    from trim_pomdp.evaluation.tables import markdown_table, rich_table

    if not results.is_file():
        raise click.BadParameter(
            f"{results} does not exist; give a .csv or .jsonl records file", param_hint="RESULTS"
        )
    summary = summarize(read_records(results), incomplete="drop" if drop_incomplete else "error")
    if out is not None:
        write_json(out, summary)
    if markdown:
        click.echo(markdown_table(summary))
    else:
        from rich.console import Console

        Console(width=max(Console().width, 120)).print(
            rich_table(summary, title=f"Routing metrics: {results.name}")
        )
    for d in summary["dropped"]:
        click.echo(
            f"dropped incomplete group: policy={d['policy']} knob={d['knob']} ({d['n_queries']} queries)",
            err=True,
        )
    if out is not None:
        click.echo(f"summary written to {out}")
