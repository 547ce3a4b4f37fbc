"""What crosses the Julia boundary: the model as 1-based sparse triplets, the backend's answer, the npz files.

Everything here is plain numpy and runs without Julia:

* :func:`to_sparse_tabular` turns a :class:`~trim_pomdp.solvers.tabular.TabularPOMDP` (``T[a, s, s']``,
  ``O[a, s', o]``, ``R[s, a]``, 0-based) into the 1-based coordinate triplets from which the Julia side
  (``julia/common.jl``, ``build_pomdp``) builds ``POMDPTools.SparseTabularPOMDP(T, R, O, initial_probs,
  terminal_states, discount)`` with ``T[a][s, sp]`` and ``O[a][sp, o]`` one sparse matrix per action.
* :class:`RawSolution` is what a backend returns, in Julia's layout (``alphas`` of shape ``(n_states, K)``,
  1-based actions); :func:`policy_arrays` converts it to the package's layout.
* :func:`write_request` / :func:`read_request` and :func:`read_result` are the files through which the parent
  and the worker process exchange them: ``.npz`` archives of numeric and string arrays only, read with
  ``allow_pickle=False`` on both sides and written atomically.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from trim_pomdp.exceptions import ModelCheckError, SolverError

__all__ = [
    "REQUEST_FORMAT",
    "RESULT_FORMAT",
    "RawSolution",
    "SparseTabularArrays",
    "WorkerError",
    "policy_arrays",
    "read_request",
    "read_result",
    "to_sparse_tabular",
    "write_error",
    "write_request",
    "write_result",
]

REQUEST_FORMAT = "trim-pomdp/sarsop-request/1"
RESULT_FORMAT = "trim-pomdp/sarsop-result/1"


@dataclass(frozen=True)
class SparseTabularArrays:
    """A tabular POMDP as the 1-based coordinate triplets handed to Julia's ``build_pomdp``.

    ``T_a, T_s, T_sp, T_p`` list the nonzeros ``T[a][s, sp] = p`` (1-based ``a, s, sp``) and ``O_a, O_sp, O_o,
    O_p`` the nonzeros ``O[a][sp, o] = p``; entries are sorted by action, then row, then column. ``R`` is the
    dense ``(n_states, n_actions)`` reward matrix, ``b0`` the dense initial belief, ``terminals`` the 1-based
    indices of the terminal states.
    """

    n_states: int
    n_actions: int
    n_observations: int
    T_a: np.ndarray
    T_s: np.ndarray
    T_sp: np.ndarray
    T_p: np.ndarray
    O_a: np.ndarray
    O_sp: np.ndarray
    O_o: np.ndarray
    O_p: np.ndarray
    R: np.ndarray
    b0: np.ndarray
    terminals: np.ndarray
    discount: float

    _INT_FIELDS: ClassVar[tuple[str, ...]] = ("T_a", "T_s", "T_sp", "O_a", "O_sp", "O_o", "terminals")
    _FLOAT_FIELDS: ClassVar[tuple[str, ...]] = ("T_p", "O_p", "R", "b0")

    def dense_T(self) -> np.ndarray:
        """``T[a, s, s']`` (0-based, dense) rebuilt from the triplets."""
        out = np.zeros((self.n_actions, self.n_states, self.n_states))
        out[self.T_a - 1, self.T_s - 1, self.T_sp - 1] = self.T_p
        return out

    def dense_O(self) -> np.ndarray:
        """``O[a, s', o]`` (0-based, dense) rebuilt from the triplets."""
        out = np.zeros((self.n_actions, self.n_states, self.n_observations))
        out[self.O_a - 1, self.O_sp - 1, self.O_o - 1] = self.O_p
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fields as named numpy arrays (what the worker request ``.npz`` stores)."""
        out = {name: np.asarray(getattr(self, name)) for name in self._INT_FIELDS + self._FLOAT_FIELDS}
        out["sizes"] = np.array([self.n_states, self.n_actions, self.n_observations], dtype=np.int64)
        out["discount"] = np.array(float(self.discount))
        return out

    @classmethod
    def from_arrays(cls, data: Mapping[str, Any]) -> SparseTabularArrays:
        """Inverse of :meth:`to_arrays` (``data`` is a mapping such as an open ``np.load`` file)."""
        n_states, n_actions, n_observations = (int(x) for x in np.asarray(data["sizes"]).reshape(3))
        kwargs: dict[str, Any] = {
            name: np.ascontiguousarray(data[name], dtype=np.int64) for name in cls._INT_FIELDS
        }
        kwargs.update(
            {name: np.ascontiguousarray(data[name], dtype=np.float64) for name in cls._FLOAT_FIELDS}
        )
        return cls(
            n_states=n_states,
            n_actions=n_actions,
            n_observations=n_observations,
            discount=float(data["discount"]),
            **kwargs,
        )


def _coo_1based(mats: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nonzeros of per-action matrices as 1-based index vectors (sorted by action, row, column) plus values."""
    parts = []
    for a, m in enumerate(mats):
        c = sp.csr_matrix(m, dtype=np.float64)
        c.sum_duplicates()
        c.eliminate_zeros()
        c.sort_indices()
        rows = np.repeat(np.arange(c.shape[0], dtype=np.int64), np.diff(c.indptr))
        parts.append(
            (np.full(len(rows), a + 1, dtype=np.int64), rows + 1, c.indices.astype(np.int64) + 1, c.data)
        )
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        np.ascontiguousarray(np.concatenate([p[3] for p in parts]), dtype=np.float64),
    )


def to_sparse_tabular(model: Any, *, check: bool = True, atol: float = 1e-9) -> SparseTabularArrays:
    """Convert a tabular POMDP into the 1-based sparse arrays of ``POMDPTools.SparseTabularPOMDP``.

    Parameters
    ----------
    model : TabularPOMDP
        ``T[a, s, s']``, ``O[a, s', o]``, ``R[s, a]``, ``b0``, ``discount`` and optionally ``terminal`` (a
        boolean mask of absorbing zero-reward states).
    check : bool, default True
        Run :meth:`TabularPOMDP.check` first (shapes, ranges, row sums).
    atol : float, default 1e-9
        Tolerance of the terminal-state check.

    Returns
    -------
    SparseTabularArrays
        Exactly the nonzeros of ``T`` and ``O`` (no thresholding), ``R``, ``b0`` and the terminal states,
        1-based.

    Raises
    ------
    ModelCheckError
        If the arrays are inconsistent, or a state marked terminal is not absorbing with zero reward under
        every action: SparseTabularPOMDP's ``terminal_states`` make POMDPs.jl solvers treat those states as
        absorbing with reward 0, so marking any other state terminal would silently solve a different model.
    """
    if check:
        model.check()
    if hasattr(model, "transition_matrices"):  # dense or sparse TabularPOMDP: its per-action CSR matrices
        T_mats, O_mats = model.transition_matrices(), model.observation_matrices()
    else:
        T_mats = [sp.csr_matrix(t) for t in np.asarray(model.T, dtype=np.float64)]
        O_mats = [sp.csr_matrix(o) for o in np.asarray(model.O, dtype=np.float64)]
    R = np.ascontiguousarray(model.R, dtype=np.float64)
    b0 = np.ascontiguousarray(model.b0, dtype=np.float64)
    n_actions, n_states = len(T_mats), T_mats[0].shape[0]
    n_obs = O_mats[0].shape[1]
    terminal = getattr(model, "terminal", None)
    if terminal is None:
        term_idx = np.zeros(0, dtype=np.int64)
    else:
        mask = np.asarray(terminal, dtype=bool).reshape(-1)
        if mask.shape != (n_states,):
            raise ModelCheckError(
                f"terminal must be a boolean mask of length {n_states}, got shape {mask.shape}"
            )
        term_idx = np.flatnonzero(mask)
        for s in term_idx:
            for a in range(n_actions):
                stay = float(T_mats[a][s, s])
                if abs(stay - 1.0) > atol:
                    raise ModelCheckError(
                        f"state {s} is marked terminal but T[{a}, {s}, {s}] = {stay!r}, not 1: "
                        "POMDPs.jl treats terminal states as absorbing, so this would solve a different "
                        "model; make the state absorbing or unmark it"
                    )
                if abs(R[s, a]) > atol:
                    raise ModelCheckError(
                        f"state {s} is marked terminal but R[{s}, {a}] = {R[s, a]!r}, not 0: POMDPs.jl gives "
                        "terminal states zero reward, so this would solve a different model"
                    )
        term_idx = (term_idx + 1).astype(np.int64)
    T_a, T_s, T_sp, T_p = _coo_1based(T_mats)
    O_a, O_sp, O_o, O_p = _coo_1based(O_mats)
    return SparseTabularArrays(
        n_states=int(n_states),
        n_actions=int(n_actions),
        n_observations=int(n_obs),
        T_a=T_a,
        T_s=T_s,
        T_sp=T_sp,
        T_p=T_p,
        O_a=O_a,
        O_sp=O_sp,
        O_o=O_o,
        O_p=O_p,
        R=R,
        b0=b0,
        terminals=term_idx,
        discount=float(model.discount),
    )


@dataclass
class RawSolution:
    """A backend's answer in Julia's layout.

    Attributes
    ----------
    alphas : ndarray, shape (n_states, n_vectors)
        One alpha vector per column (``reduce(hcat, alphavectors(policy))``).
    actions : ndarray of int, shape (n_vectors,)
        1-based action of each vector (``policy.action_map`` of a SparseTabularPOMDP).
    lower, upper : float
        Bounds on ``V*(b0)`` reported by the backend (``nan`` if it reports none).
    iterations : int
        Trials/iterations reported by the backend (``-1`` if unknown).
    seconds : float
        Time the backend spent solving.
    log : str
        Console output of the solver (pomdpsol's log for SARSOP.jl).
    versions : str
        ``"julia=...;POMDPs=...;..."`` as reported by the Julia side.
    """

    alphas: np.ndarray
    actions: np.ndarray
    lower: float = float("nan")
    upper: float = float("nan")
    iterations: int = -1
    seconds: float = float("nan")
    log: str = ""
    versions: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def policy_arrays(raw: RawSolution, n_states: int, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """Convert a :class:`RawSolution` to ``(alphas (K, n_states), actions (K,) 0-based)``.

    Raises
    ------
    SolverError
        If the backend's arrays have the wrong shape, non-finite values or actions outside ``1..n_actions``.
    """
    alphas = np.asarray(raw.alphas, dtype=np.float64)
    actions = np.asarray(raw.actions)
    if alphas.ndim == 1:
        alphas = alphas.reshape(-1, 1)
    if alphas.ndim != 2 or alphas.shape[0] != n_states:
        raise SolverError(f"backend returned alpha vectors of shape {alphas.shape}, expected ({n_states}, K)")
    if actions.shape != (alphas.shape[1],):
        raise SolverError(f"backend returned {actions.shape} actions for {alphas.shape[1]} alpha vectors")
    if alphas.shape[1] == 0:
        raise SolverError("backend returned no alpha vectors")
    if not np.all(np.isfinite(alphas)):
        raise SolverError("backend returned non-finite alpha-vector entries")
    if not np.issubdtype(actions.dtype, np.integer):
        if not np.all(np.equal(np.mod(actions, 1), 0)):
            raise SolverError(f"backend returned non-integer actions {actions[:5]!r}")
    actions = actions.astype(np.int64)
    if actions.min() < 1 or actions.max() > n_actions:
        raise SolverError(
            f"backend returned actions in [{actions.min()}, {actions.max()}], expected 1-based indices in "
            f"[1, {n_actions}]"
        )
    return np.ascontiguousarray(alphas.T), actions - 1


# ----------------------------------------------------------------------------------------------------
# request and result files of the worker process
# ----------------------------------------------------------------------------------------------------
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


def _atomic_savez(path: Path, arrays: dict[str, Any]) -> None:
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
    """Write a worker request file: the model and the parameters of the solve.

    ``timeout`` is the solve's time limit as the Julia side calls it (pomdpsol's ``--timeout``, NativeSARSOP's
    ``max_time``); ``options`` are further keyword arguments of the Julia solver, as JSON.
    """
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


def write_result(path: Path, raw: RawSolution) -> None:
    """Write the worker's answer (``status`` ``"ok"``)."""
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


def write_error(path: Path, exc: BaseException) -> None:
    """Write the error the worker caught (``status`` ``"error"``, its type, message and traceback)."""
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
