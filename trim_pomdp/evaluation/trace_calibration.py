"""Calibrating the simulator's synthetic PRM to real PRM traces, and measuring how far simulated traces are from real.

Real traces (scored solutions with graded final answers, such as Qwen2.5-Math-PRM-7B on Qwen2.5-Math-1.5B-Instruct's
MATH-500 solutions) give, without any step label, statistics that a simulated PRM must reproduce
(:func:`trace_statistics`): the per-solution minimum score split by outcome, the score marginals and the last
step's score split by outcome, the lag-1 rank autocorrelation of scores within a solution, and the number of
steps per solution. :func:`trace_distances` compares two sets of them (two-sample Kolmogorov–Smirnov statistics
for the distributions, absolute differences for the autocorrelations and the accuracy).

To compare like with like, the simulator is run at the traces' *operating point* (:func:`operating_point`): its
weak model writes solutions with the traces' step counts, and its mean next-step accuracy is set (bisection,
common random numbers) so that the simulated final-answer accuracy equals the traces'. The PRM does not change
which answers are right, so the operating point does not depend on the PRM being calibrated.

:func:`calibrate_prm_to_traces` then fits :class:`~trim_pomdp.prm.synthetic.SyntheticPRM`'s parameters of one
split (the class means and every shape parameter) by minimising the sum of the KS distances and of the
autocorrelation differences (Nelder–Mead on transformed parameters from a simplex of side
:data:`SIMPLEX_STEP`, common random numbers). What a step after an error scores like (``s1_high``, ``s1_shift``,
``s1_persist``) is identified here through the wrong solutions: their scores after the lowest one, their last step
and their autocorrelation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, stats

from trim_pomdp.evaluation.simulator import Simulator, SimulatorParams
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.prm.synthetic import SyntheticPRM

__all__ = [
    "CALIBRATED_PARAMETERS",
    "QWEN_TRACES_FILE",
    "TraceStatistics",
    "calibrate_prm_to_traces",
    "load_trace_statistics",
    "objective",
    "operating_point",
    "recalibrated_simulator_params",
    "simulate_traces",
    "statistics_dict",
    "step_count_probs",
    "trace_distances",
    "trace_statistics",
]

#: The SyntheticPRM parameters :func:`calibrate_prm_to_traces` fits (the means of the calibrated split and the
#: shapes).
CALIBRATED_PARAMETERS = (
    "mu_s0",
    "mu_s2",
    "item_sd",
    "rho",
    "s0_sd",
    "s2_sd",
    "s1_high",
    "s1_shift",
    "s1_persist",
)
#: Side of the initial Nelder–Mead simplex in the transformed parameters (logits, log-s.d.s, means).
SIMPLEX_STEP = 0.5
#: The shipped simulator whose PRM is calibrated to the real Qwen2.5-Math-PRM-7B traces (inside ``trim_pomdp/data``).
QWEN_TRACES_FILE = "simulator_qwen_traces.json"
#: The distributions compared by KS, and the scalars compared by absolute difference.
DISTRIBUTIONS = (
    "min_right",
    "min_wrong",
    "scores_right",
    "scores_wrong",
    "last_right",
    "last_wrong",
    "steps",
)
SCALARS = ("lag1_right", "lag1_wrong", "accuracy")


@dataclass
class TraceStatistics:
    """Statistics of a set of scored solutions with known outcomes (see the module docstring)."""

    min_right: np.ndarray
    min_wrong: np.ndarray
    scores_right: np.ndarray
    scores_wrong: np.ndarray
    last_right: np.ndarray
    last_wrong: np.ndarray
    steps: np.ndarray
    lag1_right: float
    lag1_wrong: float
    accuracy: float

    def summary(self) -> dict[str, Any]:
        """Medians and quantiles of the distributions and the scalars, JSON-ready."""
        out: dict[str, Any] = {}
        for name in DISTRIBUTIONS:
            x = getattr(self, name)
            out[name] = {
                "n": int(x.size),
                "mean": float(x.mean()) if x.size else None,
                "quantiles_5_25_50_75_95": np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95]).tolist()
                if x.size
                else None,
            }
        out.update({name: float(getattr(self, name)) for name in SCALARS})
        return out


def _lag1(scores: np.ndarray, lengths: np.ndarray, rows: np.ndarray) -> float:
    """Spearman correlation of consecutive step scores, pooled over the solutions ``rows``."""
    a, b = [], []
    for i in np.flatnonzero(rows):
        s = scores[i, : lengths[i]]
        a.append(s[:-1])
        b.append(s[1:])
    x, y = np.concatenate(a), np.concatenate(b)
    if x.size < 3:
        return float("nan")
    return float(stats.spearmanr(x, y)[0])


def trace_statistics(scores: Any, lengths: Any, outcome: Any) -> TraceStatistics:
    """:class:`TraceStatistics` of padded scores ``(n, H)`` (NaN after each length) and outcomes (bool)."""
    scores = np.asarray(scores, dtype=float)
    lengths = np.asarray(lengths, dtype=np.int64)
    y = np.asarray(outcome, dtype=bool)
    if scores.shape[0] != lengths.size or y.shape != lengths.shape:
        raise InvalidParameterError("scores, lengths and outcome must describe the same solutions")
    if y.all() or not y.any():
        raise InvalidParameterError("trace statistics need right and wrong final answers")
    live = np.arange(scores.shape[1])[None, :] < lengths[:, None]
    mins = np.where(live, scores, np.inf).min(axis=1)
    last = scores[np.arange(lengths.size), lengths - 1]
    return TraceStatistics(
        min_right=mins[y],
        min_wrong=mins[~y],
        scores_right=scores[live & y[:, None]],
        scores_wrong=scores[live & ~y[:, None]],
        last_right=last[y],
        last_wrong=last[~y],
        steps=lengths.astype(float),
        lag1_right=_lag1(scores, lengths, y),
        lag1_wrong=_lag1(scores, lengths, ~y),
        accuracy=float(y.mean()),
    )


def trace_distances(sim: TraceStatistics, real: TraceStatistics) -> dict[str, float]:
    """KS statistic per distribution and absolute difference per scalar between simulated and real statistics."""
    out = {
        f"ks_{name}": float(stats.ks_2samp(getattr(sim, name), getattr(real, name)).statistic)
        for name in DISTRIBUTIONS
    }
    out.update(
        {f"abs_{name}": abs(float(getattr(sim, name)) - float(getattr(real, name))) for name in SCALARS}
    )
    return out


def simulate_traces(
    params: SimulatorParams, prm: SyntheticPRM | None, n: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scores, lengths, outcome)`` of ``n`` solutions of the simulator's weak model alone (simulated)."""
    q = Simulator(params, prm).queries(n, seed)
    return q.weak_scores, q.n_steps, np.asarray(q.weak_correct, dtype=bool)


def step_count_probs(lengths: np.ndarray, horizon: int) -> list[float]:
    """``P(L = k)``, ``k = 1 … horizon``, of the step counts ``lengths`` (longer solutions folded into ``horizon``)."""
    counts = np.bincount(np.minimum(lengths, horizon), minlength=horizon + 1)[1:].astype(float)
    return (counts / counts.sum()).tolist()


def operating_point(
    params: SimulatorParams, lengths: Any, accuracy: float, *, n: int = 20_000, seed: int = 0
) -> SimulatorParams:
    """``params`` with the traces' step counts (longer ones folded into H) and the weak model's mean accuracy
    ``p_w_mean`` bisected until the simulated final-answer accuracy equals ``accuracy``."""
    if not 0.0 < accuracy < 1.0:
        raise InvalidParameterError(f"accuracy must lie in (0, 1), got {accuracy!r}")
    base = replace(
        params, step_count_probs=step_count_probs(np.asarray(lengths, dtype=np.int64), params.horizon)
    )
    prm = SyntheticPRM(default_split=params.split)

    def acc(mean: float) -> float:
        p = replace(base, p_w_mean=mean)
        return float(simulate_traces(p, prm, n, seed)[2].mean())

    lo, hi = 0.5, 0.9999
    if not acc(lo) <= accuracy <= acc(hi):
        raise InvalidParameterError(f"accuracy {accuracy} is out of reach of the simulator's weak model")
    while hi - lo > 1e-4:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if acc(mid) < accuracy else (lo, mid)
    return replace(base, p_w_mean=round(0.5 * (lo + hi), 5))


def _to_vector(kw: dict[str, float]) -> np.ndarray:
    return np.array(
        [
            kw["mu_s0"],
            kw["mu_s2"],
            math.log(kw["item_sd"]),
            math.atanh(kw["rho"]),
            math.log(kw["s0_sd"]),
            math.log(kw["s2_sd"]),
            math.log(kw["s1_high"] / (1 - kw["s1_high"])),
            kw["s1_shift"],
            _logit(min(max(kw["s1_persist"], 0.02), 0.98)),
        ]
    )


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _from_vector(v: np.ndarray) -> dict[str, float]:
    return {
        "mu_s0": float(v[0]),
        "mu_s2": float(v[1]),
        "item_sd": float(math.exp(v[2])),
        "rho": float(math.tanh(v[3])),
        "s0_sd": float(math.exp(v[4])),
        "s2_sd": float(math.exp(v[5])),
        "s1_high": float(1 / (1 + math.exp(-v[6]))),
        "s1_shift": float(v[7]),
        "s1_persist": float(1 / (1 + math.exp(-v[8]))),
    }


def _prm_of(kw: dict[str, float], base: SyntheticPRM, split: str) -> SyntheticPRM:
    mu_s0, mu_s2 = dict(base.mu_s0), dict(base.mu_s2)
    mu_s0[split], mu_s2[split] = kw["mu_s0"], kw["mu_s2"]
    shape = {k: kw[k] for k in CALIBRATED_PARAMETERS[2:]}
    return SyntheticPRM(mu_s0=mu_s0, mu_s2=mu_s2, default_split=split, precision=base.precision, **shape)


def objective(distances: dict[str, float]) -> float:
    """What the calibration minimises: the KS distances of the six score distributions plus the two
    autocorrelation differences (step counts and accuracy are matched by the operating point)."""
    return float(
        sum(distances[f"ks_{d}"] for d in DISTRIBUTIONS if d != "steps")
        + distances["abs_lag1_right"]
        + distances["abs_lag1_wrong"]
    )


def calibrate_prm_to_traces(
    real: TraceStatistics,
    params: SimulatorParams,
    *,
    prm: SyntheticPRM | None = None,
    n: int = 4000,
    seed: int = 0,
    max_evaluations: int = 600,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit the calibrated split's SyntheticPRM parameters (:data:`CALIBRATED_PARAMETERS`) to real traces.

    Parameters
    ----------
    real : TraceStatistics
        Of the real traces.
    params : SimulatorParams
        The simulator at the traces' operating point (:func:`operating_point`); its ``split`` is the one whose
        means are fitted.
    prm : SyntheticPRM, optional
        Starting point (default: today's calibrated defaults); its other splits' means are kept.
    n, seed
        Simulated solutions per evaluation and their seed (common random numbers).
    max_evaluations : int
        Budget of Nelder–Mead.

    Returns
    -------
    parameters : dict
        The fitted values of :data:`CALIBRATED_PARAMETERS`.
    report : dict
        ``start`` and ``fitted`` parameters, their distances and objective, evaluations used.
    """
    base = prm or SyntheticPRM(default_split=params.split)
    split = params.split
    start = {
        "mu_s0": base.mu_s0[split],
        "mu_s2": base.mu_s2[split],
        **{k: getattr(base, k) for k in CALIBRATED_PARAMETERS[2:]},
    }

    def distances(kw: dict[str, float]) -> dict[str, float]:
        s, lengths, y = simulate_traces(params, _prm_of(kw, base, split), n, seed)
        return trace_distances(trace_statistics(s, lengths, y), real)

    def loss(v: np.ndarray) -> float:
        kw = _from_vector(v)
        if not (
            0.0 < kw["item_sd"] < 20 and kw["s0_sd"] < 20 and kw["s2_sd"] < 20 and kw["s1_persist"] < 0.999
        ):
            return 1e3
        return objective(distances(kw))

    x0 = _to_vector(start)
    simplex = np.vstack([x0, x0 + SIMPLEX_STEP * np.eye(x0.size)])
    res = optimize.minimize(
        loss,
        x0,
        method="Nelder-Mead",
        options={"maxfev": max_evaluations, "xatol": 1e-3, "fatol": 1e-4, "initial_simplex": simplex},
    )
    fitted = {k: round(v, 4) for k, v in _from_vector(res.x).items()}
    d0, d1 = distances(start), distances(fitted)
    report = {
        "start": start,
        "fitted": fitted,
        "distances_start": d0,
        "distances_fitted": d1,
        "objective_start": objective(d0),
        "objective_fitted": objective(d1),
        "evaluations": int(res.nfev),
        "n_simulated": n,
        "seed": seed,
        "operating_point": {"p_w_mean": params.p_w_mean, "split": split, "horizon": params.horizon},
    }
    return fitted, report


def load_trace_statistics(path: Any) -> tuple[TraceStatistics, np.ndarray]:
    """:class:`TraceStatistics` of a scored-items file whose final answers are known, and its step counts.

    Raises
    ------
    DataFormatError
        The file is not scored items (the reader names the line and the field).
    InvalidParameterError
        Some record's final answer is a placeholder (``final_answer_correct_known: false``), or every answer is
        right or every answer wrong.
    """
    from trim_pomdp.datasets.scored import load_scored_items
    from trim_pomdp.observation_models.chain import Trajectories

    traj = Trajectories.from_scored(load_scored_items(path))
    if np.isnan(traj.outcome).any():
        raise InvalidParameterError(
            f"{path}: {int(np.isnan(traj.outcome).sum())} record(s) have no known final answer "
            "(final_answer_correct_known: false); trace statistics need graded solutions"
        )
    return trace_statistics(traj.r, traj.lengths, traj.outcome == 1), traj.lengths


def recalibrated_simulator_params(
    scores: Any,
    *,
    base: SimulatorParams | None = None,
    n: int = 4000,
    seed: int = 0,
    max_evaluations: int = 600,
    operating_point_n: int = 20_000,
) -> SimulatorParams:
    """The simulator ``base`` (default: the shipped ``math`` one) with its PRM calibrated to the real traces
    in the scored-items file ``scores``, scores rounded to float16.

    The PRM's parameters are fitted at the traces' operating point (their generator's accuracy and step counts,
    :func:`operating_point`) and then put into ``base``'s own generators: the generators of ``base`` stay, the
    PRM that scores their steps changes. The card records the operating point, the fitted parameters and the
    distances before and after. ``n``, ``seed`` and ``max_evaluations`` are :func:`calibrate_prm_to_traces`'s;
    ``operating_point_n`` the simulated solutions per step of :func:`operating_point`'s bisection.
    """
    from trim_pomdp.evaluation.simulator import load_default_simulator_params

    base = base or load_default_simulator_params("math")
    real, lengths = load_trace_statistics(scores)
    op = operating_point(base, lengths, real.accuracy, n=operating_point_n, seed=seed)
    start = SyntheticPRM(default_split=base.split, precision="float16")
    fitted, report = calibrate_prm_to_traces(
        real, op, prm=start, n=n, seed=seed, max_evaluations=max_evaluations
    )
    prm_kw = _prm_of(fitted, start, base.split).get_params()
    prm_kw.pop("default_split")
    card = dict(base.card)
    card["prm"] = (
        "SyntheticPRM calibrated to real Qwen2.5-Math-PRM-7B traces (trim_pomdp.evaluation.trace_calibration); "
        "simulated scores"
    )
    card["prm_calibration"] = {
        "traces": str(Path(scores).name),
        "real_statistics": real.summary(),
        **report,
        "method": "Nelder-Mead on the sum of KS distances of the score distributions and the lag-1 "
        "autocorrelation differences, at the traces' operating point (common random numbers)",
        "regenerate": "python -m trim_pomdp.evaluation.trace_calibration --scores "
        "qwen-prm7b_math500-qwen1.5b_dev.jsonl --out trim_pomdp/data/" + QWEN_TRACES_FILE,
    }
    return replace(base, prm=prm_kw, card=card)


def statistics_dict(t: TraceStatistics) -> dict[str, Any]:
    """All arrays and scalars of ``t`` as lists (for tests and JSON)."""
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(t).items()}


def _main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - exercised by regenerating the file
    import argparse

    ap = argparse.ArgumentParser(description="Calibrate the simulator's synthetic PRM to real scored traces.")
    ap.add_argument("--scores", required=True, help="scored-items JSONL with known final answers")
    ap.add_argument("--n", type=int, default=4000, help="simulated solutions per evaluation")
    ap.add_argument("--max-evaluations", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    params = recalibrated_simulator_params(
        args.scores, n=args.n, seed=args.seed, max_evaluations=args.max_evaluations
    )
    params.to_json(args.out)
    rep = params.card["prm_calibration"]
    print(f"objective {rep['objective_start']:.3f} -> {rep['objective_fitted']:.3f}; wrote {args.out}")


if __name__ == "__main__":  # pragma: no cover
    _main()
