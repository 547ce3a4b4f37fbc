"""``trim-pomdp setup-julia``: install and precompile the Julia side of the SARSOP backend.

It resolves the Julia environment declared in ``trim_pomdp/juliapkg.json`` with juliapkg (which downloads
Julia if none is found, then installs and precompiles POMDPs, POMDPTools, SARSOP, NativeSARSOP and
PythonCall), then checks the setup by solving the Tiger POMDP with each backend in a child process. Before
anything is downloaded it checks, within a few seconds, that the download can work; offline it stops with a
message naming what is missing and how to point at an existing Julia instead of hanging.
"""

from __future__ import annotations

import math
import time

import click
import numpy as np

__all__ = ["command", "tiger_pomdp"]


def tiger_pomdp():
    """The classic Tiger POMDP (γ = 0.95, listen −1, wrong door −100, right door +10, accuracy 0.85).

    Optimal value at the uniform belief ≈ 19.37 (pomdpsol: LB 19.3711, UB 19.3721).
    """
    from trim_pomdp.solvers.tabular import TabularPOMDP

    listen, reset = np.eye(2), np.full((2, 2), 0.5)
    T = np.stack([listen, reset, reset])
    O = np.stack([np.array([[0.85, 0.15], [0.15, 0.85]]), reset, reset])
    R = np.array([[-1.0, -100.0, 10.0], [-1.0, 10.0, -100.0]])
    return TabularPOMDP(
        T=T,
        O=O,
        R=R,
        b0=np.array([0.5, 0.5]),
        discount=0.95,
        state_names=["tiger-left", "tiger-right"],
        action_names=["listen", "open-left", "open-right"],
        observation_names=["hear-left", "hear-right"],
    )


def _format_problems(problems: list[str]) -> str:
    return "Julia cannot be set up here:\n" + "\n".join(f"  - {p}" for p in problems)


@click.command("setup-julia")
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="After setup, solve the Tiger POMDP with the checked backends to prove it works.",
)
@click.option(
    "--backend",
    "backends",
    type=click.Choice(["sarsop.jl", "native", "both"]),
    default="both",
    show_default=True,
    help="Which SARSOP backend(s) to check.",
)
@click.option("--force", is_flag=True, help="Re-resolve even if juliapkg's environment looks up to date.")
@click.option(
    "--probe-timeout",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    help="Seconds allowed to reach each download host before giving up (offline detection).",
)
@click.option(
    "--check-timeout",
    type=click.FloatRange(min=1.0),
    default=300.0,
    show_default=True,
    help="Wall-clock allowance of each check solve, Julia's start-up included.",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be done.")
def command(
    check: bool, backends: str, force: bool, probe_timeout: float, check_timeout: float, dry_run: bool
) -> None:
    """Resolve and precompile the Julia environment of the SARSOP backend (downloads Julia and packages).

    \b
    Offline, or with Julia installed by hand, point juliapkg at it:
      PYTHON_JULIAPKG_EXE=/path/to/julia PYTHON_JULIAPKG_OFFLINE=yes trim-pomdp setup-julia
    or bypass juliapkg (the project must hold the packages of julia/Project.toml plus PythonCall):
      PYTHON_JULIACALL_EXE=/path/to/julia PYTHON_JULIACALL_PROJECT=/path/to/project trim-pomdp setup-julia
    """
    from rich.console import Console

    from trim_pomdp.solvers.sarsop.julia_bridge import plan_setup

    console = Console(stderr=True)
    started = time.perf_counter()
    plan = plan_setup(probe_timeout=probe_timeout, force=force)
    if plan.action == "blocked":
        raise click.ClickException(_format_problems(plan.problems))
    descriptions = {
        "done": "the Julia environment is already set up and current",
        "bypass": "juliacall is configured by PYTHON_JULIACALL_EXE/PYTHON_JULIACALL_PROJECT "
        "(juliapkg is not used)",
        "resolve": "resolve the Julia environment with juliapkg"
        + (f" using {plan.julia}" if plan.julia else " (downloading Julia)")
        + (" offline" if plan.offline else ""),
    }
    console.print(
        f"[bold]setup-julia[/]: {descriptions[plan.action]} "
        f"(checked in {time.perf_counter() - started:.1f} s)"
    )
    if dry_run:
        return
    if plan.action == "resolve":
        import juliapkg

        console.print(
            "Resolving (this downloads and precompiles packages the first time; it can take minutes)..."
        )
        try:
            juliapkg.resolve(force=force)
        except Exception as exc:
            raise click.ClickException(
                f"juliapkg could not set up Julia: {exc}\nIf this machine is offline, set "
                "PYTHON_JULIAPKG_EXE to an installed Julia and PYTHON_JULIAPKG_OFFLINE=yes."
            ) from None
    if check:
        _check_backends(console, ["sarsop.jl", "native"] if backends == "both" else [backends], check_timeout)


def _check_backends(console, backends: list[str], check_timeout: float) -> None:
    from rich.table import Table

    from trim_pomdp.exceptions import TrimPomdpError
    from trim_pomdp.solvers.sarsop.solver import SarsopSolver

    model = tiger_pomdp()
    table = Table(title="Tiger POMDP (optimal V(b0) ≈ 19.37)")
    for col in ("backend", "lower", "upper", "vectors", "seconds", "status"):
        table.add_column(col)
    failures = []
    for backend in backends:
        solver = SarsopSolver(backend=backend, timeout=10.0, startup_timeout=check_timeout)
        console.print(f"Checking {backend} (starts Julia in a child process)...")
        try:
            policy = solver.solve(model)
        except TrimPomdpError as exc:
            failures.append(f"{backend}: {exc}")
            table.add_row(backend, "-", "-", "-", "-", "[red]failed[/]")
            continue
        info = policy.info
        ok = abs(info.lower_bound - 19.37) < 0.1
        if not ok:
            failures.append(f"{backend}: V(b0) lower bound {info.lower_bound:.4f}, expected about 19.37")
        upper = "n/a" if not math.isfinite(info.upper_bound) else f"{info.upper_bound:.4f}"
        table.add_row(
            backend,
            f"{info.lower_bound:.4f}",
            upper,
            str(policy.alphas.shape[0]),
            f"{info.seconds:.1f}",
            "[green]ok[/]" if ok else "[red]wrong value[/]",
        )
    console.print(table)
    if failures:
        raise click.ClickException("the check failed:\n" + "\n".join(f"  - {f}" for f in failures))
