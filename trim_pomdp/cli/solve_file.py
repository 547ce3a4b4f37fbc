"""``trim-pomdp solve-file FILE --out DIR``: solve a ``.pomdp``/``.pomdpx`` file (point-based solver)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from trim_pomdp.exceptions import TrimPomdpError

__all__ = ["command"]


def _parse_belief(text: str | None, n_states: int):
    if text is None:
        return None
    import numpy as np

    try:
        b = np.array([float(x) for x in text.replace(",", " ").split()])
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a list of numbers; give e.g. '0.9,0.1'", param_hint="--start"
        ) from None
    if b.shape != (n_states,) or np.any(b < 0) or abs(b.sum() - 1) > 1e-6:
        raise click.BadParameter(
            f"the start belief needs {n_states} non-negative numbers summing to 1, got {text!r}",
            param_hint="--start",
        )
    return b


@click.command("solve-file")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for policy.npz (alpha vectors) and policy.json (card with bounds and timing).",
)
@click.option(
    "--precision",
    type=float,
    default=1e-3,
    show_default=True,
    help="Stop when upper - lower bound at b0 is at most this.",
)
@click.option(
    "--time-limit", type=float, default=60.0, show_default=True, help="Wall-clock limit in seconds."
)
@click.option(
    "--horizon",
    type=int,
    default=None,
    help="Solve the H-step finite-horizon problem exactly instead (small problems only).",
)
@click.option(
    "--start",
    "start",
    default=None,
    help="Initial belief overriding the file's, as comma-separated probabilities (e.g. '0.9,0.1').",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress display.")
def command(
    file: Path,
    out_dir: Path,
    precision: float,
    time_limit: float,
    horizon: int | None,
    start: str | None,
    seed: int,
    quiet: bool,
) -> None:
    """Solve FILE (Cassandra .pomdp or APPL .pomdpx) and write DIR/policy.npz and DIR/policy.json.

    The card (policy.json) holds lower_bound and upper_bound (certified bounds on V*(b0)), solve_seconds,
    the stop reason and the solver settings.
    """
    from trim_pomdp.solvers.formats import read_pomdp
    from trim_pomdp.solvers.pointbased.solver import PointBasedSolver

    if not file.is_file():
        raise click.BadParameter(f"{file} does not exist; give a .pomdp or .pomdpx file", param_hint="FILE")
    if precision <= 0:
        raise click.BadParameter("must be positive, e.g. 1e-3", param_hint="--precision")
    if time_limit <= 0:
        raise click.BadParameter("must be a positive number of seconds", param_hint="--time-limit")
    if horizon is not None and horizon < 1:
        raise click.BadParameter("must be a positive number of steps", param_hint="--horizon")
    try:
        model = read_pomdp(file)
    except TrimPomdpError as exc:
        raise click.ClickException(f"cannot read the model: {exc}") from None
    b0 = _parse_belief(start, model.n_states)
    if horizon is None and model.discount >= 1.0:
        raise click.ClickException(
            f"{file} has discount {model.discount}; the point-based solver needs a discount < 1 "
            "(or pass --horizon H for an exact finite-horizon solve)"
        )
    click.echo(
        f"{file.name}: {model.n_states} states, {model.n_actions} actions, "
        f"{model.n_observations} observations,"
        f" discount {model.discount}",
        err=True,
    )

    progress = None
    if not quiet:
        from rich.progress import Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("{task.description}"), TimeElapsedColumn(), transient=False)
    task = None

    def callback(d):
        if progress is not None and task is not None:
            progress.update(
                task,
                description=(
                    f"bounds [{d['lower_bound']:.6g}, {d['upper_bound']:.6g}]  "
                    f"gap {d['upper_bound'] - d['lower_bound']:.3g}  "
                    f"alphas {d['alphas']}  trials {d['trials']}"
                ),
            )

    solver = PointBasedSolver(
        precision=precision, time_limit=time_limit, seed=seed, finite_horizon=horizon, callback=callback
    )
    try:
        if progress is not None:
            with progress:
                task = progress.add_task("initialising bounds", total=None)
                policy = solver.solve(model, b0=b0)
        else:
            policy = solver.solve(model, b0=b0)
    except TrimPomdpError as exc:
        raise click.ClickException(str(exc)) from None
    info = policy.info
    policy.card["model_file"] = str(file)
    npz, card = policy.save(out_dir / "policy")
    click.echo(
        json.dumps(
            {
                "lower_bound": info.lower_bound,
                "upper_bound": info.upper_bound,
                "gap": info.gap,
                "solve_seconds": round(info.seconds, 3),
                "converged": info.converged,
                "alphas": info.sizes.get("alpha_vectors"),
            }
        )
    )
    click.echo(f"policy written to {npz} and {card}", err=True)
