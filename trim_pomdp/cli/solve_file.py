"""``trim-pomdp solve-file FILE --out DIR``: solve a ``.pomdp``/``.pomdpx`` file (point-based solver or SARSOP).

A thin wrapper around :func:`trim_pomdp.solvers.files.solve_file`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from trim_pomdp.cli._common import FiniteFloat, cli_errors, option, out_option, seed_option, time_limit_option
from trim_pomdp.registry import SARSOP_BACKENDS

__all__ = ["command"]


@click.command("solve-file")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@out_option("Folder for policy.npz (alpha vectors) and policy.json (card with bounds and timing).")
@option(
    "--precision",
    type=FiniteFloat(min=0, min_open=True),
    metavar="FLOAT",
    default=1e-3,
    show_default=True,
    help="Stop when upper - lower bound at b0 is at most this.",
)
@time_limit_option(60.0, help="Wall-clock limit in seconds, reading the file included.")
@option(
    "--horizon",
    type=click.IntRange(min=1),
    metavar="H",
    default=None,
    help="Solve the H-step finite-horizon problem exactly instead (small problems only).",
)
@option(
    "--start",
    "start",
    metavar="PROBS",
    default=None,
    help="Initial belief overriding the file's, as comma-separated probabilities (e.g. '0.9,0.1').",
)
@seed_option(help="Seed of the solver's sampling.")
@option(
    "--solver",
    type=click.Choice(["pointbased", "sarsop"]),
    default="pointbased",
    show_default=True,
    help="The point-based solver, or SARSOP (see --sarsop-backend).",
)
@option(
    "--sarsop-backend",
    type=click.Choice(list(SARSOP_BACKENDS)),
    default="appl",
    show_default=True,
    help="With --solver sarsop: appl runs APPL's pomdpsol on FILE itself (no Julia); the others go through Julia.",
)
@option(
    "--pomdpsol",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="APPL's pomdpsol binary (default: $TRIM_POMDP_POMDPSOL, else pomdpsol on PATH).",
)
@option(
    "--memory-limit",
    metavar="SIZE",
    default=None,
    help="Refuse models (and stop solves) needing more memory, e.g. 512M or 8G "
    "[default: $TRIM_POMDP_MEMORY_LIMIT, else 4G].",
)
@option("--quiet", is_flag=True, help="No progress display.")
@cli_errors
def command(
    file: Path,
    out_dir: Path,
    precision: float,
    time_limit: float,
    horizon: int | None,
    start: str | None,
    seed: int,
    solver: str,
    sarsop_backend: str,
    pomdpsol: Path | None,
    memory_limit: str | None,
    quiet: bool,
) -> None:
    """Solve FILE (Cassandra .pomdp or APPL .pomdpx) and write DIR/policy.npz and DIR/policy.json.

    The card (policy.json) holds lower_bound and upper_bound (certified bounds on V*(b0)), solve_seconds,
    the stop reason and the solver settings. A model that would exceed the memory limit is refused
    before it is allocated, with its size and the limit.
    """
    from trim_pomdp._internal.progress import Progress
    from trim_pomdp.solvers.files import solve_file

    progress = Progress(None, "solving", enabled=not quiet, interval=5.0, unit="trials")

    def report(d: dict[str, Any]) -> None:
        gap = d["upper_bound"] - d["lower_bound"]
        bounds = f"bounds [{d['lower_bound']:.6g}, {d['upper_bound']:.6g}] gap {gap:.3g} alphas {d['alphas']}"
        progress.set(d["trials"], note=bounds)

    with progress:
        _, info = solve_file(
            file,
            out_dir,
            precision=precision,
            time_limit=time_limit,
            horizon=horizon,
            start=start,
            seed=seed,
            solver=solver,
            sarsop_backend=sarsop_backend,
            pomdpsol=pomdpsol,
            memory_limit=memory_limit,
            callback=report,
            echo=lambda line: click.echo(line, err=True),
        )
    summary = {
        "lower_bound": info.lower_bound,
        "upper_bound": info.upper_bound,
        "gap": info.gap,
        "solve_seconds": round(info.seconds, 3),
        "converged": info.converged,
        "alphas": info.sizes.get("alpha_vectors"),
    }
    click.echo(json.dumps(summary))
    click.echo(f"policy written to {out_dir / 'policy.npz'} and {out_dir / 'policy.json'}", err=True)
