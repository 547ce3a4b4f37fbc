"""Child-process entry point of the SARSOP backend.

Usage (started by :class:`~trim_pomdp.solvers.sarsop.solver.SarsopSolver`, not by hand)::

    python -m trim_pomdp.solvers.sarsop.worker REQUEST.npz RESULT.npz
    python -m trim_pomdp.solvers.sarsop.worker --serve      # keep-alive: one request per stdin line

``REQUEST.npz`` holds the model as the 1-based sparse arrays of
:class:`~trim_pomdp.solvers.sarsop.arrays.SparseTabularArrays` plus the solve parameters (``backend``,
``timeout``, ``precision``, ``options_json``, ``workdir``: see
:func:`~trim_pomdp.solvers.sarsop.arrays.write_request`). The worker changes into ``workdir``, solves, and
writes ``RESULT.npz`` atomically (``status`` ``"ok"`` with the backend's alpha vectors in Julia's layout, or
``"error"`` with the error's type and message). Exit status: 0 on success, 1 on a reported error, 2 on bad
usage. Only numpy arrays and strings cross the process boundary (``allow_pickle=False`` on both sides).

Julia runs in this separate process because juliacall is fragile in a process that already holds torch or
vLLM, and because a hung solver can then be killed.

Test-only hook: if the environment variable ``TRIM_POMDP_SARSOP_FAKE`` is set to ``"module:function"``, that
function is called instead of Julia, with the same arguments as
:func:`~trim_pomdp.solvers.sarsop.julia_bridge.solve_with_julia`, and must return a
:class:`~trim_pomdp.solvers.sarsop.arrays.RawSolution`. It lets the test suite exercise the whole protocol on
machines without Julia; it is not a user-facing option.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from trim_pomdp.solvers.sarsop.arrays import RawSolution, read_request, write_error, write_result
from trim_pomdp.solvers.sarsop.setup import apply_worker_env_defaults

__all__ = ["FAKE_ENV", "handle", "main", "serve", "solve_function"]

#: environment variable naming a fake solve function ``"module:function"`` (tests only)
FAKE_ENV = "TRIM_POMDP_SARSOP_FAKE"


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
        write_result(result_path, raw)
    except Exception as exc:  # reported to the parent through the result file
        write_error(result_path, exc)
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
