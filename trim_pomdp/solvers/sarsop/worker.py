"""Child-process entry point of the SARSOP backend.

Usage (started by :class:`~trim_pomdp.solvers.sarsop.solver.SarsopSolver`, not by hand)::

    python -m trim_pomdp.solvers.sarsop.worker REQUEST.npz RESULT.npz
    python -m trim_pomdp.solvers.sarsop.worker --serve      # keep-alive: one request per stdin line

``REQUEST.npz`` holds the model as the 1-based sparse arrays of
:class:`~trim_pomdp.solvers.sarsop.julia_bridge.SparseTabularArrays` plus the solve parameters (``backend``, ``timeout``,
``precision``, ``options_json``, ``workdir``); the worker changes into ``workdir``, solves, and writes
``RESULT.npz`` atomically (``status`` ``"ok"`` with the backend's alpha vectors in Julia's layout, or
``"error"`` with the error's type and message). Exit status: 0 on success, 1 on a reported error, 2 on bad
usage. Only numpy arrays and strings cross the process boundary (``allow_pickle=False`` on both sides).

Julia runs in this separate process because juliacall is fragile in a process that already holds torch or
vLLM, and because a hung solver can then be killed.

Test-only hook: if the environment variable ``TRIM_POMDP_SARSOP_FAKE`` is set to ``"module:function"``, that
function is called instead of Julia, with the same arguments as
:func:`~trim_pomdp.solvers.sarsop.julia_bridge.solve_with_julia`, and must return a
:class:`~trim_pomdp.solvers.sarsop.julia_bridge.RawSolution`. It lets the test suite exercise the whole protocol on
machines without Julia; it is not a user-facing option.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp.solvers.sarsop.julia_bridge import (
    REQUEST_FORMAT,
    RawSolution,
    SparseTabularArrays,
    apply_worker_env_defaults,
)

__all__ = [
    "FAKE_ENV",
    "RESULT_FORMAT",
    "WorkerError",
    "handle",
    "main",
    "read_request",
    "read_result",
    "serve",
    "solve_function",
    "write_request",
]

#: environment variable naming a fake solve function ``"module:function"`` (tests only)
FAKE_ENV = "TRIM_POMDP_SARSOP_FAKE"
RESULT_FORMAT = "trim-pomdp/sarsop-result/1"


class WorkerError(RuntimeError):
    """An error the worker caught and reported in its result file.

    Attributes
    ----------
    error_type : str
        Name of the exception class raised in the worker (e.g. ``"SolverError"``,
        ``"BackendUnavailableError"``).
    message : str
        Its message (for Julia errors: Julia's message and the tail of the solver's log).
    """

    def __init__(self, error_type: str, message: str):
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def solve_function() -> Callable[..., RawSolution]:
    """The function that solves a request: Julia's, or the fake named by ``TRIM_POMDP_SARSOP_FAKE``."""
    spec = os.environ.get(FAKE_ENV, "").strip()
    if not spec:
        from trim_pomdp.solvers.sarsop.julia_bridge import solve_with_julia

        return solve_with_julia
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(f"{FAKE_ENV}={spec!r} must have the form 'module:function'")
    return getattr(importlib.import_module(module_name), func_name)


# ----------------------------------------------------------------------------------------------------
# request / result files
# ----------------------------------------------------------------------------------------------------
def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def write_request(
    path: str | os.PathLike,
    problem: SparseTabularArrays,
    *,
    backend: str,
    timeout: float,
    precision: float,
    workdir: str | os.PathLike,
    options: dict[str, Any] | None = None,
) -> None:
    """Write a worker request file."""
    arrays = problem.to_arrays()
    arrays.update(
        format=np.array(REQUEST_FORMAT),
        backend=np.array(str(backend)),
        timeout=np.array(float(timeout)),
        precision=np.array(float(precision)),
        workdir=np.array(str(workdir)),
        options_json=np.array(json.dumps(options or {})),
    )
    _atomic_savez(Path(path), arrays)


def read_request(path: str | os.PathLike) -> tuple[SparseTabularArrays, dict[str, Any]]:
    """Read a request written by :func:`write_request`: ``(problem, parameters)``."""
    with np.load(path, allow_pickle=False) as data:
        fmt = str(data["format"]) if "format" in data.files else ""
        if fmt != REQUEST_FORMAT:
            raise ValueError(f"{path} is not a SARSOP worker request (format {fmt!r})")
        problem = SparseTabularArrays.from_arrays(data)
        params = {
            "backend": str(data["backend"]),
            "timeout": float(data["timeout"]),
            "precision": float(data["precision"]),
            "workdir": str(data["workdir"]),
            "options": json.loads(str(data["options_json"])),
        }
    return problem, params


def _write_ok(path: Path, raw: RawSolution) -> None:
    _atomic_savez(
        path,
        {
            "format": np.array(RESULT_FORMAT),
            "status": np.array("ok"),
            "alphas": np.asarray(raw.alphas, dtype=np.float64),
            "actions": np.asarray(raw.actions),
            "lower": np.array(float(raw.lower)),
            "upper": np.array(float(raw.upper)),
            "iterations": np.array(int(raw.iterations)),
            "seconds": np.array(float(raw.seconds)),
            "log": np.array(str(raw.log)),
            "versions": np.array(str(raw.versions)),
            "extra_json": np.array(json.dumps(raw.extra or {}, default=str)),
        },
    )


def _write_error(path: Path, exc: BaseException) -> None:
    _atomic_savez(
        path,
        {
            "format": np.array(RESULT_FORMAT),
            "status": np.array("error"),
            "error_type": np.array(type(exc).__name__),
            "message": np.array(str(exc)),
            "traceback": np.array("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))),
        },
    )


def read_result(path: str | os.PathLike) -> RawSolution:
    """Read a worker result.

    Raises
    ------
    ValueError
        The file is not a worker result (wrong format key, missing arrays). Callers treat it as garbage
        output.
    WorkerError
        The worker reported an error.
    """
    with np.load(path, allow_pickle=False) as data:
        fmt = str(data["format"]) if "format" in data.files else ""
        if fmt != RESULT_FORMAT:
            raise ValueError(f"not a SARSOP worker result (format {fmt!r})")
        status = str(data["status"])
        if status == "error":
            raise WorkerError(str(data["error_type"]), str(data["message"]))
        if status != "ok":
            raise ValueError(f"unknown result status {status!r}")
        return RawSolution(
            alphas=np.array(data["alphas"]),
            actions=np.array(data["actions"]),
            lower=float(data["lower"]),
            upper=float(data["upper"]),
            iterations=int(data["iterations"]),
            seconds=float(data["seconds"]),
            log=str(data["log"]),
            versions=str(data["versions"]),
            extra=json.loads(str(data["extra_json"])),
        )


# ----------------------------------------------------------------------------------------------------
def handle(request_path: str | os.PathLike, result_path: str | os.PathLike) -> int:
    """Solve one request file into a result file; ``0`` on success, ``1`` if an error was reported."""
    request_path, result_path = Path(request_path).resolve(), Path(result_path).resolve()
    try:
        problem, params = read_request(request_path)
        # anything a solver writes to "the current directory" lands in the request's working directory
        os.chdir(params["workdir"])
        apply_worker_env_defaults()
        solve = solve_function()
        raw = solve(
            problem,
            backend=params["backend"],
            timeout=params["timeout"],
            precision=params["precision"],
            workdir=params["workdir"],
            options=params["options"],
        )
        if not isinstance(raw, RawSolution):
            raise TypeError(f"the solve function returned {type(raw).__name__}, not RawSolution")
        _write_ok(result_path, raw)
    except Exception as exc:  # reported to the parent through the result file
        _write_error(result_path, exc)
        return 1
    return 0


def serve() -> int:
    """Keep-alive mode: handle requests until stdin closes, so that Julia stays loaded between solves.

    Each stdin line is a JSON object ``{"request": PATH, "result": PATH}``; after handling it the worker
    answers on its original stdout with one JSON line ``{"result": PATH, "status": 0 | 1}``. Anything else
    printed to stdout (by Julia, say) is diverted to stderr first, so it cannot corrupt the answers.
    """
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            job = json.loads(line)
            request, result = job["request"], job["result"]
        except (ValueError, KeyError, TypeError) as exc:
            print(f"ignoring malformed request line {line!r}: {exc}", file=sys.stderr)
            continue
        status = handle(request, result)
        answers.write(json.dumps({"result": result, "status": status}) + "\n")
        answers.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring for the protocol."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--serve"]:
        return serve()
    if len(argv) != 2:
        print(
            "usage: python -m trim_pomdp.solvers.sarsop.worker REQUEST.npz RESULT.npz\n"
            "       python -m trim_pomdp.solvers.sarsop.worker --serve",
            file=sys.stderr,
        )
        return 2
    return handle(argv[0], argv[1])


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess in the tests
    sys.exit(main())
