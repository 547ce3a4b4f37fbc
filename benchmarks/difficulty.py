"""Routing with the difficulty-aware TRIM-POMDP against the pooled one and TRIM-Thr, on simulated queries.

Usage::

    python benchmarks/difficulty.py [--queries 4000] [--classes 2] [--lambdas 0,1e-5,...] [--out FILE]

Two simulators (everything SIMULATED):

* ``default``: the shipped simulator, whose queries each have their own ``p_w``, ``p_s`` (Beta distributions);
* ``homogeneous``: the same with every query's ``p_w``, ``p_s`` at the means (concentrations 1e6);
* ``independent``: homogeneous, and M_s's chance at a step independent of M_w's at the same step
  (``step_corr = 0``; the default simulator correlates them, which makes M_w's and M_s's failures on one query
  depend on each other even when every query has the same accuracies);
* ``qwen-traces`` (not in the default list): the simulator whose PRM is recalibrated to the real
  Qwen2.5-Math-PRM-7B traces (``trim_pomdp/data/simulator_qwen_traces.json``).

On each, with the same training queries (the POMDP's parameters and the difficulty classes are estimated from
them, classes with :func:`trim_pomdp.pomdp.difficulty.with_difficulty`) and the same evaluation queries
(common random numbers), it runs M_w alone, M_s alone, TRIM-Thr over its default grid, the pooled POMDP and the
difficulty-aware POMDP over the λ grid (default: the evaluation sweep's :data:`DEFAULT_LAMBDAS`), and reports

* each policy's top accuracy with its standard error, and the paired difference of the two POMDPs' top
  accuracies (same queries: the standard error of the per-query difference);
* ΔIBC on each policy's own PGR levels, on the levels all three reach, and per pair on the levels both reach
  (:func:`trim_pomdp.evaluation.metrics.summarize`);
* per λ, the paired differences (difficulty − pooled) of accuracy and strong tokens with their standard errors.

Writes JSON to ``benchmark-results/difficulty.json`` (git-ignored) or to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import default_out, machine, write_result

from trim_pomdp.evaluation.metrics import summarize
from trim_pomdp.evaluation.records import Records
from trim_pomdp.evaluation.simulator import SimulatorParams, load_default_simulator_params
from trim_pomdp.evaluation.sweep import (
    DEFAULT_LAMBDAS,
    Benchmark,
    SweepSettings,
    estimate_trim_params,
    threshold_grid,
)
from trim_pomdp.evaluation.trace_calibration import QWEN_TRACES_FILE
from trim_pomdp.pomdp import TrimPOMDP, default_observation_model, solve_trim
from trim_pomdp.pomdp.difficulty import evidence_from_simulator, with_difficulty
from trim_pomdp.routers import BeliefRouter, ThresholdRouter


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(x.size))


def _run_pomdp(
    bench: Benchmark, model: TrimPOMDP, lams: list[float]
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for lam in lams:
        m = model.with_params(lam=lam)
        out[lam] = bench.run_step_router(BeliefRouter(solve_trim(m), m, floor=1e-300))
    return out


def simulate(name: str, sim_params: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Every policy on one simulator; the summary, top accuracies and paired differences."""
    t0 = time.perf_counter()
    settings = SweepSettings(
        routers=("thr",),
        n_queries=args.queries,
        seed=args.seed,
        n_train=args.train,
        lambdas=tuple(args.lambdas),
    )
    bench = Benchmark(sim_params, sim_params, settings, name=name)
    obs = default_observation_model()
    pooled = TrimPOMDP(estimate_trim_params(bench.train_stats, n_buckets=settings.n_buckets), obs)
    ev = evidence_from_simulator(bench.train_sim, settings.n_train, settings.train_seed)
    params, warned = with_difficulty(pooled.params, ev, args.classes, seed=args.seed)
    classes = TrimPOMDP(params, obs)
    q = bench.queries
    parts = [
        Records.from_arrays("weak", None, bench.query_ids, q.weak_correct, np.zeros(len(q))),
        Records.from_arrays("strong", None, bench.query_ids, q.strong_correct, q.strong_tokens),
    ]
    for k in threshold_grid(bench):
        c, t = bench.run_step_router(ThresholdRouter(k))
        parts.append(Records.from_arrays("thr", k, bench.query_ids, c, t))
    runs = {
        "pooled": _run_pomdp(bench, pooled, args.lambdas),
        "difficulty": _run_pomdp(bench, classes, args.lambdas),
    }
    for policy, res in runs.items():
        for lam, (c, t) in res.items():
            parts.append(Records.from_arrays(policy, lam, bench.query_ids, c, t))
    records = Records.concat(parts)
    summary = summarize(records)
    top: dict[str, Any] = {}
    best_knob: dict[str, Any] = {}
    for policy, s in summary["policies"].items():
        pt = max(s["points"], key=lambda p: p["accuracy"])
        n = summary["n_queries"]
        top[policy] = {
            "accuracy": pt["accuracy"],
            "se": math.sqrt(pt["accuracy"] * (1 - pt["accuracy"]) / n),
            "knob": pt["knob"],
            "strong_tokens": pt["mean_tokens"],
        }
        best_knob[policy] = pt["knob"]
    a = runs["difficulty"][best_knob["difficulty"]][0].astype(float)
    b = runs["pooled"][best_knob["pooled"]][0].astype(float)
    per_lambda = []
    for lam in args.lambdas:
        (ca, ta), (cb, tb) = runs["difficulty"][lam], runs["pooled"][lam]
        d_acc, d_tok = ca.astype(float) - cb, ta - tb
        per_lambda.append(
            {
                "lambda": lam,
                "accuracy": {"difficulty": float(ca.mean()), "pooled": float(cb.mean())},
                "strong_tokens": {"difficulty": float(ta.mean()), "pooled": float(tb.mean())},
                "d_accuracy": float(d_acc.mean()),
                "d_accuracy_se": _se(d_acc),
                "d_strong_tokens": float(d_tok.mean()),
                "d_strong_tokens_se": _se(d_tok),
            }
        )
    dc = params.difficulty
    return {
        "simulator": name,
        "simulated": True,
        "queries": args.queries,
        "training_queries": args.train,
        "weak": summary["weak"]["accuracy"],
        "strong": summary["strong"]["accuracy"],
        "pooled": {"p_w": pooled.params.p_w, "p_s": pooled.params.p_s},
        "classes": {
            "asked": args.classes,
            "n": dc.n_classes,
            "prior": dc.prior.tolist(),
            "p_w": dc.p_w.tolist(),
            "p_s": dc.p_s.tolist(),
            "heldout_loglik_per_problem": dc.card["heldout_loglik_per_problem"],
            "warnings": warned,
        },
        "top_accuracy": top,
        "top_accuracy_difficulty_minus_pooled": {"value": float((a - b).mean()), "se": _se(a - b)},
        "top_accuracy_difficulty_minus_thr": top["difficulty"]["accuracy"] - top["thr"]["accuracy"],
        "delta_ibc": {
            p: {"own": s["delta_ibc"], "own_levels": s["levels_reached"], "common": s["delta_ibc_common"]}
            for p, s in summary["policies"].items()
        },
        "common_levels": summary["common_levels"],
        "pairwise": summary["pairwise"],
        "per_lambda": per_lambda,
        "seconds": time.perf_counter() - t0,
    }


def _print(res: dict[str, Any]) -> None:
    cl = res["classes"]
    print(
        f"\n== {res['simulator']} simulator (SIMULATED), {res['queries']} queries; weak {res['weak']:.4f}, strong "
        f"{res['strong']:.4f}; pooled p_w={res['pooled']['p_w']:.4f} p_s={res['pooled']['p_s']:.4f}; "
        f"{cl['n']} classes prior {np.round(cl['prior'], 3).tolist()} "
        f"p_w {np.round(cl['p_w'], 3).tolist()} p_s {np.round(cl['p_s'], 3).tolist()}"
    )
    for w in cl["warnings"]:
        print(f"warning: {w}")
    print(f"{'policy':<11} | {'top acc':>15} | {'at knob':>8} | {'ΔIBC own (levels)':>18} | ΔIBC common")
    for p, t in res["top_accuracy"].items():
        d = res["delta_ibc"][p]
        own = "-" if d["own"] is None else f"{d['own']:.3f} ({d['own_levels']})"
        com = "-" if d["common"] is None else f"{d['common']:.3f}"
        print(f"{p:<11} | {t['accuracy']:.4f} ± {t['se']:.4f} | {t['knob']:>8.3g} | {own:>18} | {com}")
    diff = res["top_accuracy_difficulty_minus_pooled"]
    print(
        f"common PGR levels: {res['common_levels']}; top accuracy difficulty − pooled {diff['value']:+.4f} ± "
        f"{diff['se']:.4f} (paired), difficulty − TRIM-Thr {res['top_accuracy_difficulty_minus_thr']:+.4f}"
    )
    for pw in res["pairwise"]:
        v = ["-" if x is None else f"{x:.3f}" for x in pw["delta_ibc"]]
        print(f"  {pw['policies'][0]} vs {pw['policies'][1]} on {pw['levels']} levels: ΔIBC {v[0]} vs {v[1]}")
    print(f"{'λ':>8} | {'acc diff − pool':>16} | {'Δacc ± se':>17} | {'Δtokens ± se':>16}")
    for r in res["per_lambda"]:
        print(
            f"{r['lambda']:>8.3g} | {r['accuracy']['difficulty']:.4f} {r['accuracy']['pooled']:.4f} | "
            f"{r['d_accuracy']:+.4f} ± {r['d_accuracy_se']:.4f} | {r['d_strong_tokens']:+7.1f} ± "
            f"{r['d_strong_tokens_se']:.1f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=4000, help="evaluation queries per simulator")
    ap.add_argument("--train", type=int, default=2000, help="training queries (estimation)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", default="2", help="difficulty classes: D or auto")
    ap.add_argument("--lambdas", default=None, help="comma-separated λ grid (default: DEFAULT_LAMBDAS)")
    ap.add_argument("--simulators", default="default,homogeneous,independent")
    ap.add_argument("--out", type=Path, default=default_out(__file__))
    args = ap.parse_args()
    args.lambdas = [float(x) for x in args.lambdas.split(",")] if args.lambdas else list(DEFAULT_LAMBDAS)
    args.classes = args.classes if args.classes == "auto" else int(args.classes)
    base = load_default_simulator_params()
    sims = {
        "default": base,
        "homogeneous": dataclasses.replace(base, p_w_concentration=1e6, p_s_concentration=1e6),
        "independent": dataclasses.replace(base, p_w_concentration=1e6, p_s_concentration=1e6, step_corr=0.0),
        "qwen-traces": SimulatorParams.from_json(
            Path(__file__).resolve().parents[1] / "trim_pomdp" / "data" / QWEN_TRACES_FILE
        ),
    }
    out: dict[str, Any] = {"machine": machine(), "lambdas": args.lambdas, "results": {}}
    for name in args.simulators.split(","):
        res = simulate(name, sims[name], args)
        out["results"][name] = res
        _print(res)
    write_result(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
