"""Timing and accuracy of the finite-horizon TRIM-POMDP solver on the shipped default model.

Usage::

    python benchmarks/solve.py [--repeats 5] [--sweep 50] [--mc 100000] [--pointbased SECONDS] [--out FILE]

Measures, on the shipped defaults (H = 30, 5 token buckets, 20×20 observation bins):

* certified gap at b0 and wall time (median over repeats) at precision 1e-3 … 1e-6 (adaptive grids), and the
  baseline in the same run: one pass on uniform grids just fine enough to reach the same precision (grid sizes
  doubled until it does);
* peak traced memory (tracemalloc) of a 1e-4 solve and the process's maximum resident set size;
* a λ sweep (default 50 log-spaced values in [1e-5, 1e-2]) at precision 1e-3;
* Monte Carlo (10^5 episodes under the model's own process, :func:`trim_pomdp.routers.rollout.rollout`): time
  and agreement with V(b0) in standard errors;
* optionally (``--pointbased S``) the generic point-based solver on the flattened tabular model for S seconds;
* difficulty classes (``--classes 2,3``; ``0`` skips): the same model with D classes estimated from 2000
  simulated training queries (seed 1; :func:`trim_pomdp.pomdp.difficulty.with_difficulty`), solved at 1e-3 —
  the first solve of each D (cold) and the median of ``--repeats`` more (warm), as a ratio to the D = 1 median
  of the same run — and a ``--class-sweep`` λ sweep (default 50 values in [1e-5, 1e-2]) at D = 2 and at D = 1,
  run twice (cold: first, warm: again in the same process).

Writes JSON to ``benchmark-results/solve.json`` (git-ignored) or to ``--out``. Timings on a shared machine are
pessimistic.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _common import default_out, write_result

from trim_pomdp.pomdp import ModelProcess, build_trim_pomdp, solve_trim
from trim_pomdp.routers.rollout import rollout
from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver


def _median_solve(model, repeats: int, **kw) -> dict:
    times, cpu, info = [], [], None
    for _ in range(repeats):
        solver = FiniteHorizonSolver(**kw)
        t0, c0 = time.perf_counter(), time.process_time()
        policy = solver.solve(model)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        info = policy.info
    return {
        "median_s": statistics.median(times),
        "cpu_median_s": statistics.median(cpu),
        "min_s": min(times),
        "times_s": times,
        "gap": info.gap,
        "lower": info.lower_bound,
        "upper": info.upper_bound,
        "passes": info.iterations,
        "grid_points": info.sizes["grid_points"],
        "max_grid_points": info.sizes["max_grid_points"],
    }


def _uniform_baseline(model, precision: float, repeats: int) -> dict:
    size = 9
    while True:
        res = _median_solve(model, 1, mode="grid", grid_size=size)
        if res["gap"] <= precision or size > 4096:
            break
        size = 2 * size - 1
    res = _median_solve(model, repeats, mode="grid", grid_size=size)
    res["grid_size"] = size
    return res


def _timed_sweep(tp, lams) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    gaps = [
        FiniteHorizonSolver(precision=1e-3).solve(tp.with_params(lam=float(x)).structured()).info.gap
        for x in lams
    ]
    return {"total_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "max_gap": max(gaps)}


def _difficulty(tp, args, rows: list) -> dict:
    """Solve times with difficulty classes, as ratios to the pooled (D = 1) model in the same run."""
    from trim_pomdp.evaluation.simulator import Simulator
    from trim_pomdp.pomdp import TrimPOMDP
    from trim_pomdp.pomdp.difficulty import load_evidence, with_difficulty

    ev = load_evidence("simulator", queries=2000, seed=1, simulator=Simulator)
    repeats = max(1, args.repeats)
    base = _median_solve(tp.structured(), repeats, precision=1e-3)
    res: dict = {
        "source": "2000 simulated training queries, seed 1 (SIMULATED)",
        "pooled": base,
        "classes": {},
    }
    models = {}
    for D in (int(x) for x in args.classes.split(",")):
        params, _ = with_difficulty(tp.params, ev, D, max_classes=D)
        models[D] = TrimPOMDP(params, tp.obs_model)
        model = models[D].structured()
        t0, c0 = time.perf_counter(), time.process_time()
        FiniteHorizonSolver(precision=1e-3).solve(model)
        cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
        warm = _median_solve(model, repeats, precision=1e-3)
        dc = params.difficulty
        res["classes"][str(D)] = {
            "prior": dc.prior.tolist(),
            "p_w": dc.p_w.tolist(),
            "p_s": dc.p_s.tolist(),
            "cold_s": cold,
            "cold_cpu_s": cold_cpu,
            "warm": warm,
            "ratio_to_pooled": warm["median_s"] / base["median_s"],
        }
        rows.append(
            (
                f"D = {D} solve @ 1e-3 (warm median)",
                warm["median_s"],
                f"cold {cold:.3f} s; CPU {warm['cpu_median_s']:.3f} s; gap {warm['gap']:.2e}, {warm['passes']} "
                f"passes, {warm['grid_points']} pts; {warm['median_s'] / base['median_s']:.1f}× the D = 1 solve "
                f"({base['median_s']:.3f} s)",
            )
        )
    if args.class_sweep and 2 in models:
        lams = np.geomspace(1e-5, 1e-2, args.class_sweep)
        sweeps = {}
        for name, m in (("pooled", tp), ("D2", models[2])):
            cold = _timed_sweep(m, lams)
            warm = _timed_sweep(m, lams)
            sweeps[name] = {"cold": cold, "warm": warm}
        sweeps["ratio_warm"] = sweeps["D2"]["warm"]["total_s"] / sweeps["pooled"]["warm"]["total_s"]
        res["sweep"] = {"n": args.class_sweep, **sweeps}
        d2, d1 = sweeps["D2"], sweeps["pooled"]
        rows.append(
            (
                f"D = 2 {args.class_sweep}-λ sweep @ 1e-3 (cold)",
                d2["cold"]["total_s"],
                f"warm {d2['warm']['total_s']:.2f} s (CPU {d2['warm']['cpu_s']:.2f} s), max gap "
                f"{d2['warm']['max_gap']:.2e}; D = 1 cold "
                f"{d1['cold']['total_s']:.2f} s, warm {d1['warm']['total_s']:.2f} s (D = 2 / D = 1 warm "
                f"{sweeps['ratio_warm']:.1f}×)",
            )
        )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sweep", type=int, default=50, help="number of λ values in the sweep (0: skip)")
    ap.add_argument("--mc", type=int, default=100_000, help="Monte Carlo episodes (0: skip)")
    ap.add_argument(
        "--pointbased", type=float, default=0.0, help="seconds for the point-based solver (0: skip)"
    )
    ap.add_argument(
        "--classes", default="2,3", help="difficulty-class counts to time, comma-separated (0: skip)"
    )
    ap.add_argument("--class-sweep", type=int, default=50, help="λ values of the D = 2 sweep (0: skip)")
    ap.add_argument(
        "--only-classes",
        action="store_true",
        help="only the difficulty-class section (skip precision/sweep/MC)",
    )
    ap.add_argument("--out", type=Path, default=default_out(__file__))
    args = ap.parse_args()

    tp = build_trim_pomdp()
    model = tp.structured()
    machine = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    out: dict = {
        "machine": machine,
        "model": {
            "horizon": tp.horizon,
            "buckets": tp.n_buckets,
            "bins": int(tp.obs_model.n_bins),
            "lam": tp.params.lam,
            "p_w": tp.params.p_w,
            "p_s": tp.params.p_s,
        },
    }
    rows = []
    FiniteHorizonSolver(precision=1e-3).solve(model)  # warm caches / imports
    if args.only_classes:
        args.sweep = args.mc = 0
    for prec in () if args.only_classes else (1e-3, 1e-4, 1e-5, 1e-6):
        ours = _median_solve(model, args.repeats, precision=prec)
        base = _uniform_baseline(model, prec, max(1, args.repeats // 2))
        out[f"precision_{prec:g}"] = {
            "adaptive": ours,
            "uniform_baseline": base,
            "speedup_vs_uniform": base["median_s"] / ours["median_s"],
        }
        rows.append(
            (
                f"solve @ {prec:g} (adaptive)",
                ours["median_s"],
                f"gap {ours['gap']:.2e}, {ours['passes']} passes, {ours['grid_points']} pts",
            )
        )
        rows.append(
            (
                f"solve @ {prec:g} (uniform {base['grid_size']})",
                base["median_s"],
                f"gap {base['gap']:.2e}; adaptive is {base['median_s'] / ours['median_s']:.1f}× faster",
            )
        )

    if not args.only_classes:
        tracemalloc.start()
        FiniteHorizonSolver(precision=1e-4).solve(model)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["peak_traced_MiB_1e-4"] = peak / 2**20
        rows.append(("peak memory @ 1e-4 (traced)", float("nan"), f"{peak / 2**20:.1f} MiB"))

    if args.sweep:
        lams = np.geomspace(1e-5, 1e-2, args.sweep)
        t0 = time.perf_counter()
        sweep = []
        for lam in lams:
            s = FiniteHorizonSolver(precision=1e-3)
            s_policy = s.solve(tp.with_params(lam=float(lam)).structured())
            sweep.append(
                {
                    "lam": float(lam),
                    "lower": s_policy.info.lower_bound,
                    "gap": s_policy.info.gap,
                    "seconds": s_policy.info.seconds,
                }
            )
        total = time.perf_counter() - t0
        out["sweep"] = {
            "n": args.sweep,
            "total_s": total,
            "max_gap": max(r["gap"] for r in sweep),
            "points": sweep,
        }
        rows.append((f"{args.sweep}-λ sweep @ 1e-3", total, f"max gap {out['sweep']['max_gap']:.2e}"))

    if args.mc:
        pol = solve_trim(tp, FiniteHorizonSolver(precision=1e-4))
        mc = rollout(pol, ModelProcess(tp), n=args.mc, seed=0)
        z = (mc.ret - pol.info.lower_bound) / mc.ret_se
        out["monte_carlo"] = {
            **mc.to_dict(),
            "V_lower": pol.info.lower_bound,
            "V_upper": pol.info.upper_bound,
            "z_score": z,
        }
        rows.append(
            (
                f"Monte Carlo {args.mc} episodes",
                mc.seconds,
                f"return {mc.ret:.4f} ± {mc.ret_se:.4f} vs V(b0) {pol.info.lower_bound:.4f} (z = {z:+.2f}); "
                f"accuracy {mc.accuracy:.4f}, strong tokens {mc.strong_tokens:.1f}",
            )
        )

    if args.pointbased > 0:
        try:
            from trim_pomdp.solvers.pointbased.solver import PointBasedSolver
        except ImportError as exc:  # pragma: no cover - other helper's module
            out["pointbased"] = {"error": str(exc)}
        else:
            flat = tp.flatten()
            pb = PointBasedSolver(precision=1e-3, time_limit=args.pointbased)
            t0 = time.perf_counter()
            pb_policy = pb.solve(flat)
            dt = time.perf_counter() - t0
            g = tp.params.discount
            out["pointbased"] = {
                "seconds": dt,
                "lower": pb_policy.info.lower_bound,
                "upper": pb_policy.info.upper_bound,
                "note": f"flattened discounted model (γ={g:g}); compare with γ·V_native(γ)",
            }
            rows.append(
                (
                    f"point-based on flattened ({args.pointbased:g} s budget)",
                    dt,
                    f"bounds [{pb_policy.info.lower_bound:.4f}, {pb_policy.info.upper_bound:.4f}] (discounted)",
                )
            )

    if args.classes.strip() != "0":
        out["difficulty"] = _difficulty(tp, args, rows)

    try:
        import resource

        out["max_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        rows.append(("max resident set size (whole run)", float("nan"), f"{out['max_rss_MiB']:.0f} MiB"))
    except ImportError:  # pragma: no cover - not on Windows
        pass
    out["machine"]["load_avg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"machine: {machine['platform']}, {machine['cpus']} CPUs, load {machine['load_avg_start']}")
    print(
        f"model: H={tp.horizon}, K={tp.n_buckets}, {tp.obs_model.n_bins}×{tp.obs_model.n_bins} bins, "
        f"λ={tp.params.lam:g}"
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}} | {'seconds':>8} | notes")
    for name, sec, note in rows:
        s = "" if sec != sec else f"{sec:8.3f}"
        print(f"{name:<{width}} | {s:>8} | {note}")
    write_result(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
