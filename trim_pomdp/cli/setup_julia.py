"""``trim-pomdp setup-julia``: install and precompile the Julia side of the SARSOP backend.

A thin wrapper around :func:`trim_pomdp.solvers.sarsop.setup.setup_julia`, which checks within seconds that the
download can work (offline it stops with a message naming what is missing), resolves the Julia environment
with juliapkg and solves the Tiger POMDP with each backend to prove the setup.
"""

from __future__ import annotations

import click

from trim_pomdp.cli._common import FiniteFloat, cli_errors, option

__all__ = ["command"]

_BACKEND_CHOICES = "[sarsop.jl|nativesarsop.jl|both]"


def _backends(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    from trim_pomdp.registry import SARSOP_BACKENDS, canonical_sarsop_backend

    if value.strip().lower() == "both":
        return list(SARSOP_BACKENDS)
    try:
        return [canonical_sarsop_backend(value)]  # also the old spelling "native", in any case
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("setup-julia")
@option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="After setup, solve the Tiger POMDP with the checked backends to prove it works.",
)
@option(
    "--backend",
    "backends",
    default="both",
    metavar=_BACKEND_CHOICES,
    show_default=True,
    callback=_backends,
    help="Which SARSOP backend(s) to check.",
)
@option("--force", is_flag=True, help="Re-resolve even if juliapkg's environment looks up to date.")
@option(
    "--probe-timeout",
    type=FiniteFloat(min=0.1),
    metavar="SECONDS",
    default=3.0,
    show_default=True,
    help="Seconds allowed to reach each download host before giving up (offline detection).",
)
@option(
    "--check-timeout",
    type=FiniteFloat(min=1.0),
    metavar="SECONDS",
    default=300.0,
    show_default=True,
    help="Wall-clock allowance of each check solve, Julia's start-up included.",
)
@option("--dry-run", is_flag=True, help="Only say what would be done.")
@cli_errors
def command(
    check: bool, backends: list[str], force: bool, probe_timeout: float, check_timeout: float, dry_run: bool
) -> None:
    """Resolve and precompile the Julia environment of the SARSOP backend (downloads Julia and packages).

    \b
    Offline, or with Julia installed by hand, point juliapkg at it:
      PYTHON_JULIAPKG_EXE=/path/to/julia PYTHON_JULIAPKG_OFFLINE=yes trim-pomdp setup-julia
    or bypass juliapkg (the project must hold the packages of julia/Project.toml plus PythonCall):
      PYTHON_JULIACALL_EXE=/path/to/julia PYTHON_JULIACALL_PROJECT=/path/to/project trim-pomdp setup-julia
    """
    from rich.console import Console
    from rich.table import Table

    from trim_pomdp.solvers.sarsop.setup import TIGER_VALUE, setup_julia

    console = Console(stderr=True)
    report = setup_julia(
        check=check,
        backends=backends,
        force=force,
        probe_timeout=probe_timeout,
        check_timeout=check_timeout,
        dry_run=dry_run,
        echo=lambda line: console.print(line, markup=False, highlight=False),
    )
    if report.checks:
        table = Table(title=f"Tiger POMDP (optimal V(b0) ≈ {TIGER_VALUE})")
        for col in ("backend", "lower", "upper", "vectors", "seconds", "status"):
            table.add_column(col)
        for c in report.checks:
            table.add_row(*c.row(), "[green]ok[/]" if c.ok else f"[red]{c.status}[/]")
        console.print(table)
    if report.problems:
        raise click.ClickException("the check failed:\n" + "\n".join(f"  - {p}" for p in report.problems))
