"""Solve a POMDP file: read a ``.pomdp``/``.pomdpx`` model, solve it (point-based or SARSOP), write the policy.

:func:`solve_file` is what ``trim-pomdp solve-file`` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp.exceptions import DataFormatError, InvalidParameterError, ResourceLimitError
from trim_pomdp.registry import canonical_solver
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
    solver: str = "pointbased",
    sarsop_backend: str = "appl",
    pomdpsol: str | Path | None = None,
    memory_limit: int | float | str | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> tuple[AlphaVectorPolicy, SolveInfo]:
    """Solve the model in ``path`` and write ``out_dir/policy.npz`` + ``.json``.

    Parameters
    ----------
    path : str or Path
        A Cassandra ``.pomdp`` or APPL ``.pomdpx`` file.
    out_dir : str or Path, optional
        Folder for ``policy.npz`` (alpha vectors) and ``policy.json`` (card with bounds and timing); nothing is
        written without it.
    precision, seed, callback
        Settings of :class:`~trim_pomdp.solvers.pointbased.solver.PointBasedSolver`.
    time_limit : float or None, default 60
        Seconds for everything: reading the file counts, and the solver gets what is left.
    horizon : int, optional
        Solve the ``horizon``-step problem exactly instead (small problems only; point-based solver).
    start : str or array-like, optional
        Initial belief replacing the file's, e.g. ``"0.9,0.1"``.
    solver : {"pointbased", "sarsop"}, default "pointbased"
        The point-based solver, or SARSOP (:class:`~trim_pomdp.solvers.sarsop.SarsopSolver`).
    sarsop_backend : str, default "appl"
        SARSOP's backend; with ``"appl"`` the file itself goes to ``pomdpsol`` (its factored form kept) unless
        ``start`` replaces its belief.
    pomdpsol : str or Path, optional
        The ``pomdpsol`` binary (default: ``TRIM_POMDP_POMDPSOL``, else ``PATH``).
    memory_limit : int, float or str, optional
        Refuse models (and stop solves) that would need more memory: bytes or ``"8G"``; default 4 GiB or
        ``TRIM_POMDP_MEMORY_LIMIT`` (see :mod:`trim_pomdp.solvers.memory`).
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
    ResourceLimitError
        When the model would exceed the memory limit, or reading it used up the time limit.
    InvalidParameterError
        For a bad start belief, a discount of 1 without ``horizon``, or an unknown solver.
    """
    begun = time.perf_counter()
    path = Path(path)
    solver = canonical_solver(solver)
    if solver not in ("pointbased", "sarsop"):
        raise InvalidParameterError(f"solve-file solves with 'pointbased' or 'sarsop', not {solver!r}")
    if solver == "sarsop" and horizon is not None:
        raise InvalidParameterError(
            "a finite horizon is solved by the point-based solver; drop --solver sarsop"
        )
    if not path.is_file():
        raise DataFormatError(f"{path} does not exist; give a .pomdp or .pomdpx file")
    deadline = None if time_limit is None else begun + time_limit
    try:
        model = read_pomdp(path, memory_limit=memory_limit, deadline=deadline)
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
            f"discount {model.discount}, {'sparse' if model.is_sparse else 'dense'} "
            f"(read in {time.perf_counter() - begun:.2f} s)"
        )
    left = None if deadline is None else deadline - time.perf_counter()
    if left is not None and left <= 0:
        raise ResourceLimitError(
            f"{path}: reading the model used up the time limit of {time_limit:g} s; raise it"
        )
    if solver == "pointbased":
        policy = PointBasedSolver(
            precision=precision,
            time_limit=left,
            seed=seed,
            finite_horizon=horizon,
            memory_limit=memory_limit,
            callback=callback,
        ).solve(model, b0=b0)
    else:
        from trim_pomdp.solvers.sarsop import SarsopSolver

        sarsop = SarsopSolver(
            backend=sarsop_backend,
            time_limit=left,
            precision=precision,
            pomdpsol=pomdpsol,
            memory_limit=memory_limit,
        )
        policy = sarsop.solve(model, b0=b0, model_file=path if sarsop.backend == "appl" else None)
    policy.card["model_file"] = str(path)
    if out_dir is not None:
        policy.save(Path(out_dir) / "policy")
    assert policy.info is not None  # both solvers report
    return policy, policy.info
