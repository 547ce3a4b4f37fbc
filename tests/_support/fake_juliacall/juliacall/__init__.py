"""A stand-in for juliacall (tests only): emulates the two Julia functions the SARSOP backend calls.

Put ``tests/_fake_juliacall`` on ``sys.path`` (or PYTHONPATH for a worker) to exercise
trim_pomdp.solvers.sarsop.julia_bridge's juliacall glue (loading the backend file, passing arrays and keyword arguments,
unpacking the result tuple, wrapping errors) without Julia. ``build_pomdp`` checks its arguments the way
Julia's method signature and the `SparseTabularPOMDP` constructor would; ``solve_pomdp`` returns blind-policy
alpha vectors in Julia's layout.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

CALLS: list[tuple] = []


class JuliaError(Exception):
    """Like juliacall.JuliaError: str() is Julia's showerror text."""


class _ArrayValue:
    """Like juliacall.ArrayValue: a Julia array seen from Python, with to_numpy()."""

    def __init__(self, arr):
        self._arr = np.asarray(arr)

    def to_numpy(self):
        return self._arr.copy()


def _per_action(a, r, c, v, n_actions, n_rows, n_cols):
    for name, arr in (("a", a), ("rows", r), ("cols", c)):
        if not (isinstance(arr, np.ndarray) and arr.dtype == np.int64):
            raise JuliaError(f"MethodError: {name} must arrive as an Int64 array, got {type(arr)}")
    if not (isinstance(v, np.ndarray) and v.dtype == np.float64):
        raise JuliaError("MethodError: values must arrive as a Float64 array")
    if len(r) and (r.min() < 1 or r.max() > n_rows or c.min() < 1 or c.max() > n_cols):
        raise JuliaError("BoundsError: COO index out of range (indices must be 1-based)")
    return [
        sp.csc_matrix((v[a == k], (r[a == k] - 1, c[a == k] - 1)), shape=(n_rows, n_cols))
        for k in range(1, n_actions + 1)
    ]


def build_pomdp(
    n_states, n_actions, n_obs, t_a, t_s, t_sp, t_p, o_a, o_sp, o_o, o_p, R, b0, terminals, discount
):
    for name, x in (("n_states", n_states), ("n_actions", n_actions), ("n_obs", n_obs)):
        if type(x) is not int:
            raise JuliaError(f"MethodError: {name} must be an Integer, got {type(x).__name__}")
    if type(discount) is not float:
        raise JuliaError("MethodError: discount must be a Real")
    T = _per_action(t_a, t_s, t_sp, t_p, n_actions, n_states, n_states)
    O = _per_action(o_a, o_sp, o_o, o_p, n_actions, n_states, n_obs)
    R = np.asarray(R, dtype=float)
    if R.shape != (n_states, n_actions):
        raise JuliaError(f"R has size {R.shape}, expected ({n_states}, {n_actions})")
    CALLS.append(("build_pomdp", n_states, n_actions, n_obs))
    return SimpleNamespace(
        T=T,
        O=O,
        R=R,
        b0=np.asarray(b0, dtype=float),
        terminals=set(int(x) for x in terminals),
        discount=discount,
    )


def _make_module(backend_file: str):
    def solve_pomdp(m, workdir, timeout, precision, **kwargs):
        if not isinstance(workdir, str) or type(timeout) is not float or type(precision) is not float:
            raise JuliaError("MethodError: no method matching solve_pomdp(...)")
        CALLS.append(("solve_pomdp", backend_file, workdir, timeout, precision, dict(kwargs)))
        log = Path(workdir, "pomdpsol.log")
        if kwargs.get("fail"):
            log.write_text("Loading the model ...\n  input file   : model.pomdpx\nERROR: pomdpsol crashed\n")
            raise JuliaError(
                "ProcessFailedException: failed process: Process(`pomdpsol model.pomdpx`, ProcessExited(1))"
            )
        if backend_file == "sarsop_backend.jl":
            log.write_text("SARSOP finishing ...\n  target precision reached\n")
        n = m.R.shape[0]
        alphas = np.stack(
            [
                np.linalg.solve(np.eye(n) - m.discount * m.T[a].toarray(), m.R[:, a])
                for a in range(m.R.shape[1])
            ],
            axis=1,
        )  # |S| x K
        actions = np.arange(1, m.R.shape[1] + 1)
        lower = float(np.max(m.b0 @ alphas))
        if backend_file == "sarsop_backend.jl":  # SARSOP.jl reports no bounds (they are in pomdpsol's log)
            lo, up, iterations = float("nan"), float("nan"), -1
        else:
            lo, up, iterations = lower, lower + 1.0, 3
        return (
            _ArrayValue(alphas),
            _ArrayValue(actions),
            lo,
            up,
            iterations,
            0.01,
            "julia=1.10.4;POMDPs=1.0.0;POMDPTools=1.1.0",
        )

    return SimpleNamespace(build_pomdp=build_pomdp, solve_pomdp=solve_pomdp)


class _Main:
    def __init__(self):
        self._modules: dict[str, SimpleNamespace] = {}

    def seval(self, code: str):
        if code == "Base.include":
            return self._include
        if code in self._modules:
            return self._modules[code]
        raise JuliaError(f"UndefVarError: `{code}` not defined")

    def _include(self, module, path):
        if module is not self or not isinstance(path, str) or not os.path.isfile(path):
            raise JuliaError(f"SystemError: opening file {path!r}")
        text = Path(path).read_text()
        name = next(line.split()[1] for line in text.splitlines() if line.startswith("module "))
        self._modules[name] = _make_module(Path(path).name)
        CALLS.append(("include", Path(path).name))
        return self._modules[name]


Main = _Main()
__version__ = "0.0-fake"
