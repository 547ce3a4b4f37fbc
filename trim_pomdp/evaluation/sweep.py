"""Sweep routers' knobs on a simulated benchmark and write resumable per-query records.

A *benchmark* is a pair of simulators: a **training** one (what routers may learn or estimate from: the
POMDP's parameters, AutoMix's bins, TRIM-Agg's PPO episodes, the threshold grid) and an **evaluation** one
(``n`` queries drawn with one seed and given to every router and knob: common random numbers). For the
in-distribution setting (Table 1) both use the same split with different seeds; for cross-dataset
generalisation (Table 2) the training simulator uses another split's statistics.

Routers and their knobs:

==========  ================================================================================================
``pomdp``   λ grid; per λ the TRIM-POMDP (parameters estimated from labelled training queries, the shipped
            observation model) solved with the finite-horizon solver, run through :class:`BeliefRouter`
``thr``     threshold k: 0 … 1 plus the quantiles of training step scores
``agg``     λ grid (the paper's, per dataset family: :mod:`trim_pomdp.routers.rl.grids`); PPO per λ on the
            training simulator until the return on a held-out batch stops improving (at most
            ``agg_timesteps`` steps); a λ whose router collapsed to a constant policy is reported and dropped
``seq``     TRIM-Seq, the same way (only when asked for: it trains a transformer per λ)
``automix`` λ values where AutoMix-PRM's policy changes (bins fitted on training queries)
``oracle``  budget fraction 0 … 1
``random``  routing probability 0 … 1
==========  ================================================================================================

:func:`run_sweep` writes ``records.csv`` one ``(policy, knob)`` group at a time (flushed), so a killed run
keeps every finished group; rerunning skips complete groups and redoes a torn one. The run's identity (what
fixes the queries and the outcome of a group) is stored in ``evaluate.json`` with the digest of
:func:`trim_pomdp.pomdp.sweep.digest`, the one the λ sweep of ``trim-pomdp solve`` uses; records of another
identity are refused.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import write_json
from trim_pomdp._internal.progress import Progress
from trim_pomdp.evaluation.records import RESERVED_POLICIES, Records, RecordWriter, read_records
from trim_pomdp.evaluation.simulator import SIMULATED_NOTE, QueryBatch, Simulator, SimulatorParams
from trim_pomdp.exceptions import BackendUnavailableError, DataFormatError, InvalidParameterError
from trim_pomdp.pomdp.params import TrimParams
from trim_pomdp.pomdp.sweep import digest
from trim_pomdp.registry import ROUTERS, did_you_mean
from trim_pomdp.routers.rl.convergence import Convergence
from trim_pomdp.routers.rl.grids import (
    DEFAULT_CONVERGENCE,
    DEFAULT_MAX_TIMESTEPS,
    LAMBDA_GRIDS,
    default_lambdas,
)

__all__ = [
    "ALL_ROUTERS",
    "DEFAULT_AGG_LAMBDAS",
    "DEFAULT_AGG_TIMESTEPS",
    "DEFAULT_LAMBDAS",
    "QUERY_ROUTERS",
    "STEP_ROUTERS",
    "SWEEP_ROUTERS",
    "Benchmark",
    "Group",
    "SweepSettings",
    "complete_groups",
    "estimate_trim_params",
    "plan_groups",
    "run_sweep",
    "threshold_grid",
    "write_reports",
]

#: Routers a sweep can run, in the registry's order.
SWEEP_ROUTERS: tuple[str, ...] = tuple(n for n in ROUTERS if n not in RESERVED_POLICIES)
#: Routers a sweep runs by default: all but TRIM-Seq, which trains a transformer per λ (ask for it by name).
ALL_ROUTERS: tuple[str, ...] = tuple(n for n in SWEEP_ROUTERS if n != "seq")
STEP_ROUTERS: tuple[str, ...] = tuple(n for n in ALL_ROUTERS if ROUTERS[n].step_level)
QUERY_ROUTERS: tuple[str, ...] = tuple(n for n in ALL_ROUTERS if not ROUTERS[n].step_level)

#: λ grid of the POMDP sweep (price per M_s token, in units of the reward): 0, 1e-5, 3e-5, then 1e-4 … 3e-2.
DEFAULT_LAMBDAS: tuple[float, ...] = (
    0.0,
    1e-5,
    3e-5,
    *(float(f"{x:.3g}") for x in np.geomspace(1e-4, 3e-2, 15)),
)
#: λ grid of TRIM-Agg and TRIM-Seq on the default (``math``) split: the paper's MATH grid. Other splits use their
#: family's grid (:func:`trim_pomdp.routers.rl.grids.default_lambdas`) unless ``agg_lambdas`` is given.
DEFAULT_AGG_LAMBDAS: tuple[float, ...] = LAMBDA_GRIDS["math"]
#: The cap on PPO steps per λ; training stops earlier once the held-out return stops improving.
DEFAULT_AGG_TIMESTEPS = DEFAULT_MAX_TIMESTEPS


@dataclass
class SweepSettings:
    """What to sweep and on how many queries.

    Attributes
    ----------
    routers : tuple of str
        Subset of :data:`SWEEP_ROUTERS` (default :data:`ALL_ROUTERS`).
    n_queries : int
        Evaluation queries (the same ones for every router and knob).
    seed : int
        Seed of the evaluation queries.
    n_train : int
        Labelled training queries (POMDP parameter estimation, AutoMix bins, threshold grid).
    train_seed : int
        Seed of the training queries and of PPO.
    lambdas : tuple of float
        POMDP λ grid.
    agg_lambdas : tuple of float or None
        TRIM-Agg and TRIM-Seq λ grid; ``None``: the paper's grid of the training split's family.
    agg_timesteps : int
        The cap on PPO timesteps per λ (the whole budget when ``agg_convergence`` is ``None``).
    agg_convergence : Convergence or None
        When PPO training stops (:class:`~trim_pomdp.routers.rl.convergence.Convergence`).
    agg_n_envs : int
        PPO episodes in flight (one rollout is 64 steps of each).
    thresholds : tuple of float or None
        TRIM-Thr grid; ``None``: 0, 0.05, …, 1 plus the 5 … 95% quantiles of training step scores.
    budgets : tuple of float
        Oracle / random router grid.
    pomdp_gate : bool
        Use :class:`BeliefRouter`'s re-planning gate (δ = 0.375). Off by default: the finite-horizon solver's
        policy is valid at every belief, and the gate (which forces ``continue`` outside it) only helps
        SARSOP-style policies that are accurate near b0.
    n_buckets : int
        Token buckets of the POMDP.
    """

    routers: tuple[str, ...] = ALL_ROUTERS
    n_queries: int = 2000
    seed: int = 0
    n_train: int = 2000
    train_seed: int = 1
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    agg_lambdas: tuple[float, ...] | None = None
    agg_timesteps: int = DEFAULT_AGG_TIMESTEPS
    agg_convergence: Convergence | None = DEFAULT_CONVERGENCE
    agg_n_envs: int = 32
    thresholds: tuple[float, ...] | None = None
    budgets: tuple[float, ...] = tuple(float(x) for x in np.linspace(0.0, 1.0, 21))
    pomdp_gate: bool = False
    n_buckets: int = 5

    def __post_init__(self) -> None:
        self.routers = tuple(self.routers)
        unknown = [r for r in self.routers if r not in SWEEP_ROUTERS]
        if unknown:
            hint = did_you_mean(unknown[0], SWEEP_ROUTERS)
            raise InvalidParameterError(
                f"unknown router(s) {unknown}{hint}; choose from {', '.join(SWEEP_ROUTERS)}"
            )
        if not self.routers:
            raise InvalidParameterError("no routers to evaluate")
        for name in ("n_queries", "n_train", "agg_n_envs", "agg_timesteps", "n_buckets"):
            if int(getattr(self, name)) < 1:
                raise InvalidParameterError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("lambdas", "agg_lambdas"):
            if getattr(self, name) is None:
                continue
            vals = tuple(float(x) for x in getattr(self, name))
            if any(not (math.isfinite(v) and v >= 0) for v in vals):
                raise InvalidParameterError(f"{name} must be finite numbers >= 0, got {vals}")
            setattr(self, name, vals)
        if self.thresholds is not None:
            self.thresholds = tuple(float(x) for x in self.thresholds)
        self.budgets = tuple(float(x) for x in self.budgets)


class Benchmark:
    """Training and evaluation simulators plus the evaluation queries' reserved outcomes.

    Parameters
    ----------
    eval_params, train_params : SimulatorParams
        Statistics of the evaluation and training queries (the same for in-distribution evaluation).
    settings : SweepSettings
    name : str, optional
        Label used in outputs (default: the evaluation split).
    """

    def __init__(
        self,
        eval_params: SimulatorParams,
        train_params: SimulatorParams,
        settings: SweepSettings,
        name: str = "",
    ) -> None:
        self.settings = settings
        self.eval_params = eval_params
        self.train_params = train_params
        self.eval_sim = Simulator(eval_params)
        self.train_sim = Simulator(train_params)
        self.name = name or eval_params.split
        self.queries = self.eval_sim.queries(settings.n_queries, settings.seed)
        self.query_ids = self.queries.query_ids
        self._train_queries: QueryBatch | None = None
        self._train_stats: dict[str, Any] | None = None

    @property
    def train_queries(self) -> QueryBatch:
        """Training queries (query-level facts), drawn once."""
        if self._train_queries is None:
            self._train_queries = self.train_sim.queries(self.settings.n_train, self.settings.train_seed)
        return self._train_queries

    @property
    def train_stats(self) -> dict[str, Any]:
        """Labelled statistics of the training queries (:meth:`Simulator.labelled_statistics`)."""
        if self._train_stats is None:
            self._train_stats = self.train_sim.labelled_statistics(
                self.settings.n_train, self.settings.train_seed
            )
        return self._train_stats

    def run_step_router(self, router: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per-query ``(correct, strong_tokens)`` of a step router on the evaluation queries."""
        from trim_pomdp.routers.rollout import rollout

        s = self.settings
        return rollout(
            router, self.eval_sim, s.n_queries, seed=s.seed, lam=0.0, keep_episodes=True
        ).outcomes()

    def identity(self) -> dict[str, Any]:
        """What fixes the evaluation queries; a resumed run must match it."""
        return {
            "n_queries": self.settings.n_queries,
            "seed": self.settings.seed,
            "n_train": self.settings.n_train,
            "train_seed": self.settings.train_seed,
            "eval_params_sha256": digest(self.eval_params.to_dict()),
            "train_params_sha256": digest(self.train_params.to_dict()),
            # settings that change a group's outcome for the same knob
            "pomdp_gate": self.settings.pomdp_gate,
            "n_buckets": self.settings.n_buckets,
            "agg_timesteps": self.settings.agg_timesteps,
            "agg_convergence": conv.to_dict() if (conv := self.settings.agg_convergence) else None,
            "agg_n_envs": self.settings.agg_n_envs,
        }


def estimate_trim_params(
    stats: dict[str, Any], *, n_buckets: int = 5, smoothing: float = 2.0, base: Any = None
) -> TrimParams:
    """TRIM-POMDP parameters from labelled training statistics, with the TRIM model's own estimator.

    ``stats`` is :meth:`Simulator.labelled_statistics`; the estimator is
    :func:`trim_pomdp.pomdp.estimation.estimate_from_steps` (the one :func:`~trim_pomdp.pomdp.estimate_params`
    uses on ProcessBench). The rest (horizon, reward, discount, λ) comes from ``base`` (default
    :func:`trim_pomdp.pomdp.load_default_params`).
    """
    from trim_pomdp.pomdp import load_default_params
    from trim_pomdp.pomdp.estimation import ESTIMATORS, estimate_from_steps

    base = base if base is not None else load_default_params()
    fields = estimate_from_steps(
        (stats["weak_s0"], stats["weak_s2"]),
        (stats["strong_s0"], stats["strong_s2"]),
        stats["weak_tokens"],
        stats["strong_tokens"],
        horizon=int(base.horizon),
        n_buckets=n_buckets,
        smoothing=smoothing,
    )
    card = {
        "estimated_from": "labelled simulated training queries (SIMULATED)",
        "queries": len(stats["n_steps"]),
        "weak": {"S0": stats["weak_s0"], "S2": stats["weak_s2"]},
        "strong": {"S0": stats["strong_s0"], "S2": stats["strong_s2"]},
        "estimators": ESTIMATORS,
        "simulated": True,
    }
    return base.replace(card=card, **fields)


@dataclass
class Group:
    """One ``(policy, knob)`` of a sweep and how to run it on the evaluation queries."""

    policy: str
    knob: float | None
    run: Callable[[], tuple[np.ndarray, np.ndarray] | None]  # None: dropped (a collapsed learned router)


def _query_group(bench: Benchmark, policy: str, router: Any, knob: float) -> Group:
    q = bench.queries

    def run() -> tuple[np.ndarray, np.ndarray]:
        routed = router.route_batch(q.outcomes())
        return np.where(routed, q.strong_correct, q.weak_correct), np.where(routed, q.strong_tokens, 0.0)

    return Group(policy, float(knob), run)


def threshold_grid(bench: Benchmark) -> tuple[float, ...]:
    """0, 0.05, …, 1 plus the 5 … 95% quantiles of the training queries' step scores (rounded to 1e-4)."""
    scores = bench.train_stats["weak_step_scores"]
    qs = np.quantile(scores, np.linspace(0.05, 0.95, 19))
    grid = np.unique(np.round(np.r_[np.linspace(0, 1, 21), qs], 4))
    return tuple(float(x) for x in grid)


def plan_groups(
    bench: Benchmark,
    obs_model_loader: Callable[[], Any] | None = None,
    agg_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> Iterator[Group]:
    """The reserved groups, then every router's ``(policy, knob)`` groups in ``settings.routers`` order.

    Expensive work (solving a POMDP, training PPO, fitting AutoMix) happens inside each group's ``run`` (or
    once, lazily, for the first group that needs it), so skipping complete groups on resume skips it too.
    """
    q = bench.queries
    yield Group("weak", None, lambda: (q.weak_correct.copy(), np.zeros(len(q))))
    yield Group("strong", None, lambda: (q.strong_correct.copy(), q.strong_tokens.copy()))
    pomdp = _PomdpBase(bench, obs_model_loader, log or (lambda msg: None))
    groups: dict[str, Callable[[], Iterator[Group]]] = {
        "pomdp": lambda: _pomdp_groups(bench, pomdp),
        "thr": lambda: _threshold_groups(bench),
        "agg": lambda: _rl_groups(bench, "agg", agg_dir, log, progress),
        "seq": lambda: _rl_groups(bench, "seq", _seq_dir(agg_dir), log, progress),
        "automix": lambda: _automix_groups(bench),
        "oracle": lambda: _budget_groups(bench, "oracle"),
        "random": lambda: _budget_groups(bench, "random"),
    }
    for name in bench.settings.routers:
        yield from groups[name]()


class _PomdpBase:
    """The POMDP's parameters (estimated from the training queries) and observation model, made once."""

    def __init__(self, bench: Benchmark, loader: Callable[[], Any] | None, say: Callable[[str], None]):
        self.bench, self.loader, self.say = bench, loader, say
        self._made: tuple[TrimParams, Any] | None = None

    def get(self) -> tuple[TrimParams, Any]:
        if self._made is None:
            from trim_pomdp.pomdp import default_observation_model

            loader = self.loader or default_observation_model
            params = estimate_trim_params(self.bench.train_stats, n_buckets=self.bench.settings.n_buckets)
            self._made = (params, loader())
            self.say(
                f"POMDP parameters from training queries: p_w={params.p_w:.4f}, p_s={params.p_s:.4f}, "
                f"K={params.n_buckets}, ratio={params.strong_weak_ratio:.3f}"
            )
        return self._made


def _pomdp_groups(bench: Benchmark, base: _PomdpBase) -> Iterator[Group]:
    def run(lam: float) -> tuple[np.ndarray, np.ndarray]:
        from trim_pomdp.pomdp import build_trim_pomdp, solve_trim
        from trim_pomdp.routers import BeliefRouter

        params, obs = base.get()
        model = build_trim_pomdp(params.replace(lam=lam), obs)
        router = BeliefRouter(solve_trim(model), model, gate=bench.settings.pomdp_gate, floor=1e-300)
        return bench.run_step_router(router)

    for lam in bench.settings.lambdas:
        yield Group("pomdp", lam, functools.partial(run, lam))


def _threshold_groups(bench: Benchmark) -> Iterator[Group]:
    from trim_pomdp.routers import ThresholdRouter

    s = bench.settings
    for k in s.thresholds if s.thresholds is not None else threshold_grid(bench):
        yield Group("thr", k, functools.partial(bench.run_step_router, ThresholdRouter(k)))


def _seq_dir(agg_dir: Path | None) -> Path | None:
    """TRIM-Seq's routers go beside TRIM-Agg's: ``agg`` in the folder's name becomes ``seq``."""
    return None if agg_dir is None else agg_dir.with_name(agg_dir.name.replace("agg", "seq", 1))


def _rl_groups(
    bench: Benchmark, kind: str, rl_dir: Path | None, log: Callable[[str], None] | None, progress: bool
) -> Iterator[Group]:
    """TRIM-Agg or TRIM-Seq per λ: trained (or reloaded from ``rl_dir/lam-<λ>``) on the training simulator."""
    s = bench.settings
    say = log or (lambda msg: None)

    def run(lam: float) -> tuple[np.ndarray, np.ndarray] | None:
        from trim_pomdp.routers.rl.training import finished_router, train_router

        target = None if rl_dir is None else rl_dir / f"lam-{lam:.3g}"
        trained = finished_router(kind, target) if target is not None else None
        if trained is None:
            train_params = bench.train_params
            trained = train_router(
                kind, lambda: Simulator(train_params), lam, out=target, convergence=s.agg_convergence,
                timesteps=s.agg_timesteps, seed=s.train_seed, n_envs=s.agg_n_envs, progress=progress, log=say,
                source_card={"type": "Simulator", "simulated": True, "split": train_params.split},
            )  # fmt: skip
        if trained.collapsed:
            say(f"{ROUTERS[kind].label} at λ={lam:g} dropped from the sweep: the router {trained.collapsed}")
            return None
        return bench.run_step_router(trained.router)

    lams = s.agg_lambdas if s.agg_lambdas is not None else default_lambdas(bench.train_params.split)
    for lam in lams:
        yield Group(kind, lam, functools.partial(run, lam))


def _automix_groups(bench: Benchmark) -> Iterator[Group]:
    from trim_pomdp.routers import AutoMixRouter

    fitted = AutoMixRouter().fit(bench.train_queries.outcomes())
    for lam in fitted.knob_values():
        yield _query_group(bench, "automix", fitted.with_knob(float(lam)), float(lam))


def _budget_groups(bench: Benchmark, name: str) -> Iterator[Group]:
    """The oracle (knob: budget fraction) or random (knob: routing probability) query router over the grid."""
    from trim_pomdp.routers import OracleQueryRouter, RandomQueryRouter

    s = bench.settings
    for b in s.budgets:
        router = OracleQueryRouter(b) if name == "oracle" else RandomQueryRouter(b, seed=s.seed)
        yield _query_group(bench, name, router, b)


def complete_groups(records: Records, query_ids: Sequence[str]) -> set[tuple[str, float | None]]:
    """``(policy, knob)`` groups whose records cover exactly ``query_ids`` once each."""
    want = np.unique(np.asarray(list(query_ids), dtype=object))
    done = set()
    for key, idx in records.groups().items():
        got = records.query_id[idx]
        if got.shape[0] == want.shape[0] and np.array_equal(np.unique(got), want):
            done.add(key)
    return done


def _key(policy: str, knob: float | None) -> tuple[str, float | None]:
    return (policy, None if knob is None else float(knob))


def _check_identity(out_dir: Path, identity: dict[str, Any]) -> None:
    path = out_dir / "evaluate.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text()).get("identity")
        except json.JSONDecodeError:
            old = None
        if old is not None and old != identity:
            diff = {k: (old.get(k), v) for k, v in identity.items() if old.get(k) != v}
            raise DataFormatError(
                f"{out_dir} holds records of other queries ({diff}); resume with the same settings or "
                "use a new "
                "--out directory"
            )


def run_sweep(
    bench: Benchmark,
    out_dir: str | Path,
    *,
    obs_model_loader: Callable[[], Any] | None = None,
    on_group: Callable[[Group, int, int, float, bool], None] | None = None,
    log: Callable[[str], None] | None = None,
    extra_card: dict[str, Any] | None = None,
    agg_dir: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """Run every group of :func:`plan_groups` not already complete in ``out_dir/records.csv``.

    Parameters
    ----------
    bench : Benchmark
    out_dir : path
        Created if needed. Holds ``records.csv`` (appended one group at a time) and ``evaluate.json``
        (settings, the identity of the queries, the simulator card).
    obs_model_loader : callable, optional
        Returns the POMDP's observation model (default: the shipped one).
    on_group : callable ``(group, index, total, seconds, skipped)``, optional
        Called after each group.
    log : callable, optional
        Receives one-line messages (the POMDP's estimated parameters, how many groups a resume skipped).
    extra_card : dict, optional
        Added to ``evaluate.json``.
    agg_dir : path, optional
        Where trained TRIM-Agg routers are saved and reused (``lam-<λ>/``); default ``out_dir/agg``. Share one
        folder between evaluations that train on the same split. TRIM-Seq's go beside it (``agg`` in the name
        becomes ``seq``).
    progress : bool, default False
        Report progress per group (:class:`~trim_pomdp._internal.progress.Progress`).

    Returns
    -------
    Path
        The records file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    identity = bench.identity()
    _check_identity(out, identity)
    records_path = out / "records.csv"
    done = _keep_complete_groups(records_path, bench.query_ids)
    card = {
        "identity": identity,
        "settings": asdict(bench.settings),
        "benchmark": bench.name,
        "simulated": True,
        "note": SIMULATED_NOTE,
        "eval_simulator": bench.eval_sim.card,
        "train_split": bench.train_params.split,
    }
    card.update(extra_card or {})
    write_json(out / "evaluate.json", card)
    agg_dir = Path(agg_dir) if agg_dir is not None else out / "agg"
    groups = list(plan_groups(bench, obs_model_loader, agg_dir, log, progress))
    skipped = 0
    dropped: list[dict[str, Any]] = []
    with (
        RecordWriter(records_path, append=True) as writer,
        Progress(len(groups), bench.name, enabled=progress, unit="groups") as bar,
    ):
        for i, g in enumerate(groups):
            knob = "" if g.knob is None else f" {g.knob:.4g}"
            t0 = time.perf_counter()
            was_done = _key(g.policy, g.knob) in done
            if not was_done:
                result = g.run()
                if result is None:  # a learned router that collapsed to a constant policy: reported, not kept
                    dropped.append({"policy": g.policy, "knob": g.knob, "reason": "collapsed"})
                else:
                    writer.write(Records.from_arrays(g.policy, g.knob, bench.query_ids, *result))
            skipped += was_done
            bar.advance(note=f"{g.policy}{knob}")
            if on_group:
                on_group(g, i, len(groups), 0.0 if was_done else time.perf_counter() - t0, was_done)
    if skipped and log:
        log(f"resumed: {skipped} (policy, knob) groups were already complete in {records_path}")
    card["dropped_groups"] = dropped
    write_json(out / "evaluate.json", card)
    return records_path


def _keep_complete_groups(records_path: Path, query_ids: Sequence[str]) -> set[tuple[str, float | None]]:
    """The complete groups of an earlier run; the rows of a torn group (a killed run) are dropped."""
    existing = read_records(records_path) if records_path.is_file() else Records.empty()
    done = complete_groups(existing, query_ids)
    if len(existing):
        knobs = (None if math.isnan(k) else k for k in existing.knob)
        keep = np.array([_key(p, k) in done for p, k in zip(existing.policy, knobs, strict=True)])
        if not keep.all():
            with RecordWriter(records_path, append=False) as w:
                w.write(existing.select(keep))
    return done


def write_reports(
    records_path: str | Path,
    out_dir: str | Path,
    *,
    title: str,
    note: str | None = None,
    simulated: bool = True,
    plot: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``summary.json``, ``table.md``, ``curves.csv`` and ``curves.png`` of a records file.

    Returns the summary (with ``"simulated"`` and ``"note"`` added when the records are simulated). Without
    matplotlib, ``curves.png`` is skipped with a message to ``log`` when one is given (else the
    :class:`~trim_pomdp.exceptions.BackendUnavailableError` propagates).
    """
    from trim_pomdp.evaluation.metrics import summarize
    from trim_pomdp.evaluation.plots import curves_csv, plot_curves
    from trim_pomdp.evaluation.tables import comparison_lines, markdown_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(read_records(records_path), incomplete="drop")
    if simulated:
        summary["simulated"] = True
        summary["note"] = SIMULATED_NOTE
    write_json(out / "summary.json", summary)
    text = markdown_table(summary, note=note or (SIMULATED_NOTE if simulated else None))
    lines = "".join(f"- {line}\n" for line in comparison_lines(summary))
    (out / "table.md").write_text(f"### {title}\n\n{text}\n{lines}", encoding="utf-8")
    curves_csv(summary, out / "curves.csv")
    if plot:
        try:
            plot_curves(summary, out / "curves.png", title=title, note=SIMULATED_NOTE if simulated else note)
        except BackendUnavailableError as exc:
            if log is None:
                raise
            log(f"curves.png skipped (curves.csv has the data): {exc}")
    return summary
