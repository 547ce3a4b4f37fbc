"""Budget calibration: the λ (or knob) whose router meets a strong-token target, with a confidence interval.

Practitioners think in budgets, "at most 20% of the strong model's tokens" or "at most 500 strong tokens per
query", not in a price λ. :func:`calibrate_records`, :func:`calibrate_simulator` and :func:`calibrate_model`
turn such a :class:`Target` into a knob, on three kinds of evidence:

- **records** of runs (``trim-pomdp run`` over several routers, or an ``evaluate`` sweep): every knob present is
  measured on its queries and the best one that meets the target is named;
- **the simulator** (SIMULATED): the TRIM-POMDP is estimated from labelled training queries, solved for λ on a
  log grid and run on calibration queries; a bisection in log λ between the grid points around the target
  refines the choice, and the chosen policy is written so that ``serve`` and ``run`` can use it;
- **the model**: the same search under the TRIM-POMDP's own process (e.g. with an observation model fitted on
  scored items by ``fit-observations``), which trusts the model (optimistic where the model is wrong).

The measured value of a knob is the strong-token fraction ``Σ_q tokens(q) / Σ_q C_s(q)`` (the normalised cost
of the metrics: ``C_s`` is M_s alone on the same queries; under the model, regenerating every step) or the mean
strong tokens per query. Its interval is a normal (delta-method) interval over the queries. Two are reported:
``interval``, for the expected value at the chosen knob, and ``heldout_interval``, for what a fresh batch of
``heldout_n`` queries will show (its width adds that batch's own sampling noise): the latter is what
:func:`coverage_check` verifies on repeated held-out draws.

"Meets" means the point estimate is within the target (or, with ``conservative=True``, the upper end of
``interval``); among the knobs that meet it the one that spends most (the most accurate, as spending goes) is
chosen. The search assumes that spending falls as λ grows, which holds for the TRIM-POMDP on the same queries up
to ties; every evaluated point is kept in the result.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from trim_pomdp.evaluation.records import RESERVED_POLICIES, Records
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError

__all__ = [
    "DEFAULT_CALIBRATION_LAMBDAS",
    "Calibration",
    "Point",
    "Target",
    "calibrate_model",
    "calibrate_records",
    "calibrate_simulator",
    "coverage_check",
    "measure",
    "name_router",
    "search_lambda",
    "select",
    "z_value",
]

#: λ grid of the search (price per M_s token): 41 values, 1e-5 … 1e-1, log-spaced.
DEFAULT_CALIBRATION_LAMBDAS: tuple[float, ...] = tuple(
    float(f"{x:.4g}") for x in np.geomspace(1e-5, 1e-1, 41)
)


@dataclass(frozen=True)
class Target:
    """A budget: ``kind`` is ``"strong_fraction"`` (of M_s alone's tokens, in (0, 1]) or ``"strong_tokens"`` (mean
    strong tokens per query, > 0)."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in ("strong_fraction", "strong_tokens"):
            raise InvalidParameterError(
                f"target kind must be strong_fraction or strong_tokens, got {self.kind!r}"
            )
        v = float(self.value)
        if not math.isfinite(v) or v <= 0 or (self.kind == "strong_fraction" and v > 1):
            domain = "in (0, 1]" if self.kind == "strong_fraction" else "> 0"
            raise InvalidParameterError(f"the target {self.kind} must be {domain}, got {self.value!r}")

    @property
    def needs_reference(self) -> bool:
        return self.kind == "strong_fraction"


@dataclass(frozen=True)
class Point:
    """One evaluated knob: the measured value, its standard error per query (``sd``), accuracy, queries."""

    knob: float
    value: float
    sd: float
    accuracy: float
    n: int

    def interval(self, z: float, heldout_n: int | None = None) -> tuple[float, float]:
        """``value ± z·sd·sqrt(1/n)``, or with ``heldout_n`` the interval of a fresh batch of that many queries."""
        scale = 1.0 / self.n + (1.0 / heldout_n if heldout_n else 0.0)
        half = z * self.sd * math.sqrt(scale)
        return self.value - half, self.value + half


def measure(
    knob: float, tokens: np.ndarray, correct: np.ndarray, reference: np.ndarray | None, target: Target
) -> Point:
    """The :class:`Point` of per-query ``tokens`` (and ``reference`` = ``C_s`` per query, for a fraction)."""
    t = np.asarray(tokens, dtype=float)
    n = int(t.size)
    if n < 2:
        raise InvalidParameterError(f"calibration needs at least 2 queries, got {n}")
    acc = float(np.mean(correct))
    if not target.needs_reference:
        return Point(float(knob), float(t.mean()), float(t.std(ddof=1)), acc, n)
    c = np.asarray(reference, dtype=float)
    if c.shape != t.shape or not c.mean() > 0:
        raise DataFormatError("the strong-alone tokens C_s must cover the same queries and be > 0 on average")
    ratio = float(t.mean() / c.mean())
    sd = float(np.std(t - ratio * c, ddof=1) / c.mean())  # delta method for a ratio of means
    return Point(float(knob), ratio, sd, acc, n)


def select(points: Sequence[Point], target: Target, *, z: float, conservative: bool) -> tuple[Point, bool]:
    """The chosen point and whether it meets the target (else the cheapest point, which comes closest)."""
    if not points:
        raise InvalidParameterError("no knob was evaluated")
    bound = (lambda p: p.interval(z)[1]) if conservative else (lambda p: p.value)
    meeting = [p for p in points if bound(p) <= target.value + 1e-12]
    if meeting:
        return max(meeting, key=lambda p: (p.value, p.accuracy)), True
    return min(points, key=lambda p: (p.value, -p.accuracy)), False


@dataclass
class Calibration:
    """The outcome of a calibration (``to_dict`` is the ``calibration.json`` card)."""

    source: str
    policy: str
    target: Target
    knob: float | None
    achieved: float
    interval: tuple[float, float]
    heldout_interval: tuple[float, float]
    heldout_n: int
    accuracy: float
    n_queries: int
    meets: bool
    confidence: float
    conservative: bool
    simulated: bool
    router: str | None = None
    note: str = ""
    points: list[Point] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = {"kind": self.target.kind, "value": self.target.value}
        d["points"] = sorted((asdict(p) for p in self.points), key=lambda p: p["knob"])
        return d

    def summary(self) -> str:
        """One line for people: the knob, the achieved value and its interval."""
        what = "strong-token fraction" if self.target.kind == "strong_fraction" else "strong tokens/query"
        lo, hi = self.interval
        name = "λ" if self.policy == "pomdp" else "knob"
        verdict = "meets" if self.meets else "does NOT meet"
        return (
            f"{self.policy} {name}={self.knob:g}: {what} {self.achieved:.4g} "
            f"({100 * self.confidence:g}% CI {lo:.4g}–{hi:.4g}; a fresh batch of {self.heldout_n}: "
            f"{self.heldout_interval[0]:.4g}–{self.heldout_interval[1]:.4g}), accuracy {self.accuracy:.4f}, "
            f"{verdict} the target {self.target.value:g} on {self.n_queries} queries"
            + (" (SIMULATED)" if self.simulated else "")
        )


def z_value(confidence: float) -> float:
    """The two-sided normal quantile of a ``confidence`` level (1.96 for 0.95)."""
    if not 0 < confidence < 1:
        raise InvalidParameterError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(stats.norm.ppf(0.5 + confidence / 2))


def _result(
    points: list[Point],
    target: Target,
    *,
    source: str,
    policy: str,
    confidence: float,
    conservative: bool,
    heldout_n: int | None,
    simulated: bool,
) -> Calibration:
    z = z_value(confidence)
    best, meets = select(points, target, z=z, conservative=conservative)
    m = heldout_n or best.n
    note = ""
    if not meets:
        note = (
            f"no evaluated knob meets the target {target.value:g}: the least any of them spends is "
            f"{best.value:.4g}"
        )
    elif best.value == max(p.value for p in points) and best.value < target.value:
        note = f"the target {target.value:g} does not bind: the most any evaluated knob spends is {best.value:.4g}"
    return Calibration(
        source=source,
        policy=policy,
        target=target,
        knob=best.knob,
        achieved=best.value,
        interval=best.interval(z),
        heldout_interval=best.interval(z, m),
        heldout_n=m,
        accuracy=best.accuracy,
        n_queries=best.n,
        meets=meets,
        confidence=confidence,
        conservative=conservative,
        simulated=simulated,
        note=note,
        points=points,
    )


# ---------------------------------------------------------------------------------------------------- records
def name_router(
    policy: str, knob: float, policies: str | os.PathLike[str] | None = None
) -> tuple[str | None, str]:
    """The router specification of ``(policy, knob)`` for ``serve``/``run``, or ``None`` and what to do.

    ``thr`` needs no file (``thr:K``); a planned or trained router is looked up in ``policies``: a λ sweep of
    ``trim-pomdp solve`` (``lambda_<λ>/``) or the TRIM-Agg folders of ``evaluate`` (``lam-<λ>/``).
    """
    from trim_pomdp.pomdp.sweep import lambda_dir

    if policy == "thr":
        return f"thr:{knob:g}", ""
    if policies is not None:
        for sub in (lambda_dir(knob), f"lam-{knob:.3g}"):
            folder = Path(policies) / sub
            if folder.is_dir():
                path = str(folder.resolve())
                return (path if policy == "pomdp" else f"{policy}:{path}"), ""
    how = (
        f"`trim-pomdp solve --lambda {knob:g} --out DIR`, then serve DIR"
        if policy == "pomdp"
        else f"the {policy} router for {knob:g}"
    )
    where = f" in {policies}" if policies is not None else " (pass --policies DIR to look for it)"
    return None, f"no folder for {policy} at knob {knob:g}{where}: make it with {how}"


def _record_policy(records: Records, policy: str | None) -> str:
    routed = sorted({str(p) for p in records.policy if p not in RESERVED_POLICIES})
    if policy is not None:
        if policy not in routed:
            raise InvalidParameterError(
                f"the records hold no policy {policy!r}; they hold {routed or 'none'}"
            )
        return policy
    if len(routed) != 1:
        raise InvalidParameterError(
            f"the records hold {len(routed)} routed policies {routed}: name one with --policy NAME"
        )
    return routed[0]


def calibrate_records(
    records: Records,
    target: Target,
    *,
    policy: str | None = None,
    confidence: float = 0.95,
    conservative: bool = False,
    heldout_n: int | None = None,
    simulated: bool = False,
    policies: str | os.PathLike[str] | None = None,
) -> Calibration:
    """The knob of ``policy`` (the only routed one by default) whose records meet ``target``.

    A fraction target needs the reserved ``strong`` records (M_s alone) on the same queries; each knob is
    measured on the queries it shares with them. The result names the router to serve (:func:`name_router`,
    with the policy folders in ``policies``).
    """
    name = _record_policy(records, policy)
    reference: dict[str, float] = {}
    if target.needs_reference:
        strong = records.policy == "strong"
        if not strong.any():
            raise DataFormatError(
                "a strong-token fraction needs the records of M_s alone (policy 'strong', e.g. "
                "`trim-pomdp run --router strong`); or give --target-strong-tokens N"
            )
        reference = dict(zip(records.query_id[strong], records.strong_tokens[strong], strict=True))
    points = []
    for (pol, knob), idx in records.groups().items():
        if pol != name or knob is None or not math.isfinite(float(knob)):
            continue
        ids = records.query_id[idx]
        keep = np.array([q in reference for q in ids]) if reference else np.ones(ids.size, dtype=bool)
        if keep.sum() < 2:
            continue
        ref = np.array([reference[q] for q in ids[keep]]) if reference else None
        points.append(
            measure(knob, records.strong_tokens[idx][keep], records.correct[idx][keep], ref, target)
        )
    if not points:
        raise DataFormatError(
            f"no knob of policy {name!r} has records on at least 2 queries shared with 'strong'"
        )
    cal = _result(
        points,
        target,
        source="records",
        policy=name,
        confidence=confidence,
        conservative=conservative,
        heldout_n=heldout_n,
        simulated=simulated,
    )
    assert cal.knob is not None
    cal.router, how = name_router(name, cal.knob, policies)
    cal.note = "; ".join(x for x in (cal.note, how) if x)
    return cal


# ---------------------------------------------------------------------------------------------------- episodes
Evaluate = Callable[[float], Point]


def search_lambda(
    evaluate: Evaluate,
    target: Target,
    lambdas: Sequence[float],
    *,
    refine: int,
    z: float,
    conservative: bool,
    on_point: Callable[[Point], None] | None = None,
) -> list[Point]:
    """Evaluate λ values until the boundary of the target is found: a binary search over the ascending grid
    (spending falls as λ grows), then ``refine`` bisections in log λ between the two grid points around it."""
    grid = sorted(float(x) for x in lambdas)
    if not grid or grid[0] < 0:
        raise InvalidParameterError(f"the λ grid must be non-empty and >= 0, got {list(lambdas)}")
    seen: dict[float, Point] = {}

    def at(lam: float) -> Point:
        if lam not in seen:
            seen[lam] = evaluate(lam)
            if on_point is not None:
                on_point(seen[lam])
        return seen[lam]

    def meets(p: Point) -> bool:
        return (p.interval(z)[1] if conservative else p.value) <= target.value

    lo, hi = 0, len(grid) - 1  # invariant sought: grid[hi] meets, grid[lo - 1] does not
    if meets(at(grid[0])):
        return list(seen.values())
    if not meets(at(grid[hi])):
        return list(seen.values())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if meets(at(grid[mid])):
            hi = mid
        else:
            lo = mid
    a, b = math.log(max(grid[lo], 1e-300)), math.log(grid[hi])
    for _ in range(refine):
        log_mid = 0.5 * (a + b)
        if meets(at(float(f"{math.exp(log_mid):.6g}"))):
            b = log_mid
        else:
            a = log_mid
    return list(seen.values())


class _Planner:
    """Solves the TRIM-POMDP for a λ once and runs its BeliefRouter (gate off) on episodes of a source."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.policies: dict[float, Any] = {}

    def policy(self, lam: float) -> Any:
        if lam not in self.policies:
            from trim_pomdp.pomdp import build_trim_pomdp, solve_trim

            self.policies[lam] = solve_trim(
                build_trim_pomdp(self.model.params.replace(lam=lam), self.model.obs_model)
            )
        return self.policies[lam]

    def run(self, lam: float, source: Any, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-query ``(correct, strong_tokens)`` of λ's router on ``n`` episodes of ``source``."""
        from trim_pomdp.routers import BeliefRouter
        from trim_pomdp.routers.rollout import rollout

        policy = self.policy(lam)
        router = BeliefRouter(policy, policy.trim_pomdp(), gate=False, floor=1e-300)
        res = rollout(router, source, n, seed=seed, lam=0.0, keep_episodes=True)
        return res.outcomes()


@dataclass
class _Episodes:
    """Where calibration episodes come from: the source, its C_s per query, the planner's model."""

    source: Any
    reference: Callable[[int, int], np.ndarray]
    planner: _Planner
    simulated: bool
    name: str


def _calibrate_episodes(
    ep: _Episodes,
    target: Target,
    *,
    n_queries: int,
    seed: int,
    lambdas: Sequence[float],
    refine: int,
    confidence: float,
    conservative: bool,
    heldout_n: int | None,
    progress: bool,
) -> tuple[Calibration, Any]:
    from trim_pomdp._internal.progress import Progress

    ref = ep.reference(n_queries, seed) if target.needs_reference else None

    def evaluate(lam: float) -> Point:
        correct, tokens = ep.planner.run(lam, ep.source, n_queries, seed)
        return measure(lam, tokens, correct, ref, target)

    with Progress(
        None, f"calibrating λ on {n_queries} queries ({ep.name})", enabled=progress, unit="λ"
    ) as bar:
        points = search_lambda(
            evaluate,
            target,
            lambdas,
            refine=refine,
            z=z_value(confidence),
            conservative=conservative,
            on_point=lambda p: bar.advance(note=f"λ={p.knob:.4g}: {p.value:.4g}"),
        )
    cal = _result(
        points,
        target,
        source=ep.name,
        policy="pomdp",
        confidence=confidence,
        conservative=conservative,
        heldout_n=heldout_n,
        simulated=ep.simulated,
    )
    assert cal.knob is not None
    return cal, ep.planner.policy(cal.knob)


def _simulator_episodes(
    simulator: Any, n_train: int, train_seed: int, obs_model: Any, n_buckets: int
) -> _Episodes:
    from trim_pomdp.evaluation.simulator import Simulator
    from trim_pomdp.evaluation.sweep import estimate_trim_params
    from trim_pomdp.pomdp import build_trim_pomdp, default_observation_model

    sim = simulator if isinstance(simulator, Simulator) else Simulator(simulator)
    params = estimate_trim_params(sim.labelled_statistics(n_train, train_seed), n_buckets=n_buckets)
    model = build_trim_pomdp(params, obs_model if obs_model is not None else default_observation_model())
    return _Episodes(
        sim, lambda n, seed: sim.queries(n, seed).strong_tokens, _Planner(model), True, "simulator"
    )


def calibrate_simulator(
    target: Target,
    *,
    simulator: Any = None,
    n_queries: int = 2000,
    seed: int = 0,
    n_train: int = 2000,
    train_seed: int = 1,
    obs_model: Any = None,
    n_buckets: int = 5,
    lambdas: Sequence[float] = DEFAULT_CALIBRATION_LAMBDAS,
    refine: int = 6,
    confidence: float = 0.95,
    conservative: bool = False,
    heldout_n: int | None = None,
    progress: bool = False,
) -> tuple[Calibration, Any]:
    """The λ of the TRIM-POMDP router that meets ``target`` on simulated queries (SIMULATED).

    The POMDP's parameters come from ``n_train`` labelled training queries (seed ``train_seed``), as in
    ``trim-pomdp evaluate``; the calibration queries are ``n_queries`` others (seed ``seed``).

    Returns
    -------
    (Calibration, TrimPolicy)
        The result and the chosen λ's policy (``policy.save(DIR)`` makes ``DIR`` a router for ``serve``/``run``).
    """
    ep = _simulator_episodes(simulator, n_train, train_seed, obs_model, n_buckets)
    return _calibrate_episodes(
        ep, target, n_queries=n_queries, seed=seed, lambdas=lambdas, refine=refine, confidence=confidence,
        conservative=conservative, heldout_n=heldout_n, progress=progress,
    )  # fmt: skip


def calibrate_model(
    target: Target,
    model: Any,
    *,
    n_queries: int = 20000,
    seed: int = 0,
    lambdas: Sequence[float] = DEFAULT_CALIBRATION_LAMBDAS,
    refine: int = 6,
    confidence: float = 0.95,
    conservative: bool = False,
    heldout_n: int | None = None,
    progress: bool = False,
) -> tuple[Calibration, Any]:
    """The λ that meets ``target`` under the TRIM-POMDP ``model``'s own process (the model is trusted).

    The reference ``C_s`` of a fraction is what regenerating every step spends on the same seeds.
    """
    from trim_pomdp.pomdp import ModelProcess
    from trim_pomdp.routers.rollout import rollout

    process = ModelProcess(model)

    class _Always:
        def reset_batch(self, n: int) -> None:
            return None

        def decide_batch(self, obs: Any) -> np.ndarray:
            return np.ones(obs.n, dtype=np.int64)

    def reference(n: int, seed: int) -> np.ndarray:
        return rollout(_Always(), process, n, seed=seed, lam=0.0, keep_episodes=True).outcomes()[1]

    ep = _Episodes(process, reference, _Planner(model), False, "model")
    return _calibrate_episodes(
        ep, target, n_queries=n_queries, seed=seed, lambdas=lambdas, refine=refine, confidence=confidence,
        conservative=conservative, heldout_n=heldout_n, progress=progress,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------- coverage
def coverage_check(
    target: Target,
    *,
    draws: int = 100,
    n_queries: int = 1000,
    heldout_n: int = 1000,
    simulator: Any = None,
    n_train: int = 2000,
    train_seed: int = 1,
    seed: int = 1000,
    lambdas: Sequence[float] = DEFAULT_CALIBRATION_LAMBDAS,
    refine: int = 6,
    confidence: float = 0.95,
    progress: bool = False,
) -> dict[str, Any]:
    """Repeat the simulator calibration on fresh queries and check its held-out interval (SIMULATED).

    Draw ``d`` calibrates on ``n_queries`` queries (seed ``seed + 2d``), then runs the chosen λ on
    ``heldout_n`` other queries (seed ``seed + 2d + 1``) and checks whether their strong-token value lies in
    the reported ``heldout_interval``. The planner (estimated once from the training queries) is the same for
    every draw, as it would be in use.

    Returns
    -------
    dict
        ``draws``, ``inside`` (the count), ``coverage`` (the fraction), ``target_inside`` (draws whose interval
        contains the target), ``meets`` and per draw ``{"lambda", "achieved", "interval", "heldout"}``.
    """
    from trim_pomdp._internal.progress import Progress

    if draws < 1:
        raise InvalidParameterError(f"draws must be >= 1, got {draws}")
    ep = _simulator_episodes(simulator, n_train, train_seed, None, 5)
    rows: list[dict[str, Any]] = []
    with Progress(draws, "coverage check (simulated)", enabled=progress, unit="draws") as bar:
        for d in range(draws):
            cal, _ = _calibrate_episodes(
                ep, target, n_queries=n_queries, seed=seed + 2 * d, lambdas=lambdas, refine=refine,
                confidence=confidence, conservative=False, heldout_n=heldout_n, progress=False,
            )  # fmt: skip
            assert cal.knob is not None
            s = seed + 2 * d + 1
            correct, tokens = ep.planner.run(cal.knob, ep.source, heldout_n, s)
            ref = ep.reference(heldout_n, s) if target.needs_reference else None
            held = measure(cal.knob, tokens, correct, ref, target).value
            lo, hi = cal.heldout_interval
            rows.append(
                {"lambda": cal.knob, "achieved": cal.achieved, "interval": [lo, hi], "heldout": held,
                 "inside": bool(lo <= held <= hi), "target_inside": bool(lo <= target.value <= hi),
                 "meets": cal.meets}
            )  # fmt: skip
            inside = sum(bool(r["inside"]) for r in rows)
            bar.advance(note=f"inside {inside}/{len(rows)}")
    inside = sum(bool(r["inside"]) for r in rows)
    return {
        "target": {"kind": target.kind, "value": target.value},
        "draws": draws,
        "n_queries": n_queries,
        "heldout_n": heldout_n,
        "confidence": confidence,
        "inside": inside,
        "coverage": inside / draws,
        "target_inside": sum(bool(r["target_inside"]) for r in rows),
        "meets": sum(bool(r["meets"]) for r in rows),
        "simulated": True,
        "rows": rows,
    }
