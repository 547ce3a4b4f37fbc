"""Is Julia usable here, and how to make it so: the environment checks and ``trim-pomdp setup-julia``.

Nothing here imports juliacall (which would start Julia, and might download it): :func:`julia_status` answers
within seconds from juliapkg's own bookkeeping, :func:`plan_setup` decides what ``setup-julia`` can do by probing
the hosts a download needs (with a timeout), and :func:`setup_julia` carries the plan out: it resolves the Julia
environment declared in ``trim_pomdp/juliapkg.json`` with juliapkg (which downloads Julia if none is found, then
installs and precompiles POMDPs, POMDPTools, SARSOP, NativeSARSOP and PythonCall) and checks the setup by solving
the Tiger POMDP with each backend in a child process.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np

from trim_pomdp.exceptions import BackendUnavailableError, TrimPomdpError
from trim_pomdp.registry import SARSOP_BACKENDS, canonical_sarsop_backend
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = [
    "DEFAULT_PKG_SERVER",
    "JULIACALL_ENV_DEFAULTS",
    "JULIA_DOWNLOAD_HOST",
    "BackendCheck",
    "SetupPlan",
    "SetupReport",
    "apply_worker_env_defaults",
    "check_backend",
    "find_local_julia",
    "julia_available",
    "julia_status",
    "plan_setup",
    "probe",
    "setup_julia",
    "tiger_pomdp",
]

#: juliacall options the worker process sets (unless the user set them) before juliacall is first imported:
#: Julia's own signal handling, recommended by PythonCall's FAQ for multithreaded Julia code called from
#: Python. In-process solves (``isolate=False``) leave the user's process settings alone.
JULIACALL_ENV_DEFAULTS: dict[str, str] = {"PYTHON_JULIACALL_HANDLE_SIGNALS": "yes"}

#: where juliapkg downloads Julia from (its list of releases) and the default Julia package server
JULIA_DOWNLOAD_HOST = "julialang-s3.julialang.org"
DEFAULT_PKG_SERVER = "https://pkg.julialang.org"

_PACKAGES = "POMDPs, POMDPTools, SARSOP, NativeSARSOP"


def apply_worker_env_defaults() -> None:
    """Set :data:`JULIACALL_ENV_DEFAULTS` in this process's environment where the user has not set them."""
    for key, value in JULIACALL_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


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
    """A Julia executable juliapkg would use without downloading one, or ``None`` if there is none.

    Looked for in this order: ``PYTHON_JULIAPKG_EXE``, juliapkg's own install, ``julia`` or ``juliaup`` on PATH.
    """
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

    Parameters
    ----------
    probe_timeout : float, default 3.0
        Seconds allowed to reach each host the resolve needs.
    force : bool, default False
        Plan a fresh resolve even if juliapkg's environment is current (the probes then still run).

    Returns
    -------
    SetupPlan
        What to do, or (action ``"blocked"``) what is missing and how to fix it.
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
                "PYTHON_JULIAPKG_OFFLINE is on and no Julia was found: set PYTHON_JULIAPKG_EXE=/path/to/julia "
                f"(Julia >= 1.10 whose depot already holds {_PACKAGES} and PythonCall)"
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
                    f"cannot reach {host}:{port}{via} ({error}); this machine looks offline. To use a Julia "
                    "that is already installed, with the packages in its depot, set "
                    "PYTHON_JULIAPKG_EXE=/path/to/julia and PYTHON_JULIAPKG_OFFLINE=yes, or point "
                    "PYTHON_JULIACALL_EXE and PYTHON_JULIACALL_PROJECT at a Julia and a project holding "
                    f"{_PACKAGES} and PythonCall (see julia/Project.toml)"
                )
    if plan.problems:
        plan.action = "blocked"
    return plan


# ----------------------------------------------------------------------------------------------------
# carrying the plan out
# ----------------------------------------------------------------------------------------------------
def tiger_pomdp() -> TabularPOMDP:
    """The classic Tiger POMDP (γ = 0.95, listen −1, wrong door −100, right door +10, accuracy 0.85).

    Optimal value at the uniform belief ≈ 19.37 (pomdpsol: LB 19.3711, UB 19.3721).
    """
    listen, reset = np.eye(2), np.full((2, 2), 0.5)
    T = np.stack([listen, reset, reset])
    O = np.stack([np.array([[0.85, 0.15], [0.15, 0.85]]), reset, reset])
    R = np.array([[-1.0, -100.0, 10.0], [-1.0, 10.0, -100.0]])
    return TabularPOMDP(
        T=T,
        O=O,
        R=R,
        b0=np.array([0.5, 0.5]),
        discount=0.95,
        state_names=["tiger-left", "tiger-right"],
        action_names=["listen", "open-left", "open-right"],
        observation_names=["hear-left", "hear-right"],
    )


#: V(b0) of :func:`tiger_pomdp` that a working backend must reach, and the tolerance of the check
TIGER_VALUE, TIGER_TOLERANCE = 19.37, 0.1


@dataclass
class BackendCheck:
    """The outcome of solving the Tiger POMDP with one backend (``error`` set when the solve failed)."""

    backend: str
    lower_bound: float = math.nan
    upper_bound: float = math.nan
    vectors: int = 0
    seconds: float = math.nan
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the solve worked and found the known value."""
        return self.error is None and abs(self.lower_bound - TIGER_VALUE) < TIGER_TOLERANCE

    @property
    def status(self) -> str:
        """``"ok"``, ``"failed"`` (the solve raised) or ``"wrong value"``."""
        return "ok" if self.ok else ("failed" if self.error is not None else "wrong value")

    def row(self) -> tuple[str, str, str, str, str]:
        """Backend, lower and upper bound, number of vectors and seconds, formatted for a table."""
        if self.error is not None:
            return (self.backend, "-", "-", "-", "-")
        upper = f"{self.upper_bound:.4f}" if math.isfinite(self.upper_bound) else "n/a"
        return (self.backend, f"{self.lower_bound:.4f}", upper, str(self.vectors), f"{self.seconds:.1f}")

    @property
    def problem(self) -> str | None:
        """What went wrong, for the summary (``None`` when :attr:`ok`)."""
        if self.error is not None:
            return f"{self.backend}: {self.error}"
        if not self.ok:
            return f"{self.backend}: V(b0) lower bound {self.lower_bound:.4f}, expected about {TIGER_VALUE}"
        return None


@dataclass
class SetupReport:
    """What :func:`setup_julia` did: the plan, a one-line description of it and the backend checks."""

    plan: SetupPlan
    description: str
    checks: list[BackendCheck] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """The failed checks, each with what went wrong."""
        return [c.problem for c in self.checks if c.problem is not None]


def _describe(plan: SetupPlan) -> str:
    if plan.action == "done":
        return "the Julia environment is already set up and current"
    if plan.action == "bypass":
        return (
            "juliacall is configured by PYTHON_JULIACALL_EXE/PYTHON_JULIACALL_PROJECT (juliapkg is not used)"
        )
    how = f" using {plan.julia}" if plan.julia else " (downloading Julia)"
    return f"resolve the Julia environment with juliapkg{how}" + (" offline" if plan.offline else "")


def _resolve(force: bool) -> None:
    import juliapkg

    try:
        juliapkg.resolve(force=force)
    except Exception as exc:  # juliapkg raises plain exceptions of many kinds
        raise BackendUnavailableError(
            f"juliapkg could not set up Julia: {exc}\nIf this machine is offline, set PYTHON_JULIAPKG_EXE to an "
            "installed Julia and PYTHON_JULIAPKG_OFFLINE=yes."
        ) from None


def check_backend(backend: str, check_timeout: float = 300.0) -> BackendCheck:
    """Solve the Tiger POMDP with ``backend`` in a child process (Julia's start-up within ``check_timeout`` s)."""
    from trim_pomdp.solvers.sarsop.solver import SarsopSolver

    solver = SarsopSolver(backend=backend, time_limit=10.0, startup_timeout=check_timeout)
    try:
        policy = solver.solve(tiger_pomdp())
    except TrimPomdpError as exc:
        return BackendCheck(backend, error=str(exc))
    info = policy.info
    assert info is not None  # SarsopSolver always reports
    return BackendCheck(
        backend, info.lower_bound, info.upper_bound, int(policy.alphas.shape[0]), info.seconds
    )


def setup_julia(
    *,
    check: bool = True,
    backends: Sequence[str] = tuple(SARSOP_BACKENDS),
    force: bool = False,
    probe_timeout: float = 3.0,
    check_timeout: float = 300.0,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> SetupReport:
    """Set up the Julia side of the SARSOP backend: plan, resolve with juliapkg if needed, check each backend.

    Parameters
    ----------
    check : bool, default True
        After the setup, solve the Tiger POMDP with each of ``backends`` (in a child process).
    backends : sequence of str
        Backends to check (registered names or their aliases; default: all).
    force : bool, default False
        Re-resolve even if juliapkg's environment looks up to date.
    probe_timeout : float, default 3.0
        Seconds allowed to reach each download host (offline detection).
    check_timeout : float, default 300.0
        Wall-clock allowance of each check solve for starting Julia.
    dry_run : bool, default False
        Only plan, and say what would be done.
    echo : callable, default print
        Receives one line per step, for progress messages.

    Returns
    -------
    SetupReport
        The plan and the checks; ``report.problems`` lists the failed checks.

    Raises
    ------
    BackendUnavailableError
        When Julia cannot be set up here (the message lists what is missing and how to fix it) or juliapkg
        failed.
    """
    names = [canonical_sarsop_backend(b) for b in backends]
    started = time.perf_counter()
    plan = plan_setup(probe_timeout=probe_timeout, force=force)
    if plan.action == "blocked":
        raise BackendUnavailableError(
            "Julia cannot be set up here:\n" + "\n".join(f"  - {p}" for p in plan.problems)
        )
    report = SetupReport(plan, _describe(plan))
    echo(f"setup-julia: {report.description} (checked in {time.perf_counter() - started:.1f} s)")
    if dry_run:
        return report
    if plan.action == "resolve":
        echo("Resolving (this downloads and precompiles packages the first time; it can take minutes)...")
        _resolve(force)
    if check:
        for backend in names:
            echo(f"Checking {backend} (starts Julia in a child process)...")
            report.checks.append(check_backend(backend, check_timeout))
    return report
