"""SARSOP through POMDPs.jl (juliacall): the solver the TRIM paper used, behind the ``Solver`` protocol.

``SarsopSolver(backend="sarsop.jl")`` runs SARSOP.jl, i.e. APPL's C++ ``pomdpsol`` (the paper's Appendix B
setup); ``backend="native"`` runs NativeSARSOP.jl, a pure-Julia SARSOP. Both take any discounted
:class:`~trim_pomdp.solvers.tabular.TabularPOMDP` (e.g. the flattened TRIM-POMDP), build a
``POMDPTools.SparseTabularPOMDP`` from it and return an :class:`~trim_pomdp.solvers.base.AlphaVectorPolicy`.

By default the Julia work runs in a child process (``python -m trim_pomdp.solvers.sarsop.worker``) with
arrays in and out through ``.npz`` files, a hard wall-clock limit (``timeout + startup_timeout``) after which
the process group is killed, and a temporary working directory for every file the solver writes.
``isolate=False`` runs Julia in this process instead. Julia must have been set up once with ``trim-pomdp
setup-julia``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import package_versions
from trim_pomdp.exceptions import BackendUnavailableError, InvalidParameterError, SolverError
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.policy import AlphaVectorPolicy
from trim_pomdp.solvers.sarsop.julia_bridge import (
    BACKENDS,
    RawSolution,
    SparseTabularArrays,
    policy_arrays,
    to_sparse_tabular,
)
from trim_pomdp.solvers.sarsop.worker import WorkerError, read_result, solve_function, write_request

__all__ = ["SarsopSolver", "parse_pomdpsol_log"]

#: keyword arguments of the Julia solvers that SarsopSolver sets itself
RESERVED_JULIA_KWARGS = frozenset(
    {"precision", "timeout", "max_time", "verbose", "policy_filename", "pomdp_filename"}
)
_JULIA_KEYWORDS = frozenset(
    "baremodule begin break catch const continue do else elseif end export false finally for function "
    "global if "
    "import let local macro module quote return struct true try using while".split()
)


def parse_pomdpsol_log(text: str) -> dict[str, Any]:
    """Read the final bounds and the stop reason from pomdpsol's console output.

    pomdpsol prints a table ``Time |#Trial |#Backup |LBound |UBound |Precision |#Alphas |#Beliefs`` while it
    runs, then ``SARSOP finishing ...`` with the stop reason (``target precision reached`` or ``Preset timeout
    reached``) and the table's final row once more. LBound and UBound are bounds on ``V*(b0)``.

    Returns
    -------
    dict
        ``lower``, ``upper``, ``gap``, ``time``, ``trials``, ``backups``, ``n_alphas``, ``n_beliefs`` from the
        last table row (``nan``/``-1`` if there is none) and ``stop_reason`` (``"precision"``, ``"timeout"``,
        ``"memory"``, or ``None`` if the log does not say).
    """
    out: dict[str, Any] = {
        "lower": math.nan,
        "upper": math.nan,
        "gap": math.nan,
        "time": math.nan,
        "trials": -1,
        "backups": -1,
        "n_alphas": -1,
        "n_beliefs": -1,
        "stop_reason": None,
    }
    last_row = None
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) != 8:
            continue
        try:
            values = [float(tok) for tok in tokens]
        except ValueError:
            continue
        last_row = values
    if last_row is not None:
        t, trials, backups, lb, ub, gap, n_alphas, n_beliefs = last_row
        out.update(
            time=t,
            trials=int(trials),
            backups=int(backups),
            lower=lb,
            upper=ub,
            gap=gap,
            n_alphas=int(n_alphas),
            n_beliefs=int(n_beliefs),
        )
    lowered = text.lower()
    finish = lowered.rfind("sarsop finishing")
    tail = lowered[finish:] if finish >= 0 else lowered
    reasons = {
        "precision": tail.rfind("target precision reached"),
        "timeout": tail.rfind("timeout reached"),
        "memory": tail.rfind("memory limit"),
    }
    found = {k: v for k, v in reasons.items() if v >= 0}
    if found:
        out["stop_reason"] = min(found, key=found.get) if finish >= 0 else max(found, key=found.get)
    return out


def _check_julia_kwargs(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise InvalidParameterError(f"julia_kwargs must be a dict, got {type(kwargs).__name__}")
    out = {}
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier() or not key.isascii() or key in _JULIA_KEYWORDS:
            raise InvalidParameterError(
                f"julia_kwargs key {key!r} is not a valid Julia keyword-argument name"
            )
        if key in RESERVED_JULIA_KWARGS:
            raise InvalidParameterError(
                f"julia_kwargs may not set {key!r}: SarsopSolver sets it "
                "(use the timeout/precision parameters)"
            )
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise InvalidParameterError(
                f"julia_kwargs[{key!r}] = {value!r}: only None, bool, int, float and str values "
                "can be passed to Julia"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidParameterError(f"julia_kwargs[{key!r}] = {value!r} is not finite")
        out[key] = value
    return out


class SarsopSolver:
    """SARSOP via POMDPs.jl: SARSOP.jl (APPL ``pomdpsol``) or NativeSARSOP.jl, in a child process by default.

    Parameters
    ----------
    backend : {"sarsop.jl", "native"}, default "sarsop.jl"
        ``"sarsop.jl"``: SARSOP.jl, the C++ APPL solver the TRIM paper used (default hyperparameters).
        ``"native"``:
        NativeSARSOP.jl, a pure-Julia implementation.
    timeout : float, default 60.0
        Seconds the solver may search (pomdpsol ``--timeout`` / NativeSARSOP ``max_time``). Always passed:
        without it pomdpsol runs until the precision is reached, which may never happen.
    precision : float, default 1e-3
        Stop when the gap between the bounds at ``b0`` is at most this.
    isolate : bool, default True
        Run Julia in a child process (recommended: juliacall is fragile in a process that holds torch or vLLM,
        and a stuck solve can be killed). ``False`` runs it in this process (Julia then stays loaded, which
        makes repeated solves faster).
    julia_kwargs : dict, optional
        Further keyword arguments of the Julia ``SARSOPSolver`` (e.g. ``{"trial_improvement_factor": 0.3}``
        for SARSOP.jl, ``{"epsilon": 0.5, "kappa": 0.5, "delta": 0.1}`` for NativeSARSOP). Values must be
        None, bool, int, float or str.
    startup_timeout : float, default 180.0
        Extra wall-clock allowance of the child process for starting Julia, loading the packages and writing
        the model; the child is killed after ``timeout + startup_timeout`` seconds.
    keep_alive : bool, default False
        With ``isolate=True``, keep the child process (and Julia, with its packages loaded) alive between
        solves instead of starting a fresh one each time: what online re-planning (``BeliefRouter(...,
        replan=SarsopSolver(keep_alive=True))``) wants. A solve that times out or crashes kills the child; the
        next solve starts a new one. :meth:`close` (or leaving a ``with`` block) stops it.
    workdir : path, optional
        Directory for the solver's files (``model.pomdpx``, ``policy.out``, ``pomdpsol.log``, the worker's
        request/result ``.npz``), kept after the solve. By default a temporary directory is used and removed.

    Attributes
    ----------
    info : SolveInfo or None
        Report of the last solve. ``lower_bound`` is ``max_k alphas[k] @ b0``, the value the returned alpha
        vectors guarantee at ``b0``; ``upper_bound`` is the solver's upper bound on ``V*(b0)`` (read from
        pomdpsol's log for SARSOP.jl, from NativeSARSOP's belief tree for ``"native"``; ``nan`` if the backend
        did not report one, with ``info.extra["upper_bound_source"]`` saying so). pomdpsol writes alpha
        vectors with about six significant digits, so expect ~1e-4 relative noise against other solvers.

    Examples
    --------
    >>> from trim_pomdp.solvers.sarsop.solver import SarsopSolver
    >>> policy = SarsopSolver(timeout=30).solve(tabular_pomdp)        # doctest: +SKIP
    >>> policy.action(tabular_pomdp.b0), policy.info.gap         # doctest: +SKIP
    """

    def __init__(
        self,
        backend: str = "sarsop.jl",
        timeout: float = 60.0,
        precision: float = 1e-3,
        isolate: bool = True,
        julia_kwargs: dict[str, Any] | None = None,
        startup_timeout: float = 180.0,
        keep_alive: bool = False,
        workdir: str | os.PathLike | None = None,
    ):
        backend = str(backend).lower()
        if backend not in BACKENDS:
            raise InvalidParameterError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
        for name, value in (
            ("timeout", timeout),
            ("startup_timeout", startup_timeout),
            ("precision", precision),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value > 0)
            ):
                unit = "" if name == "precision" else " of seconds"
                raise InvalidParameterError(f"{name} must be a positive finite number{unit}, got {value!r}")
        self.backend = backend
        self.timeout = float(timeout)
        self.precision = float(precision)
        self.isolate = bool(isolate)
        self.julia_kwargs = _check_julia_kwargs(julia_kwargs)
        self.startup_timeout = float(startup_timeout)
        self.keep_alive = bool(keep_alive)
        self.workdir = None if workdir is None else Path(workdir)
        self._worker: _KeepAliveWorker | None = None

    def __repr__(self) -> str:
        return (
            f"SarsopSolver(backend={self.backend!r}, timeout={self.timeout!r}, precision={self.precision!r}, "
            f"isolate={self.isolate!r}, julia_kwargs={self.julia_kwargs!r})"
        )

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (recorded in the policy card)."""
        return {
            "backend": self.backend,
            "timeout": self.timeout,
            "precision": self.precision,
            "isolate": self.isolate,
            "julia_kwargs": dict(self.julia_kwargs),
            "startup_timeout": self.startup_timeout,
            "keep_alive": self.keep_alive,
        }

    def close(self) -> None:
        """Stop the keep-alive child process, if one is running (a later solve starts a new one)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    def __enter__(self) -> SarsopSolver:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:  # a running child process is not part of the solver's state
        state = dict(self.__dict__)
        state["_worker"] = None
        return state

    # ----------------------------------------------------------------------------------------------------
    def solve(self, model, b0=None) -> AlphaVectorPolicy:
        """Solve a discounted tabular POMDP (from ``b0`` if given, else from ``model.b0``).

        Parameters
        ----------
        model : TabularPOMDP
            ``T[a, s, s']``, ``O[a, s', o]``, ``R[s, a]``, ``b0``, ``discount < 1``; states flagged in
            ``model.terminal`` must be absorbing with zero reward.
        b0 : array-like, optional
            Initial belief to solve from instead of ``model.b0`` (SARSOP's policy is good near the beliefs
            reachable from it).

        Returns
        -------
        AlphaVectorPolicy
            Alpha vectors over the model's states, 0-based actions, and a card with the solver, its
            parameters, the bounds and the package versions.

        Raises
        ------
        InvalidParameterError
            The model is not a discounted tabular POMDP.
        ModelCheckError
            Its arrays are inconsistent.
        BackendUnavailableError
            Julia is not set up here (run ``trim-pomdp setup-julia``).
        SolverError
            Julia failed (with Julia's message), the child process crashed, timed out or wrote garbage.
        """
        for attr in ("T", "O", "R", "b0", "discount", "check"):
            if not hasattr(model, attr):
                raise InvalidParameterError(
                    f"SarsopSolver solves tabular POMDPs (trim_pomdp.solvers.TabularPOMDP); got "
                    f"{type(model).__name__} without {attr!r} (flatten a TRIM-POMDP with .flatten())"
                )
        if not float(model.discount) < 1.0:
            raise InvalidParameterError(f"SARSOP needs a discount below 1, the model has {model.discount}")
        if b0 is not None:
            model = copy.copy(model)
            model.b0 = np.asarray(b0, dtype=float)
        problem = to_sparse_tabular(model)
        start = time.perf_counter()
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            raw = self._run(problem, self.workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="trim-pomdp-sarsop-") as tmp:
                raw = self._run(problem, Path(tmp))
        seconds = time.perf_counter() - start
        alphas, actions = policy_arrays(raw, problem.n_states, problem.n_actions)
        info = self._make_info(raw, problem, alphas, seconds)
        card = {
            "solver": "sarsop",
            "backend": self.backend,
            "parameters": self.get_params(),
            "lower_bound": info.lower_bound,
            "upper_bound": info.upper_bound,
            "solve_info": info.to_dict(),
            "versions": {**package_versions("juliacall", "juliapkg"), **_parse_versions(raw.versions)},
        }
        names = getattr(model, "action_names", None)
        return AlphaVectorPolicy(alphas, actions, action_names=names, card=_json_safe(card), info=info)

    # ----------------------------------------------------------------------------------------------------
    def _run(self, problem: SparseTabularArrays, workdir: Path) -> RawSolution:
        if self.isolate:
            return self._run_isolated(problem, workdir)
        solve = solve_function()
        return solve(
            problem,
            backend=self.backend,
            timeout=self.timeout,
            precision=self.precision,
            workdir=workdir,
            options=dict(self.julia_kwargs),
        )

    def _run_isolated(self, problem: SparseTabularArrays, workdir: Path) -> RawSolution:
        request, result, log_path = workdir / "request.npz", workdir / "result.npz", workdir / "worker.log"
        for stale in (result, log_path):
            stale.unlink(missing_ok=True)
        if self.keep_alive:
            write_request(
                request,
                problem,
                backend=self.backend,
                timeout=self.timeout,
                precision=self.precision,
                workdir=workdir,
                options=self.julia_kwargs,
            )
            return self._run_kept_alive(request, result)
        write_request(
            request,
            problem,
            backend=self.backend,
            timeout=self.timeout,
            precision=self.precision,
            workdir=workdir,
            options=self.julia_kwargs,
        )
        cmd = [sys.executable, "-m", "trim_pomdp.solvers.sarsop.worker", str(request), str(result)]
        limit = self.timeout + self.startup_timeout
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                cwd=workdir,  # a neutral sys.path[0] (juliapkg scans sys.path for juliapkg.json files)
                start_new_session=(os.name == "posix"),
            )
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                _kill_tree(proc)
                raise SolverError(
                    f"the SARSOP worker ({self.backend}) did not finish within {limit:.0f} s (timeout "
                    f"{self.timeout:g} s + startup allowance {self.startup_timeout:g} s) and was killed. "
                    "Raise `startup_timeout` if Julia is slow to start (run `trim-pomdp setup-julia` once so "
                    "that the "
                    f"packages are precompiled).{_tail(log_path)}"
                ) from None
            except BaseException:  # e.g. KeyboardInterrupt: never leave Julia running
                _kill_tree(proc)
                raise
        return self._read_result(result, rc, log_path)

    def _run_kept_alive(self, request: Path, result: Path) -> RawSolution:
        limit = self.timeout + self.startup_timeout
        if self._worker is None or not self._worker.alive():
            self.close()
            self._worker = _KeepAliveWorker()
        worker = self._worker
        try:
            rc = worker.run(request, result, limit)
        except TimeoutError:
            tail = _tail(worker.log_path)
            self.close()
            raise SolverError(
                f"the keep-alive SARSOP worker ({self.backend}) did not answer within {limit:.0f} s "
                f"(timeout {self.timeout:g} s + startup allowance {self.startup_timeout:g} s) and was "
                f"killed; the next solve starts a new one.{tail}"
            ) from None
        except (EOFError, OSError):
            code = worker.proc.wait()
            tail = _tail(worker.log_path)
            self.close()
            raise SolverError(
                f"the keep-alive SARSOP worker ({self.backend}) {_describe_exit(code)} without a result; the "
                f"next solve starts a new one.{tail}"
            ) from None
        return self._read_result(result, rc, worker.log_path)

    def _read_result(self, result: Path, rc: int, log_path: Path) -> RawSolution:
        if rc != 0 and not result.exists():
            raise SolverError(
                f"the SARSOP worker ({self.backend}) {_describe_exit(rc)} without a result{_tail(log_path)}"
            )
        if not result.exists():
            raise SolverError(
                f"the SARSOP worker ({self.backend}) exited without writing {result.name}{_tail(log_path)}"
            )
        try:
            return read_result(result)
        except WorkerError as exc:  # an error the worker reported (Julia's message included)
            if exc.error_type == "BackendUnavailableError":
                raise BackendUnavailableError(exc.message) from None
            raise SolverError(f"SARSOP ({self.backend}) failed in the worker: {exc}") from None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise SolverError(
                f"the SARSOP worker ({self.backend}) wrote an unreadable result ({type(exc).__name__}: {exc})"
                f"{_tail(log_path)}"
            ) from None

    def _make_info(
        self, raw: RawSolution, problem: SparseTabularArrays, alphas: np.ndarray, seconds: float
    ) -> SolveInfo:
        parsed = parse_pomdpsol_log(raw.log) if raw.log else parse_pomdpsol_log("")
        lower = float(np.max(alphas @ problem.b0))
        if math.isfinite(raw.upper):
            upper, source = float(raw.upper), "backend"
        elif math.isfinite(parsed["upper"]):
            upper, source = float(parsed["upper"]), "pomdpsol log"
        else:
            upper, source = math.nan, "unavailable: the backend reported no upper bound"
        if parsed["stop_reason"] is not None:
            converged = parsed["stop_reason"] == "precision"
        elif math.isfinite(upper):
            converged = bool(upper - lower <= self.precision * (1 + 1e-9) + 1e-12)
        else:
            converged = False
        iterations = raw.iterations if raw.iterations >= 0 else parsed["trials"]
        sizes = {
            "n_states": problem.n_states,
            "n_actions": problem.n_actions,
            "n_observations": problem.n_observations,
            "n_vectors": int(alphas.shape[0]),
            "nnz_T": int(problem.T_p.size),
            "nnz_O": int(problem.O_p.size),
        }
        if parsed["n_beliefs"] >= 0:
            sizes["n_beliefs"] = parsed["n_beliefs"]
        extra = {
            "backend": self.backend,
            "timeout": self.timeout,
            "precision": self.precision,
            "isolate": self.isolate,
            "julia_kwargs": dict(self.julia_kwargs),
            "backend_lower": raw.lower if math.isfinite(raw.lower) else parsed["lower"],
            "upper_bound_source": source,
            "stop_reason": parsed["stop_reason"],
            "julia_seconds": raw.seconds,
            "julia_versions": raw.versions,
        }
        if raw.extra:
            extra["backend_extra"] = dict(raw.extra)
        return SolveInfo(
            solver=f"sarsop[{self.backend}]",
            seconds=seconds,
            iterations=int(iterations),
            lower_bound=lower,
            upper_bound=upper,
            converged=bool(converged),
            sizes=sizes,
            extra=extra,
        )


# ----------------------------------------------------------------------------------------------------
class _KeepAliveWorker:
    """A ``_sarsop_worker --serve`` child process: one request per stdin line, one answer per stdout line."""

    def __init__(self):
        self._dir = tempfile.mkdtemp(prefix="trim-pomdp-sarsop-worker-")
        self.log_path = Path(self._dir) / "worker.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trim_pomdp.solvers.sarsop.worker", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=_child_env(),
            cwd=self._dir,
            text=True,
            bufsize=1,
            start_new_session=(os.name == "posix"),
        )
        self._answers: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_answers, daemon=True).start()
        # stop the child when the worker object goes away or the interpreter exits
        self._finalizer = weakref.finalize(self, _stop_worker, self.proc, self._log, self._dir)

    def _read_answers(self) -> None:
        for line in self.proc.stdout:
            self._answers.put(line)
        self._answers.put(None)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, request: Path, result: Path, limit: float) -> int:
        """Send one request and wait for its answer: the worker's status (0 ok, 1 error reported)."""
        self.proc.stdin.write(json.dumps({"request": str(request), "result": str(result)}) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + limit
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            try:
                line = self._answers.get(timeout=remaining)
            except queue.Empty:
                raise TimeoutError from None
            if line is None:
                raise EOFError("the worker closed its output")
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            if answer.get("result") == str(result):
                return int(answer.get("status", 1))

    def close(self) -> None:
        self._finalizer()


def _stop_worker(proc: subprocess.Popen, log, directory: str) -> None:
    try:
        if proc.poll() is None:
            try:
                proc.stdin.close()  # the worker's loop ends at EOF
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            _kill_tree(proc)
    finally:
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def _child_env() -> dict[str, str]:
    """The worker's environment: ours, with PYTHONPATH made absolute (the worker starts in another directory)
    and the package root appended to it for source checkouts."""
    env = os.environ.copy()
    parts = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    root = str(Path(__file__).resolve().parents[3])
    if Path(root).name not in ("site-packages", "dist-packages") and root not in parts:
        parts.append(root)
    if parts:
        env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill the worker and everything it started (pomdpsol runs as Julia's child)."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"was killed by {name}"
    return f"exited with status {rc}"


def _tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    if not lines:
        return ""
    return "\n--- worker output (last lines) ---\n" + "\n".join(lines[-n:])


def _parse_versions(text: str) -> dict[str, str]:
    out = {}
    for part in (text or "").split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            out[f"julia:{key.strip()}" if key.strip() != "julia" else "julia"] = value.strip()
    return out


def _json_safe(obj: Any) -> Any:
    """Replace non-finite floats by None so that the card is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
