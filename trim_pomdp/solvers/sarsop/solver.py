"""SARSOP, the solver the TRIM paper used, behind the ``Solver`` protocol: through Julia or APPL directly.

``SarsopSolver(backend="sarsop.jl")`` runs SARSOP.jl, i.e. APPL's C++ ``pomdpsol`` (the paper's Appendix B
setup); ``backend="nativesarsop.jl"`` (alias ``"native"``) runs NativeSARSOP.jl, a pure-Julia SARSOP;
``backend="appl"`` (alias ``"pomdpsol"``) runs APPL's ``pomdpsol`` itself, without Julia
(:mod:`~trim_pomdp.solvers.sarsop.appl`): it writes the model file, runs the binary with the time limit and
reads the ``.policy`` alpha vectors and the bounds of its log back (rounded to stay certified). All take
any discounted :class:`~trim_pomdp.solvers.tabular.TabularPOMDP` (e.g. the flattened TRIM-POMDP), build a
``POMDPTools.SparseTabularPOMDP`` from it and return an :class:`~trim_pomdp.solvers.policy.AlphaVectorPolicy`.

By default the Julia work runs in a child process (``python -m trim_pomdp.solvers.sarsop.worker``,
:mod:`~trim_pomdp.solvers.sarsop.process`) with arrays in and out through ``.npz`` files, a hard wall-clock limit
(``time_limit + startup_timeout``) after which the process group is killed, and a temporary working directory
for every file the solver writes. ``isolate=False`` runs Julia in this process instead. Julia must have been set
up once with ``trim-pomdp setup-julia``.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import package_versions, to_jsonable
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError, SolverError
from trim_pomdp.registry import SARSOP_BACKENDS, SOLVERS, canonical_sarsop_backend, did_you_mean
from trim_pomdp.solvers.base import SolveInfo
from trim_pomdp.solvers.memory import parse_memory_limit
from trim_pomdp.solvers.policy import AlphaVectorPolicy
from trim_pomdp.solvers.sarsop import appl
from trim_pomdp.solvers.sarsop.arrays import (
    RawSolution,
    SparseTabularArrays,
    policy_arrays,
    to_sparse_tabular,
    write_request,
)
from trim_pomdp.solvers.sarsop.log import parse_julia_versions, parse_pomdpsol_log
from trim_pomdp.solvers.sarsop.process import (
    KeepAliveWorker,
    describe_exit,
    read_worker_result,
    run_worker,
    tail,
)
from trim_pomdp.solvers.sarsop.worker import solve_function

__all__ = ["SarsopSolver"]


def _appl_flat_alphas(
    policy: appl.ApplPolicy, problem: SparseTabularArrays, model: Any, parsed: dict
) -> np.ndarray:
    """pomdpsol's vectors over the model's flat states, ``(K, S)``; factored files mapped and checked.

    APPL orders the fully observed and the hidden state variables each with the first declared varying
    slowest, as the flat model does; the mapped vectors' value at ``b0`` must agree with the lower bound
    pomdpsol printed (within its rounding), or the policy is refused.
    """
    S = problem.n_states
    if policy.actions.max() >= problem.n_actions:
        raise SolverError(
            f"pomdpsol's policy has action {policy.actions.max()}; the model has {problem.n_actions}"
        )
    if policy.num_obs_value == 1 and policy.vector_length == S:
        return policy.alphas
    meta = getattr(model, "meta", {}) or {}
    sizes = list(meta.get("state_sizes") or [])
    is_observed = [bool(x) for x in meta.get("state_observed") or []]
    if not sizes or int(np.prod(sizes)) != S:
        raise SolverError(
            f"pomdpsol's policy has {policy.num_obs_value} observed values x {policy.vector_length} states; the model "
            f"has {S} states and no factored layout to map them"
        )
    digits = np.unravel_index(np.arange(S), sizes)
    observed, hidden = np.zeros(S, np.int64), np.zeros(S, np.int64)
    for d, n, fo in zip(digits, sizes, is_observed, strict=True):
        if fo:
            observed = observed * n + d
        else:
            hidden = hidden * n + d
    if observed.max() + 1 != policy.num_obs_value or hidden.max() + 1 != policy.vector_length:
        raise SolverError("pomdpsol's policy does not match the factored layout of the model file")
    floor = float(problem.R.min()) / (1.0 - problem.discount)
    alphas = appl.flat_alphas(policy, observed, hidden, floor)
    lower = float((alphas @ problem.b0).max())
    if math.isfinite(parsed["lower"]):
        tol = 2 * appl.printed_resolution(np.array([parsed["lower_text"]]))[0] + 1e-4 * (1 + abs(lower))
        if abs(lower - parsed["lower"]) > tol:
            raise SolverError(
                f"pomdpsol's factored policy, mapped onto the flat states, is worth {lower:.6g} at b0 where pomdpsol "
                f"reports {parsed['lower']:.6g}; solve without model_file (a flat model file is then written)"
            )
    return alphas


#: keyword arguments of the Julia solvers that SarsopSolver sets itself
RESERVED_JULIA_KWARGS = frozenset(
    {"precision", "timeout", "max_time", "verbose", "policy_filename", "pomdp_filename"}
)
_JULIA_KEYWORDS = frozenset(
    "baremodule begin break catch const continue do else elseif end export false finally for function global if "
    "import let local macro module quote return struct true try using while".split()
)


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
                f"julia_kwargs may not set {key!r}: SarsopSolver sets it (use the time_limit/precision parameters)"
            )
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise InvalidParameterError(
                f"julia_kwargs[{key!r}] = {value!r}: only None, bool, int, float and str values can be passed "
                "to Julia"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidParameterError(f"julia_kwargs[{key!r}] = {value!r} is not finite")
        out[key] = value
    return out


def _seconds(name: str, value: Any, unit: str = " of seconds") -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise InvalidParameterError(f"{name} must be a positive finite number{unit}, got {value!r}")
    return float(value)


def _time_limit(time_limit: float | None, timeout: float | None) -> tuple[float, str]:
    """The time limit and the name the caller gave it (``timeout``: the deprecated spelling)."""
    if timeout is None:
        return (60.0 if time_limit is None else time_limit), "time_limit"
    warnings.warn(
        "SarsopSolver(timeout=...) is deprecated; use time_limit=... (the name every solver uses)",
        DeprecationWarning,
        stacklevel=3,
    )
    if time_limit is not None and time_limit != timeout:
        raise InvalidParameterError(
            f"give time_limit or its old name timeout, not both ({time_limit} != {timeout})"
        )
    return timeout, "timeout"


class SarsopSolver:
    """SARSOP via POMDPs.jl: SARSOP.jl (APPL ``pomdpsol``) or NativeSARSOP.jl, in a child process by default.

    Parameters
    ----------
    backend : {"sarsop.jl", "nativesarsop.jl", "appl"}, default "sarsop.jl"
        ``"sarsop.jl"``: SARSOP.jl, the C++ APPL solver the TRIM paper used (default hyperparameters).
        ``"nativesarsop.jl"`` (also ``"native"``, as in earlier versions): NativeSARSOP.jl, a pure-Julia
        implementation. ``"appl"`` (also ``"pomdpsol"``): APPL's ``pomdpsol`` run directly, no Julia needed
        (``isolate``, ``keep_alive`` and ``julia_kwargs`` do not apply). Any case is accepted.
    time_limit : float, default 60.0
        Seconds the solver may search (pomdpsol ``--timeout`` / NativeSARSOP ``max_time``). Always passed:
        without it pomdpsol runs until the precision is reached, which may never happen.
    precision : float, default 1e-3
        Stop when the gap between the bounds at ``b0`` is at most this.
    isolate : bool, default True
        Run Julia in a child process (recommended: juliacall is fragile in a process that holds torch or vLLM,
        and a stuck solve can be killed). ``False`` runs it in this process (Julia then stays loaded, which makes
        repeated solves faster).
    julia_kwargs : dict, optional
        Further keyword arguments of the Julia ``SARSOPSolver`` (e.g. ``{"trial_improvement_factor": 0.3}`` for
        SARSOP.jl, ``{"epsilon": 0.5, "kappa": 0.5, "delta": 0.1}`` for NativeSARSOP). Values must be None,
        bool, int, float or str.
    startup_timeout : float, default 180.0
        Extra wall-clock allowance of the child process for starting Julia, loading the packages and writing the
        model; the child is killed after ``time_limit + startup_timeout`` seconds.
    keep_alive : bool, default False
        With ``isolate=True``, keep the child process (and Julia, with its packages loaded) alive between solves
        instead of starting a fresh one each time: what online re-planning (``BeliefRouter(...,
        replan=SarsopSolver(keep_alive=True))``) wants. A solve that times out or crashes kills the child; the
        next solve starts a new one. :meth:`close` (or leaving a ``with`` block) stops it. Solves through one
        kept-alive child take turns.
    workdir : path, optional
        Directory for the solver's files (``model.pomdpx``, ``policy.out``, ``pomdpsol.log``, the worker's
        request/result ``.npz``), kept after the solve. By default a temporary directory is used and removed.
    pomdpsol : path, optional
        The ``pomdpsol`` binary of the ``"appl"`` backend (default: ``TRIM_POMDP_POMDPSOL``, else ``PATH``).
    appl_options : dict, optional
        Further ``pomdpsol`` options of the ``"appl"`` backend: ``{"trial-improvement-factor": 0.5,
        "randomization": True, "fast": True}`` (see :data:`~trim_pomdp.solvers.sarsop.appl.APPL_OPTIONS`).
    model_format : {"pomdp", "pomdpx"}, default "pomdp"
        The file the ``"appl"`` backend writes for ``pomdpsol``.
    memory_limit : int, float or str, optional
        Passed to ``pomdpsol --memory`` by the ``"appl"`` backend (default 4 GiB or
        ``TRIM_POMDP_MEMORY_LIMIT``); pomdpsol then stops and writes its policy.
    timeout : float, optional
        Deprecated name of ``time_limit``.

    Notes
    -----
    The report of a solve is the returned policy's ``info``. ``lower_bound`` is ``max_k alphas[k] @ b0``, the
    value the returned alpha vectors guarantee at ``b0``; ``upper_bound`` is the solver's upper bound on
    ``V*(b0)`` (read from pomdpsol's log for SARSOP.jl, from NativeSARSOP's belief tree for NativeSARSOP.jl;
    ``nan`` if the backend did not report one, with ``info.extra["upper_bound_source"]`` saying so), and
    ``info.extra["backend"]`` names the backend. pomdpsol writes alpha vectors with about six significant digits,
    so expect ~1e-4 relative noise against other solvers.

    Examples
    --------
    >>> from trim_pomdp.solvers.sarsop.solver import SarsopSolver
    >>> policy = SarsopSolver(time_limit=30).solve(tabular_pomdp)        # doctest: +SKIP
    >>> policy.action(tabular_pomdp.b0), policy.info.gap         # doctest: +SKIP
    """

    name = SOLVERS["sarsop"].name

    def __init__(
        self,
        backend: str = "sarsop.jl",
        time_limit: float | None = None,
        precision: float = 1e-3,
        isolate: bool = True,
        julia_kwargs: dict[str, Any] | None = None,
        startup_timeout: float = 180.0,
        keep_alive: bool = False,
        workdir: str | os.PathLike | None = None,
        *,
        pomdpsol: str | os.PathLike | None = None,
        appl_options: dict[str, Any] | None = None,
        model_format: str = "pomdp",
        memory_limit: int | float | str | None = None,
        timeout: float | None = None,
    ):
        try:
            self.backend = canonical_sarsop_backend(backend)
        except InvalidParameterError:
            names = ", ".join(f"{k!r}" for k in SARSOP_BACKENDS)
            raise InvalidParameterError(
                f"backend must be one of {names} ('native' also means 'nativesarsop.jl', 'pomdpsol' means 'appl'), "
                f"got {backend!r}"
                f"{did_you_mean(str(backend).lower(), SARSOP_BACKENDS)}"
            ) from None
        limit, limit_name = _time_limit(time_limit, timeout)
        self.time_limit = _seconds(limit_name, limit)
        self.startup_timeout = _seconds("startup_timeout", startup_timeout)
        self.precision = _seconds("precision", precision, unit="")
        self.isolate = bool(isolate)
        self.julia_kwargs = _check_julia_kwargs(julia_kwargs)
        self.keep_alive = bool(keep_alive)
        self.workdir = None if workdir is None else Path(workdir)
        self.pomdpsol = None if pomdpsol is None else Path(pomdpsol)
        self.appl_options = dict(appl_options or {})
        try:
            appl._option_args(self.appl_options)
        except ValueError as exc:
            raise InvalidParameterError(str(exc)) from None
        if model_format not in ("pomdp", "pomdpx"):
            raise InvalidParameterError(f"model_format must be 'pomdp' or 'pomdpx', got {model_format!r}")
        self.model_format = model_format
        self.memory_limit = parse_memory_limit(memory_limit)
        if self.backend == "appl" and self.julia_kwargs:
            raise InvalidParameterError(
                "julia_kwargs do not apply to the 'appl' backend; pass pomdpsol options as appl_options"
            )
        self._worker: KeepAliveWorker | None = None
        self._worker_lock = threading.Lock()

    @property
    def timeout(self) -> float:
        """Deprecated name of :attr:`time_limit`."""
        return self.time_limit

    def __repr__(self) -> str:
        return (
            f"SarsopSolver(backend={self.backend!r}, time_limit={self.time_limit!r}, precision={self.precision!r}, "
            f"isolate={self.isolate!r}, julia_kwargs={self.julia_kwargs!r})"
        )

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (recorded in the policy card)."""
        return {
            "backend": self.backend,
            "time_limit": self.time_limit,
            "precision": self.precision,
            "isolate": self.isolate,
            "julia_kwargs": dict(self.julia_kwargs),
            "startup_timeout": self.startup_timeout,
            "keep_alive": self.keep_alive,
            **(
                {"appl_options": dict(self.appl_options), "model_format": self.model_format}
                if self.backend == "appl"
                else {}
            ),
        }

    def close(self) -> None:
        """Stop the keep-alive child process, if one is running (a later solve starts a new one)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    def __enter__(self) -> SarsopSolver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:  # a running child process is not part of the solver's state
        state = dict(self.__dict__)
        state["_worker"] = None
        del state["_worker_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._worker_lock = threading.Lock()

    # ----------------------------------------------------------------------------------------------------
    def solve(
        self, model: Any, b0: Any = None, *, model_file: str | os.PathLike | None = None
    ) -> AlphaVectorPolicy:
        """Solve a discounted tabular POMDP (from ``b0`` if given, else from ``model.b0``).

        Parameters
        ----------
        model : TabularPOMDP
            ``T[a, s, s']``, ``O[a, s', o]``, ``R[s, a]``, ``b0``, ``discount < 1``; states flagged in
            ``model.terminal`` must be absorbing with zero reward.
        b0 : array-like, optional
            Initial belief to solve from instead of ``model.b0`` (SARSOP's policy is good near the beliefs
            reachable from it).
        model_file : path, optional
            ``"appl"`` backend: the ``.pomdp``/``.pomdpx`` file ``model`` was read from
            (:func:`~trim_pomdp.solvers.formats.read_pomdp`), given to pomdpsol as it is instead of a flat
            file written from ``model``: APPL then keeps the file's factored, mixed-observability form. The
            vectors it returns per observed value are mapped onto the flat states, and their value at ``b0`` is
            checked against the lower bound pomdpsol reports.

        Returns
        -------
        AlphaVectorPolicy
            Alpha vectors over the model's states, 0-based actions, the report as ``info``, and a card with the
            solver, its parameters, the bounds and the package versions.

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
            model_file = None  # the file holds the other start belief
        if model_file is not None and (
            self.backend != "appl" or getattr(model, "meta", {}).get("values") == "cost"
        ):
            model_file = None  # Julia takes arrays; a cost file would be solved as costs by pomdpsol
        self._model_file = None if model_file is None else Path(model_file).resolve()
        problem = to_sparse_tabular(model)
        start = time.perf_counter()
        run = self._run_appl if self.backend == "appl" else self._run
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            raw = run(problem, self.workdir, model)
        else:
            with tempfile.TemporaryDirectory(prefix="trim-pomdp-sarsop-") as tmp:
                raw = run(problem, Path(tmp), model)
        seconds = time.perf_counter() - start
        alphas, actions = policy_arrays(raw, problem.n_states, problem.n_actions)
        info = self._make_info(raw, problem, alphas, seconds)
        card = {
            "solver": self.name,
            "backend": self.backend,
            "parameters": self.get_params(),
            "lower_bound": info.lower_bound,
            "upper_bound": info.upper_bound,
            "solve_info": info.to_dict(),
            "versions": (
                {**package_versions(), "appl": raw.versions}
                if self.backend == "appl"
                else {**package_versions("juliacall", "juliapkg"), **parse_julia_versions(raw.versions)}
            ),
        }
        names = getattr(model, "action_names", None)
        return AlphaVectorPolicy(alphas, actions, action_names=names, card=to_jsonable(card), info=info)

    # ----------------------------------------------------------------------------------------------------
    def _run_appl(self, problem: SparseTabularArrays, workdir: Path, model: Any) -> RawSolution:
        """Write the model, run pomdpsol on it, read its policy and bounds back (certified: see ``appl``)."""
        from trim_pomdp.solvers.formats import write_pomdp

        binary = appl.find_pomdpsol(self.pomdpsol)
        given = getattr(self, "_model_file", None)
        model_file = (
            given if given is not None else write_pomdp(model, workdir / f"model.{self.model_format}")
        )
        policy_file, log, seconds = appl.run_pomdpsol(
            binary,
            model_file,
            workdir,
            time_limit=self.time_limit,
            precision=self.precision,
            kill_after=self.time_limit + self.startup_timeout,
            memory_mb=max(1, self.memory_limit // 2**20),
            options=self.appl_options,
        )
        try:
            policy = appl.read_appl_policy(policy_file)
        except DataFormatError as exc:
            raise SolverError(f"pomdpsol wrote a policy that cannot be read: {exc}") from None
        parsed = parse_pomdpsol_log(log)
        alphas = _appl_flat_alphas(policy, problem, model, parsed)
        upper = math.nan
        if math.isfinite(parsed["upper"]):
            upper = float(parsed["upper"] + appl.printed_resolution(np.array([parsed["upper_text"]]))[0])
        return RawSolution(
            alphas=alphas.T,
            actions=policy.actions + 1,
            lower=parsed["lower"],
            upper=upper,
            iterations=parsed["trials"],
            seconds=seconds,
            log=log,
            versions=appl.pomdpsol_version(binary),
            extra={"pomdpsol": str(binary), "model_file": model_file.name},
        )

    def _run(self, problem: SparseTabularArrays, workdir: Path, model: Any = None) -> RawSolution:
        if not self.isolate:
            solve = solve_function()
            return solve(
                problem,
                backend=self.backend,
                timeout=self.time_limit,
                precision=self.precision,
                workdir=workdir,
                options=dict(self.julia_kwargs),
            )
        request, result, log_path = workdir / "request.npz", workdir / "result.npz", workdir / "worker.log"
        for stale in (result, log_path):
            stale.unlink(missing_ok=True)
        write_request(
            request,
            problem,
            backend=self.backend,
            timeout=self.time_limit,
            precision=self.precision,
            workdir=workdir,
            options=self.julia_kwargs,
        )
        if self.keep_alive:
            with self._worker_lock:
                return self._run_kept_alive(request, result)
        limit = self.time_limit + self.startup_timeout
        try:
            rc = run_worker(request, result, log_path, workdir, limit)
        except TimeoutError:
            raise SolverError(
                f"the SARSOP worker ({self.backend}) did not finish within {limit:.0f} s (time limit "
                f"{self.time_limit:g} s + startup allowance {self.startup_timeout:g} s) and was killed. Raise "
                "`startup_timeout` if Julia is slow to start (run `trim-pomdp setup-julia` once so that the "
                f"packages are precompiled).{tail(log_path)}"
            ) from None
        return read_worker_result(result, rc, log_path, self.backend)

    def _run_kept_alive(self, request: Path, result: Path) -> RawSolution:
        limit = self.time_limit + self.startup_timeout
        if self._worker is None or not self._worker.alive():
            self.close()
            self._worker = KeepAliveWorker()
        worker = self._worker
        try:
            rc = worker.run(request, result, limit)
        except TimeoutError:
            log = tail(worker.log_path)
            self.close()
            raise SolverError(
                f"the keep-alive SARSOP worker ({self.backend}) did not answer within {limit:.0f} s (time limit "
                f"{self.time_limit:g} s + startup allowance {self.startup_timeout:g} s) and was killed; the next "
                f"solve starts a new one.{log}"
            ) from None
        except (EOFError, OSError):
            code = worker.proc.wait()
            log = tail(worker.log_path)
            self.close()
            raise SolverError(
                f"the keep-alive SARSOP worker ({self.backend}) {describe_exit(code)} without a result; the next "
                f"solve starts a new one.{log}"
            ) from None
        return read_worker_result(result, rc, worker.log_path, self.backend)

    def _make_info(
        self, raw: RawSolution, problem: SparseTabularArrays, alphas: np.ndarray, seconds: float
    ) -> SolveInfo:
        parsed = parse_pomdpsol_log(raw.log or "")
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
            "states": problem.n_states,
            "actions": problem.n_actions,
            "observations": problem.n_observations,
            "alpha_vectors": int(alphas.shape[0]),
            "nnz_T": int(problem.T_p.size),
            "nnz_O": int(problem.O_p.size),
        }
        if parsed["n_beliefs"] >= 0:
            sizes["beliefs"] = parsed["n_beliefs"]
        extra = {
            "backend": self.backend,
            "time_limit": self.time_limit,
            "precision": self.precision,
            "isolate": self.isolate,
            "julia_kwargs": dict(self.julia_kwargs),
            "backend_lower": raw.lower if math.isfinite(raw.lower) else parsed["lower"],
            "upper_bound_source": source,
            "stop_reason": parsed["stop_reason"],
        }
        if self.backend == "appl":
            extra.update(pomdpsol_seconds=raw.seconds, appl_version=raw.versions)
            for key in ("isolate", "julia_kwargs"):
                extra.pop(key)
        else:
            extra.update(julia_seconds=raw.seconds, julia_versions=raw.versions)
        if raw.extra:
            extra["backend_extra"] = dict(raw.extra)
        return SolveInfo(
            solver=self.name,
            seconds=seconds,
            iterations=int(iterations),
            lower_bound=lower,
            upper_bound=upper,
            converged=bool(converged),
            sizes=sizes,
            extra=extra,
        )
