"""The Julia boundary of the SARSOP backend: numpy → Julia conversion, environment checks, juliacall calls.

This is the only module of trim-pomdp that imports ``juliacall``, and it does so lazily, inside
:func:`solve_with_julia`, after checking that the Julia environment has been set up (``trim-pomdp
setup-julia``); a solve never starts a download. Everything else here is plain numpy and runs without Julia:

* :func:`to_sparse_tabular` turns a :class:`~trim_pomdp.solvers.tabular.TabularPOMDP` (``T[a, s, s']``,
  ``O[a, s', o]``, ``R[s, a]``, 0-based) into the 1-based coordinate triplets from which the Julia side
  (``julia/common.jl``, ``build_pomdp``) builds ``POMDPTools.SparseTabularPOMDP(T, R, O, initial_probs,
  terminal_states, discount)`` with ``T[a][s, sp]`` and ``O[a][sp, o]`` one sparse matrix per action.
* :class:`RawSolution` is what a backend returns, in Julia's layout (``alphas`` of shape ``(n_states, K)``,
  1-based actions); :func:`policy_arrays` converts it to the package's layout.
* :func:`julia_status` says quickly whether Julia can be used here, and why not.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import BackendUnavailableError, ModelCheckError, SolverError

__all__ = [
    "BACKENDS",
    "RawSolution",
    "SetupPlan",
    "SparseTabularArrays",
    "julia_available",
    "julia_source_dir",
    "julia_status",
    "plan_setup",
    "policy_arrays",
    "solve_with_julia",
    "to_sparse_tabular",
]

#: backend name -> (Julia source file in ``trim_pomdp/solvers/julia``, module it defines)
BACKENDS: dict[str, tuple[str, str]] = {
    "sarsop.jl": ("sarsop_backend.jl", "TrimPomdpSARSOP"),
    "native": ("native_backend.jl", "TrimPomdpNativeSARSOP"),
}

#: juliacall options the worker process sets (unless the user set them) before juliacall is first imported:
#: Julia's own signal handling, recommended by PythonCall's FAQ for multithreaded Julia code called from
#: Python. In-process solves (``isolate=False``) leave the user's process settings alone.
JULIACALL_ENV_DEFAULTS: dict[str, str] = {"PYTHON_JULIACALL_HANDLE_SIGNALS": "yes"}


def apply_worker_env_defaults() -> None:
    """Set :data:`JULIACALL_ENV_DEFAULTS` in this process's environment where the user has not set them."""
    for key, value in JULIACALL_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


REQUEST_FORMAT = "trim-pomdp/sarsop-request/1"


def julia_source_dir() -> Path:
    """Directory of the Julia sources shipped with the package (``trim_pomdp/solvers/julia``)."""
    return Path(__file__).resolve().parent / "julia"


# ----------------------------------------------------------------------------------------------------
# numpy -> SparseTabularPOMDP arrays (pure, testable without Julia)
# ----------------------------------------------------------------------------------------------------
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

    _INT_FIELDS = ("T_a", "T_s", "T_sp", "O_a", "O_sp", "O_o", "terminals")
    _FLOAT_FIELDS = ("T_p", "O_p", "R", "b0")

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
    def from_arrays(cls, data) -> SparseTabularArrays:
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


def _coo_1based(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nonzeros of a 3-D array as 1-based index vectors (C order: sorted by axis 0, 1, 2) plus values."""
    a, i, j = np.nonzero(arr)
    return (
        (a + 1).astype(np.int64),
        (i + 1).astype(np.int64),
        (j + 1).astype(np.int64),
        np.ascontiguousarray(arr[a, i, j], dtype=np.float64),
    )


def to_sparse_tabular(model, *, check: bool = True, atol: float = 1e-9) -> SparseTabularArrays:
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
    T = np.asarray(model.T, dtype=np.float64)
    O = np.asarray(model.O, dtype=np.float64)
    R = np.ascontiguousarray(model.R, dtype=np.float64)
    b0 = np.ascontiguousarray(model.b0, dtype=np.float64)
    n_actions, n_states, _ = T.shape
    n_obs = O.shape[2]
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
                if abs(T[a, s, s] - 1.0) > atol:
                    raise ModelCheckError(
                        f"state {s} is marked terminal but T[{a}, {s}, {s}] = {T[a, s, s]!r}, not 1: "
                        "POMDPs.jl treats terminal states as absorbing, so this would solve a different "
                        "model; make the state absorbing or unmark it"
                    )
                if abs(R[s, a]) > atol:
                    raise ModelCheckError(
                        f"state {s} is marked terminal but R[{s}, {a}] = {R[s, a]!r}, not 0: POMDPs.jl gives "
                        "terminal states zero reward, so this would solve a different model"
                    )
        term_idx = (term_idx + 1).astype(np.int64)
    T_a, T_s, T_sp, T_p = _coo_1based(T)
    O_a, O_sp, O_o, O_p = _coo_1based(O)
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


# ----------------------------------------------------------------------------------------------------
# What a backend returns, and its conversion to the package's policy layout
# ----------------------------------------------------------------------------------------------------
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
# Is Julia usable here?
# ----------------------------------------------------------------------------------------------------
def _bypass_vars() -> tuple[str | None, str | None]:
    return os.environ.get("PYTHON_JULIACALL_EXE"), os.environ.get("PYTHON_JULIACALL_PROJECT")


def julia_status() -> tuple[bool, str]:
    """Whether the SARSOP backend can start Julia here without installing anything, and why not.

    Fast (no Julia process is started except ``julia --version`` by juliapkg's own up-to-date check) and never
    downloads. Usable means: ``juliacall`` is installed, and either ``PYTHON_JULIACALL_EXE`` and
    ``PYTHON_JULIACALL_PROJECT`` point at an existing Julia and project, or juliapkg's environment has been
    resolved (``trim-pomdp setup-julia``) and is still up to date.

    Returns
    -------
    (bool, str)
        ``(True, description)`` or ``(False, reason with the fix)``.
    """
    if importlib.util.find_spec("juliacall") is None:
        return False, "the Python package 'juliacall' is not installed (pip install 'trim-pomdp[julia]')"
    exe, project = _bypass_vars()
    if exe or project:
        if not (exe and project):
            return False, "PYTHON_JULIACALL_EXE and PYTHON_JULIACALL_PROJECT must be set together"
        if not (os.path.isfile(exe) or shutil.which(exe)):
            return False, f"PYTHON_JULIACALL_EXE={exe!r} is not an executable"
        if not os.path.isdir(project):
            return False, f"PYTHON_JULIACALL_PROJECT={project!r} is not a directory"
        return True, f"juliacall uses {exe} with project {project}"
    if importlib.util.find_spec("juliapkg") is None:
        return False, "the Python package 'juliapkg' is not installed (pip install 'trim-pomdp[julia]')"
    try:
        from juliapkg.deps import can_skip_resolve
        from juliapkg.state import STATE
    except ImportError as exc:  # a juliapkg too different from the one this was written against
        return False, f"cannot inspect juliapkg's state ({exc}); run `trim-pomdp setup-julia`"
    try:
        meta = can_skip_resolve()
    except Exception as exc:
        return False, f"juliapkg cannot check its environment: {exc}"
    if not meta:
        return False, (
            f"the Julia environment at {STATE.get('project')} is not set up or out of date; "
            "run `trim-pomdp setup-julia`"
        )
    return True, f"Julia {meta.get('version')} at {meta.get('executable')}, project {STATE.get('project')}"


def julia_available() -> bool:
    """``True`` if :func:`julia_status` says Julia can be used here."""
    return julia_status()[0]


# ----------------------------------------------------------------------------------------------------
# `trim-pomdp setup-julia`: decide quickly whether resolving can work here
# ----------------------------------------------------------------------------------------------------
#: where juliapkg downloads Julia from (its list of releases) and the default Julia package server
JULIA_DOWNLOAD_HOST = "julialang-s3.julialang.org"
DEFAULT_PKG_SERVER = "https://pkg.julialang.org"


def _module_installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _host_port(url: str, default_port: int = 443) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else f"https://{url}")
    port = parsed.port or (80 if parsed.scheme == "http" else default_port)
    return parsed.hostname or url, port


def probe(host: str, port: int, timeout: float) -> str | None:
    """Try a TCP connection to ``host:port`` within ``timeout`` s (DNS included); ``None`` or the error."""
    result: list[str | None] = ["timed out"]

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result[0] = None
        except OSError as exc:
            result[0] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return result[0]


def find_local_julia() -> str | None:
    """A Julia executable juliapkg would use without downloading one: ``PYTHON_JULIAPKG_EXE``, juliapkg's own
    install, ``juliaup`` or ``julia`` on PATH (``None`` if there is none)."""
    exe = os.environ.get("PYTHON_JULIAPKG_EXE")
    if exe:
        return exe if (os.path.isfile(exe) or shutil.which(exe)) else None
    try:
        from juliapkg.state import STATE

        installed = shutil.which(os.path.join(STATE["install"], "bin", "julia"))
        if installed:
            return installed
    except Exception:
        pass
    return shutil.which("julia") or shutil.which("juliaup")


def _juliapkg_offline() -> bool:
    """juliapkg's offline switch (``PYTHON_JULIAPKG_OFFLINE`` or ``-X juliapkg-offline``)."""
    try:
        from juliapkg.state import get_config_bool

        return bool(get_config_bool("offline")[0])
    except (ImportError, ValueError):  # older juliapkg, or a value it rejects: read the variable ourselves
        return os.environ.get("PYTHON_JULIAPKG_OFFLINE", "").strip().lower() in ("yes", "true", "1")


@dataclass
class SetupPlan:
    """What ``trim-pomdp setup-julia`` would do, decided without starting a download.

    Attributes
    ----------
    action : {"resolve", "done", "bypass", "blocked"}
        ``"resolve"``: run ``juliapkg.resolve()`` (installs Julia/packages); ``"done"``: juliapkg's
        environment is already resolved and current; ``"bypass"``: juliacall is pointed at a Julia and project
        by ``PYTHON_JULIACALL_EXE``/``PYTHON_JULIACALL_PROJECT``, juliapkg is not used; ``"blocked"``: it
        cannot work here, ``problems`` says why.
    julia : str or None
        Local Julia executable, if any.
    offline : bool
        ``PYTHON_JULIAPKG_OFFLINE`` is on.
    hosts : list of (host, port)
        Hosts the resolve needs to reach (probed).
    problems : list of str
        What is missing, each with how to fix it.
    """

    action: str
    julia: str | None = None
    offline: bool = False
    hosts: list[tuple[str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def plan_setup(probe_timeout: float = 3.0, force: bool = False) -> SetupPlan:
    """Decide what ``setup-julia`` can do here, within seconds (network probes run with a timeout).

    ``force``: plan a fresh resolve even if juliapkg's environment is current (the probes then still run).
    """
    missing = [name for name in ("juliacall", "juliapkg") if not _module_installed(name)]
    if missing:
        return SetupPlan(
            "blocked",
            problems=[
                f"missing Python package(s) {', '.join(missing)}: "
                "install them with pip install 'trim-pomdp[julia]'"
            ],
        )
    exe, project = _bypass_vars()
    if exe or project:
        ok, why = julia_status()
        return SetupPlan("bypass" if ok else "blocked", julia=exe, problems=[] if ok else [why])
    if not force and julia_status()[0]:
        return SetupPlan("done", julia=find_local_julia())
    offline = _juliapkg_offline()
    julia = find_local_julia()
    plan = SetupPlan("resolve", julia=julia, offline=offline)
    if os.environ.get("PYTHON_JULIAPKG_EXE") and julia is None:
        plan.problems.append(
            f"PYTHON_JULIAPKG_EXE={os.environ['PYTHON_JULIAPKG_EXE']!r} does not exist or is not executable"
        )
    if offline:
        if julia is None:
            plan.problems.append(
                "PYTHON_JULIAPKG_OFFLINE is on and no Julia was found: set "
                "PYTHON_JULIAPKG_EXE=/path/to/julia (Julia >= 1.10 whose depot already holds POMDPs, "
                "POMDPTools, SARSOP, NativeSARSOP and PythonCall)"
            )
    else:
        proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
        if proxy:
            plan.hosts.append(_host_port(proxy, default_port=80))
        else:
            if not os.environ.get("PYTHON_JULIAPKG_EXE"):
                plan.hosts.append((JULIA_DOWNLOAD_HOST, 443))  # juliapkg looks up Julia releases there
            plan.hosts.append(_host_port(os.environ.get("JULIA_PKG_SERVER") or DEFAULT_PKG_SERVER))
        for host, port in plan.hosts:
            error = probe(host, port, probe_timeout)
            if error is not None:
                via = " (the HTTPS proxy)" if proxy else ""
                plan.problems.append(
                    f"cannot reach {host}:{port}{via} ({error}); this machine looks offline. To use a "
                    "Julia that is already installed, with the packages in its depot, set "
                    "PYTHON_JULIAPKG_EXE=/path/to/julia and PYTHON_JULIAPKG_OFFLINE=yes, or point "
                    "PYTHON_JULIACALL_EXE and PYTHON_JULIACALL_PROJECT at "
                    "a Julia and a project holding POMDPs, POMDPTools, SARSOP, NativeSARSOP and PythonCall "
                    "(see julia/Project.toml)"
                )
    if plan.problems:
        plan.action = "blocked"
    return plan


# ----------------------------------------------------------------------------------------------------
# juliacall (only here, only lazily)
# ----------------------------------------------------------------------------------------------------
_MODULES: dict[str, Any] = {}


def _juliacall():
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


def _backend_module(backend: str):
    """The Julia module of ``backend``, loading its source file into ``Main`` on first use (cached)."""
    if backend not in BACKENDS:
        raise SolverError(f"unknown SARSOP backend {backend!r}; choose one of {sorted(BACKENDS)}")
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


def _to_numpy(value, dtype) -> np.ndarray:
    """A copy of a Julia array (juliacall ``ArrayValue``) as a numpy array."""
    to_numpy = getattr(value, "to_numpy", None)
    arr = to_numpy() if callable(to_numpy) else value
    return np.array(arr, dtype=dtype, copy=True)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


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
    backend : {"sarsop.jl", "native"}
    timeout : float
        Seconds given to the solver (pomdpsol ``--timeout`` / NativeSARSOP ``max_time``).
    precision : float
        Target gap ``V̄(b0) - V̲(b0)``.
    workdir : path
        Existing directory for every file the solver writes (SARSOP.jl: ``model.pomdpx``, ``policy.out``,
        ``pomdpsol.log``).
    options : dict, optional
        Extra keyword arguments of the Julia ``SARSOPSolver`` constructor.

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
