"""The Julia boundary of the SARSOP backend: the only module of trim-pomdp that imports ``juliacall``.

It does so lazily, inside :func:`solve_with_julia`, after checking that the Julia environment has been set up
(:func:`~trim_pomdp.solvers.sarsop.setup.julia_status`; ``trim-pomdp setup-julia``), so a solve never starts a
download. Each backend is a Julia source file shipped in ``trim_pomdp/solvers/sarsop/julia`` that defines a
module with ``build_pomdp`` (the model from the 1-based sparse triplets of
:class:`~trim_pomdp.solvers.sarsop.arrays.SparseTabularArrays`) and ``solve_pomdp`` (alpha vectors, actions,
bounds, iterations, seconds and versions).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import BackendUnavailableError, SolverError
from trim_pomdp.registry import canonical_sarsop_backend
from trim_pomdp.solvers.sarsop.arrays import RawSolution, SparseTabularArrays
from trim_pomdp.solvers.sarsop.setup import julia_status

__all__ = ["BACKENDS", "julia_source_dir", "solve_with_julia"]

#: backend name (:data:`trim_pomdp.registry.SARSOP_BACKENDS`) -> (Julia source file, module it defines)
BACKENDS: dict[str, tuple[str, str]] = {
    "sarsop.jl": ("sarsop_backend.jl", "TrimPomdpSARSOP"),
    "nativesarsop.jl": ("native_backend.jl", "TrimPomdpNativeSARSOP"),
}


def julia_source_dir() -> Path:
    """Directory of the Julia sources shipped with the package (``trim_pomdp/solvers/sarsop/julia``)."""
    return Path(__file__).resolve().parent / "julia"


_MODULES: dict[str, Any] = {}


def _juliacall() -> Any:
    """Import juliacall; refuse (rather than let juliacall download things) if the setup is not done."""
    ok, why = julia_status()
    if not ok:
        raise BackendUnavailableError(f"the SARSOP backend needs Julia: {why}")
    try:
        return require("juliacall", "julia", "the SARSOP backend")
    except BackendUnavailableError:
        raise
    except Exception as exc:  # juliacall starts Julia at import; any failure there lands here
        raise BackendUnavailableError(
            f"juliacall could not start Julia: {exc}. Run `trim-pomdp setup-julia` (or point "
            "PYTHON_JULIAPKG_EXE at an existing Julia)"
        ) from exc


def _backend_module(backend: str) -> Any:
    """The Julia module of ``backend``, loading its source file into ``Main`` on first use (cached)."""
    try:
        backend = canonical_sarsop_backend(backend)
    except ValueError as exc:
        raise SolverError(str(exc)) from None
    if backend in _MODULES:
        return _MODULES[backend]
    jc = _juliacall()
    filename, module_name = BACKENDS[backend]
    path = julia_source_dir() / filename
    try:
        include = jc.Main.seval("Base.include")
        include(jc.Main, str(path))
        module = jc.Main.seval(module_name)
    except Exception as exc:
        raise SolverError(
            f"loading {path.name} into Julia failed (are the Julia packages installed? run "
            f"`trim-pomdp setup-julia`): {exc}"
        ) from exc
    _MODULES[backend] = module
    return module


def _to_numpy(value: Any, dtype: Any) -> np.ndarray:
    """A copy of a Julia array (juliacall ``ArrayValue``) as a numpy array."""
    to_numpy = getattr(value, "to_numpy", None)
    arr = to_numpy() if callable(to_numpy) else value
    return np.array(arr, dtype=dtype, copy=True)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# About 80 lines: most of it is the docstring and the 15 arguments of build_pomdp, one per line (a test reads
# that argument list from this function's source and compares it with the Julia signature).
def solve_with_julia(
    problem: SparseTabularArrays,
    *,
    backend: str,
    timeout: float,
    precision: float,
    workdir: str | os.PathLike,
    options: dict[str, Any] | None = None,
) -> RawSolution:
    """Solve ``problem`` with a Julia backend in this process.

    Parameters
    ----------
    problem : SparseTabularArrays
        The model as 1-based sparse triplets.
    backend : {"sarsop.jl", "nativesarsop.jl"}
        The Julia backend (aliases such as ``"native"`` are accepted).
    timeout : float
        The solve's time limit in seconds, named as on the Julia side (pomdpsol ``--timeout``, NativeSARSOP
        ``max_time``).
    precision : float
        Target gap ``V̄(b0) - V̲(b0)``.
    workdir : path
        Existing directory for every file the solver writes (SARSOP.jl: ``model.pomdpx``, ``policy.out``,
        ``pomdpsol.log``).
    options : dict, optional
        Extra keyword arguments of the Julia ``SARSOPSolver`` constructor.

    Returns
    -------
    RawSolution
        The backend's answer in Julia's layout, with the solver's console log.

    Raises
    ------
    BackendUnavailableError
        Julia or its packages are not set up.
    SolverError
        Julia raised an error; the message contains Julia's message and the tail of pomdpsol's log.
    """
    module = _backend_module(backend)
    workdir = Path(workdir)
    log_path = workdir / "pomdpsol.log"
    p = problem
    try:
        model = module.build_pomdp(
            p.n_states,
            p.n_actions,
            p.n_observations,
            p.T_a,
            p.T_s,
            p.T_sp,
            p.T_p,
            p.O_a,
            p.O_sp,
            p.O_o,
            p.O_p,
            p.R,
            p.b0,
            p.terminals,
            float(p.discount),
        )
        result = module.solve_pomdp(model, str(workdir), float(timeout), float(precision), **(options or {}))
        alphas = _to_numpy(result[0], np.float64)
        actions = _to_numpy(result[1], np.int64)
        lower, upper = float(result[2]), float(result[3])
        iterations, seconds, versions = int(result[4]), float(result[5]), str(result[6])
    except Exception as exc:
        log = _read_text(log_path)
        tail = "\n".join(log.strip().splitlines()[-25:])
        message = f"Julia backend {backend!r} failed: {exc}"
        if tail:
            message += f"\n--- solver output (last lines of {log_path.name}) ---\n{tail}"
        raise SolverError(message) from exc
    return RawSolution(
        alphas=alphas,
        actions=actions,
        lower=lower,
        upper=upper,
        iterations=iterations,
        seconds=seconds,
        log=_read_text(log_path),
        versions=versions,
    )
