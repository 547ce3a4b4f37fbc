"""Solve the TRIM-POMDP for one or several λ into a folder of policies, resumably (``trim-pomdp solve``).

Layout of ``out_dir``: one λ writes ``policy.npz`` + ``policy.json``; several write ``lambda_<λ>/policy.*`` per
value plus ``summary.json`` (the parameters, the solver and one row per λ).

Resume: a run is identified by :func:`config_hash` (the parameters except λ, the observation model and the
solver settings). In a sweep, a λ whose card already holds this hash and this λ is not solved again (its row
is read back from the card); a λ without a card (a solve killed before the card was written: the arrays are
written first) or with another hash is solved again and overwritten. The router sweep of
:mod:`trim_pomdp.evaluation.sweep` identifies its runs with the same :func:`digest`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import write_json
from trim_pomdp._internal.progress import Progress
from trim_pomdp.exceptions import BackendUnavailableError, InvalidParameterError, SolverError, TrimPomdpError
from trim_pomdp.pomdp.policy import TrimPolicy, solve_trim
from trim_pomdp.pomdp.problem import TrimPOMDP
from trim_pomdp.registry import SOLVERS, canonical_sarsop_backend, canonical_solver

__all__ = [
    "MAX_LAMBDAS",
    "MC_FIELDS",
    "SweepResult",
    "config_hash",
    "digest",
    "lambda_dir",
    "make_solver",
    "parse_lambdas",
    "solve_lambdas",
]

#: Keys of a sweep row that come from the Monte Carlo evaluation (also stored under ``mc`` in each card).
MC_FIELDS = (
    "accuracy",
    "accuracy_se",
    "strong_tokens",
    "strong_tokens_se",
    "mc_return",
    "mc_return_se",
    "mc_episodes",
)

# The configuration hash of the finite-horizon solver was computed with its earlier name; keeping that token
# keeps sweeps written before the rename resumable.
_HASH_NAMES = {"finite-horizon": "native"}


#: The most λ values one sweep may ask for (each is a solve and a policy folder).
MAX_LAMBDAS = 10_000


def parse_lambdas(text: str) -> list[float]:
    """λ values from ``"5e-4"``, a comma list ``"1e-4,5e-4"`` or a log range ``"1e-4:1e-3:20"`` (ends included).

    Duplicates are dropped (they would share an output directory).

    Raises
    ------
    InvalidParameterError
        When the text is none of the three forms, or a value is negative or not finite.
    """
    text = str(text).strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
            if n < 1:
                raise InvalidParameterError(f"the count in {text!r} must be >= 1")
            if n > MAX_LAMBDAS:
                raise InvalidParameterError(
                    f"the count in {text!r} asks for {n} λ values, more than {MAX_LAMBDAS}: a sweep solves one "
                    "policy per λ (a second or more each); use fewer points"
                )
            if lo <= 0 or hi <= 0:
                raise InvalidParameterError(
                    f"a log range needs positive ends, got {text!r}; list 0 explicitly (e.g. '0,1e-4')"
                )
            vals = [lo] if n == 1 else [float(v) for v in np.geomspace(lo, hi, n)]
        else:
            vals = [float(v) for v in text.split(",") if v.strip()]
    except InvalidParameterError:
        raise
    except ValueError:
        raise InvalidParameterError(
            f"{text!r} is not a λ value, comma-separated numbers (1e-4,5e-4) or a log range LO:HI:N "
            "(1e-4:1e-3:20)"
        ) from None
    if not vals:
        raise InvalidParameterError("give at least one λ value")
    for v in vals:
        if not math.isfinite(v) or v < 0:
            raise InvalidParameterError(f"λ must be finite and >= 0 (price per strong token), got {v}")
    return list(dict.fromkeys(vals))


def lambda_dir(lam: float) -> str:
    """Sub-directory of one λ in a sweep: ``lambda_<λ>`` with 6 significant digits."""
    return f"lambda_{lam:.6g}"


def digest(obj: Any, *arrays: np.ndarray, extra: str = "") -> str:
    """16 hex digits of SHA-256 over ``obj`` as canonical JSON (sorted keys), the arrays' bytes, then ``extra``.

    The identity of a run: what must match for earlier outputs to be reused.
    """
    h = hashlib.sha256(json.dumps(obj, sort_keys=True).encode())
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    if extra:
        h.update(extra.encode())
    return h.hexdigest()[:16]


def config_hash(trim: TrimPOMDP, solver: str, precision: float, mode: str) -> str:
    """What a sweep's policies were solved with: parameters but λ (and the card), observations, solver."""
    d = trim.params.to_dict()
    d.pop("card", None)
    d.pop("lam", None)
    obs = trim.obs_model
    name = canonical_solver(solver)
    return digest(
        d,
        obs.bin_probs(False),
        obs.bin_probs(True),
        extra=f"{_HASH_NAMES.get(name, name)}|{precision}|{mode}",
    )


def make_solver(
    name: str,
    *,
    precision: float = 1e-3,
    time_limit: float | None = None,
    mode: str = "auto",
    sarsop_backend: str = "sarsop.jl",
    keep_alive: bool = False,
) -> Any:
    """A solver by its registered name (:data:`trim_pomdp.registry.SOLVERS`; old names accepted).

    ``mode`` is the finite-horizon solver's; ``sarsop_backend`` and ``keep_alive`` (one Julia worker for
    several solves, closed with ``solver.close()``) are SARSOP's. Without a ``time_limit`` SARSOP searches
    60 s.

    Raises
    ------
    BackendUnavailableError
        When the solver's module cannot be imported in this installation.
    """
    name = canonical_solver(name)
    module_name, _, class_name = SOLVERS[name].target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the {name} solver is not available in this installation ({module_name}: {exc}); use "
            "--solver finite-horizon (or its old name, --solver native)"
        ) from None
    cls = getattr(module, class_name)
    if name == "finite-horizon":
        return cls(precision=precision, time_limit=time_limit, mode=mode)
    if name == "pointbased":
        return cls(precision=precision, time_limit=time_limit)
    return cls(
        backend=canonical_sarsop_backend(sarsop_backend),
        time_limit=time_limit or 60.0,
        precision=precision,
        keep_alive=keep_alive,
    )


@dataclass
class SweepResult:
    """What :func:`solve_lambdas` did: one row per λ, the policies it solved, the run's hash and files."""

    rows: list[dict[str, Any]]
    policies: dict[float, TrimPolicy] = field(default_factory=dict)
    config_hash: str = ""
    summary_path: Path | None = None

    @property
    def resumed(self) -> int:
        """How many λ were read back instead of solved."""
        return len(self.rows) - len(self.policies)


def solve_lambdas(
    trim: TrimPOMDP,
    lambdas: Sequence[float],
    out_dir: str | Path,
    *,
    solver: str = "finite-horizon",
    precision: float = 1e-3,
    time_limit: float | None = None,
    mode: str = "auto",
    sarsop_backend: str = "sarsop.jl",
    evaluate: Callable[[TrimPolicy, TrimPOMDP], Any] | None = None,
    plot: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Solve ``trim`` for every λ in ``lambdas`` and write the policies into ``out_dir`` (see the module).

    Parameters
    ----------
    trim : TrimPOMDP
        The model; its λ is replaced by each value in turn.
    lambdas : sequence of float
        One value (written to ``out_dir`` itself) or several (``out_dir/lambda_<λ>/``, resumable).
    out_dir : path
        Created if needed.
    solver, precision, time_limit, mode, sarsop_backend
        See :func:`make_solver`.
    evaluate : callable ``(policy, model) -> RolloutResult``, optional
        Monte Carlo evaluation of each new policy (e.g. a :func:`~trim_pomdp.routers.rollout.rollout` on the
        model's own process); its accuracy, strong tokens and return go into the row and the card.
    plot : bool
        Also write ``regions.png`` (regenerate regions per epoch, matplotlib) per λ.
    progress : bool
        Report progress of a sweep (:class:`~trim_pomdp._internal.progress.Progress`).

    Raises
    ------
    SolverError
        When a solve fails (the message names the λ).
    """
    lams = [float(x) for x in lambdas]
    if not lams:
        raise InvalidParameterError("give at least one λ value")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    single = len(lams) == 1
    cfg = config_hash(trim, solver, precision, mode)
    result = SweepResult(rows=[], config_hash=cfg)
    solver_obj = make_solver(
        solver, precision=precision, time_limit=time_limit, mode=mode, sarsop_backend=sarsop_backend,
        keep_alive=True,
    )  # fmt: skip
    try:
        with Progress(len(lams), "solving", enabled=progress and not single, unit="λ") as bar:
            for lam in lams:
                target = out if single else out / lambda_dir(lam)
                row = None if single else _finished_row(target, cfg, lam)
                if row is None:
                    policy, row = _solve_one(
                        trim.with_params(lam=lam), solver_obj, target, cfg, evaluate, plot
                    )
                    result.policies[lam] = policy
                result.rows.append(row)
                bar.advance()
    finally:
        close = getattr(solver_obj, "close", None)
        if callable(close):  # a kept-alive SARSOP worker ends with the sweep, error or not
            close()
    if not single:
        summary = {
            "params": trim.params.to_dict(),
            "solver": canonical_solver(solver),
            "precision": precision,
            "config_hash": cfg,
            "policies": result.rows,
        }
        result.summary_path = write_json(out / "summary.json", summary)
    return result


def _finished_row(target: Path, cfg: str, lam: float) -> dict[str, Any] | None:
    """The row of a λ already solved with this configuration, or ``None`` (then it is solved again)."""
    card = target / "policy.json"
    if not (card.is_file() and (target / "policy.npz").is_file()):
        return None
    try:
        old = json.loads(card.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(old, dict) or old.get("config_hash") != cfg or old.get("lambda") != lam:
        return None
    row = old.get("summary")
    if not isinstance(row, dict):
        return None
    try:  # a truncated or edited policy.npz (its digest no longer matches) is solved again, not skipped
        TrimPolicy.load(target)
    except TrimPomdpError:
        return None
    return row


def _solve_one(
    tp: TrimPOMDP,
    solver: Any,
    target: Path,
    cfg: str,
    evaluate: Callable[[TrimPolicy, TrimPOMDP], Any] | None,
    plot: bool,
) -> tuple[TrimPolicy, dict[str, Any]]:
    lam = tp.params.lam
    try:
        policy = solve_trim(tp, solver)
    except TrimPomdpError as exc:
        raise SolverError(f"solving λ={lam:g} failed: {exc}") from exc
    info = policy.info
    row: dict[str, Any] = {
        "lambda": lam,
        "lower_bound": info.lower_bound if info else None,
        "upper_bound": info.upper_bound if info else None,
        "gap": info.gap if info else None,
        "solve_seconds": info.seconds if info else None,
        "converged": info.converged if info else None,
        "dir": str(target),
    }
    if evaluate is not None:
        mc = evaluate(policy, tp)
        row.update(
            accuracy=mc.accuracy,
            accuracy_se=mc.accuracy_se,
            strong_tokens=mc.strong_tokens,
            strong_tokens_se=mc.strong_tokens_se,
            mc_return=mc.ret,
            mc_return_se=mc.ret_se,
            regenerations=mc.regenerations,
            mc_episodes=mc.n,
        )
    policy.card.update({"config_hash": cfg, "summary": row, "mc": {k: row.get(k) for k in MC_FIELDS}})
    policy.save(target)
    if plot:
        from trim_pomdp.pomdp.regions import plot_regenerate_regions

        plot_regenerate_regions(policy, path=target / "regions.png", bucket=tp.params.n_buckets // 2)
    return policy, row
