"""Solve a POMDP file: read a ``.pomdp``/``.pomdpx`` model, solve it point-based, write the policy artifact.

:func:`solve_file` is what ``trim-pomdp solve-file`` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.formats import read_pomdp
from trim_pomdp.solvers.pointbased.solver import PointBasedSolver
from trim_pomdp.solvers.policy import AlphaVectorPolicy

__all__ = ["parse_belief", "solve_file"]


def parse_belief(text: str, n_states: int) -> np.ndarray:
    """A belief from comma- or space-separated probabilities (``"0.9,0.1"``).

    Raises
    ------
    InvalidParameterError
        When ``text`` is not ``n_states`` non-negative numbers summing to 1.
    """
    try:
        b = np.array([float(x) for x in text.replace(",", " ").split()])
    except ValueError:
        raise InvalidParameterError(
            f"the start belief {text!r} is not a list of numbers; give e.g. '0.9,0.1'"
        ) from None
    if b.shape != (n_states,) or np.any(b < 0) or abs(b.sum() - 1) > 1e-6:
        raise InvalidParameterError(
            f"the start belief needs {n_states} non-negative numbers summing to 1, got {text!r}"
        )
    return b


def solve_file(
    path: str | Path,
    out_dir: str | Path | None = None,
    *,
    precision: float = 1e-3,
    time_limit: float | None = 60.0,
    horizon: int | None = None,
    start: str | np.ndarray | None = None,
    seed: int = 0,
    callback: Callable[[dict[str, Any]], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> tuple[AlphaVectorPolicy, SolveInfo]:
    """Solve the model in ``path`` with the point-based solver, and write ``out_dir/policy.npz`` + ``.json``.

    Parameters
    ----------
    path : str or Path
        A Cassandra ``.pomdp`` or APPL ``.pomdpx`` file.
    out_dir : str or Path, optional
        Folder for ``policy.npz`` (alpha vectors) and ``policy.json`` (card with bounds and timing); nothing is
        written without it.
    precision, time_limit, seed, callback
        Settings of :class:`~trim_pomdp.solvers.pointbased.solver.PointBasedSolver`.
    horizon : int, optional
        Solve the ``horizon``-step problem exactly instead (small problems only).
    start : str or array-like, optional
        Initial belief replacing the file's, e.g. ``"0.9,0.1"``.
    echo : callable, optional
        Receives a one-line description of the model before the solve.

    Returns
    -------
    (AlphaVectorPolicy, SolveInfo)
        The policy (its card names the model file) and the report of the solve.

    Raises
    ------
    DataFormatError
        When the file is missing or cannot be parsed (the message names the line).
    InvalidParameterError
        For a bad start belief, or a discount of 1 without ``horizon``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path} does not exist; give a .pomdp or .pomdpx file")
    try:
        model = read_pomdp(path)
    except DataFormatError as exc:
        raise DataFormatError(f"cannot read the model: {exc}") from None
    b0 = parse_belief(start, model.n_states) if isinstance(start, str) else start
    if horizon is None and model.discount >= 1.0:
        raise InvalidParameterError(
            f"{path} has discount {model.discount}; the point-based solver needs a discount < 1 (or pass a "
            "horizon H for an exact finite-horizon solve)"
        )
    if echo is not None:
        echo(
            f"{path.name}: {model.n_states} states, {model.n_actions} actions, {model.n_observations} observations, "
            f"discount {model.discount}"
        )
    solver = PointBasedSolver(
        precision=precision, time_limit=time_limit, seed=seed, finite_horizon=horizon, callback=callback
    )
    policy = solver.solve(model, b0=b0)
    policy.card["model_file"] = str(path)
    if out_dir is not None:
        policy.save(Path(out_dir) / "policy")
    assert policy.info is not None  # the point-based solver always reports
    return policy, policy.info
