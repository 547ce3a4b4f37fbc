"""Fake solve functions injected into the SARSOP worker through ``TRIM_POMDP_SARSOP_FAKE`` (tests only).

Each has the signature of :func:`trim_pomdp.solvers.sarsop.julia_bridge.solve_with_julia`. ``blind`` computes a real
answer from the arrays it receives (so a test can check what crossed the process boundary); the others misbehave in
the ways a Julia worker can.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from trim_pomdp.solvers.sarsop.julia_bridge import RawSolution


def blind_alphas(T: np.ndarray, R: np.ndarray, discount: float) -> np.ndarray:
    """Values of the blind policies "always do a", ``(I - γ T_a)^{-1} R[:, a]``, one row per action."""
    n_states = T.shape[1]
    return np.stack([np.linalg.solve(np.eye(n_states) - discount * T[a], R[:, a]) for a in range(T.shape[0])])


def mdp_values(T: np.ndarray, R: np.ndarray, discount: float, tol: float = 1e-10) -> np.ndarray:
    """Optimal values of the underlying fully observable MDP (an upper bound on the POMDP's)."""
    v = np.zeros(T.shape[1])
    while True:
        q = R + discount * np.einsum("ast,t->sa", T, v)
        new = q.max(axis=1)
        if np.max(np.abs(new - v)) < tol:
            return new
        v = new


def _pomdpsol_log(lower: float, upper: float, n_alphas: int, timed_out: bool) -> str:
    """A console log in pomdpsol's format (header, progress rows, 'SARSOP finishing', final row)."""
    sep = "-" * 79
    header = " Time   |#Trial |#Backup |LBound    |UBound    |Precision  |#Alphas |#Beliefs  "
    first = (
        f" 0       0       0        {lower - 5:.6g}    {upper + 5:.6g}    {upper - lower + 10:.6g}"
        "    3        1"
    )
    last = (
        f" 0.02    12      140      {lower:.6g}    {upper:.6g}    {upper - lower:.6g}    {n_alphas}        9"
    )
    reason = (
        "  Preset timeout reached\n  Timeout     : 1.000000s\n  Actual Time : 1.010000s"
        if timed_out
        else "  target precision reached\n  target precision  : 0.001000\n  precision reached : 0.000900 "
    )
    return "\n".join(
        [
            "Loading the model ...",
            "  input file   : model.pomdpx",
            "",
            sep,
            header,
            sep,
            first,
            last,
            sep,
            "",
            "SARSOP finishing ...",
            reason,
            "",
            sep,
            header,
            sep,
            last,
            sep,
            "",
            "Writing out policy ...",
            "  output file : policy.out",
            "",
        ]
    )


def blind(problem, *, backend, timeout, precision, workdir, options):
    """Blind-policy alpha vectors and the MDP upper bound, computed from the received 1-based triplets.

    ``options["raise_error"]`` makes it fail like a Julia exception instead (for keep-alive workers, whose
    environment, hence fake, is fixed when they start).
    """
    if options.get("raise_error"):
        julia_error(problem)
    T, O = problem.dense_T(), problem.dense_O()
    alphas = blind_alphas(T, problem.R, problem.discount)
    lower = float(np.max(alphas @ problem.b0))
    upper = float(mdp_values(T, problem.R, problem.discount) @ problem.b0)
    received = {
        "cwd": os.getcwd(),
        "backend": backend,
        "timeout": timeout,
        "precision": precision,
        "options": options,
        "row_sums_T": np.round(T.sum(axis=2), 12).tolist(),
        "row_sums_O": np.round(O.sum(axis=2), 12).tolist(),
        "terminals": problem.terminals.tolist(),
        "b0_support": (np.flatnonzero(problem.b0 > 0) + 1).tolist(),
        "pid": os.getpid(),
        "handle_signals": os.environ.get("PYTHON_JULIACALL_HANDLE_SIGNALS"),
    }
    Path(workdir, "fake_received.json").write_text(json.dumps(received))
    if backend == "sarsop.jl":  # SARSOP.jl returns no bounds: the parent reads them from pomdpsol's log
        Path(workdir, "pomdpsol.log").write_text(
            _pomdpsol_log(lower, upper, len(alphas), timed_out=bool(options.get("pretend_timeout")))
        )
        lower_out, upper_out, log = float("nan"), float("nan"), Path(workdir, "pomdpsol.log").read_text()
        iterations = -1
    else:
        lower_out, upper_out, log = lower, upper, ""
        iterations = 7
    return RawSolution(
        alphas=np.ascontiguousarray(alphas.T),  # Julia layout: |S| x K
        actions=np.arange(1, problem.n_actions + 1),  # 1-based, like action_map
        lower=lower_out,
        upper=upper_out,
        iterations=iterations,
        seconds=0.01,
        log=log,
        versions="julia=1.10.0;POMDPs=1.0.0;FAKE=0.0.1",
        extra={"options": options},
    )


def sleeper(problem, **kwargs):
    """Never returns; starts a grandchild (like pomdpsol) that must die with it."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    Path(kwargs["workdir"], "grandchild.pid").write_text(str(child.pid))
    time.sleep(600)


def crasher(problem, **kwargs):
    """Dies like a segfaulting Julia: no result, killed by a signal."""
    os.abort()


def exit_silently(problem, **kwargs):
    """Exits with status 0 without writing a result."""
    os._exit(0)


def garbage(problem, **kwargs):
    """Writes bytes that are not an .npz where the result belongs, then exits 0."""
    Path(sys.argv[2]).write_bytes(b"this is not a numpy archive\x00\x01")
    os._exit(0)


def wrong_format(problem, **kwargs):
    """Writes a valid .npz that is not a worker result."""
    with open(sys.argv[2], "wb") as fh:
        np.savez(fh, alphas=np.zeros((2, 2)))
    os._exit(0)


def julia_error(problem, **kwargs):
    """Raises like juliacall does when Julia throws."""
    raise RuntimeError(
        "MethodError: no method matching build_pomdp(::Int64)\nStacktrace: [1] top-level scope"
    )


def zero_based_actions(problem, **kwargs):
    """Returns 0-based actions (a bug the parent must catch)."""
    raw = blind(problem, **kwargs)
    raw.actions = raw.actions - 1
    return raw


def unavailable(problem, **kwargs):
    """Reports that Julia is not set up."""
    from trim_pomdp.exceptions import BackendUnavailableError

    raise BackendUnavailableError("the SARSOP backend needs Julia: not set up; run `trim-pomdp setup-julia`")
