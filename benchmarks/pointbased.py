"""Quality and speed of the point-based solver on the classic POMDP files and on the flattened TRIM-POMDP.

Usage::

    python benchmarks/pointbased.py --data-dir DIR [--out FILE] [--hallway-time 60] [--trim-time 60]
                                    [--repeats 5] [--cases tiger,1d] [--fresh]

``DIR`` is a folder with the classic files ``Tiger.pomdp``, ``Hallway.pomdp``, ``cheese.95.POMDP`` and
``1d.POMDP`` (from pomdp.org); without it only ``trim_default`` runs.

Cases (the targets are set against APPL ``pomdpsol``'s results on the same files):

* ``tiger``: Tiger (γ = 0.95), bounds within 1e-3 of 19.3711 in ≤ 1 s (solved to precision 5e-4); median
  over ``--repeats`` solves, with the greedy-branch HSVI2 variant of the same solver as the in-run baseline.
* ``tiger_start_0.9``: start belief (0.9, 0.1); pomdpsol gives V* ∈ [22.5735, 22.5744].
* ``tiger_finite``: exact finite-horizon values and pruned vector counts (as exact value iteration gives them).
* ``hallway``: lower ≥ 0.99 and upper ≤ 1.21 within ``--hallway-time`` s (pomdpsol after 180 s:
  [0.9954, 1.2052]), default stochastic branch sampling vs the greedy HSVI2 baseline.
* ``cheese``, ``1d``: solved to precision 1e-3.
* ``trim_default``: the flattened default TRIM-POMDP (shipped parameters and observation model): the
  point-based bounds must bracket the native finite-horizon solver's V(b0) (× γ for the flattened start
  step); gap vs 1e-3·R, with the bound trajectory.

Results are written after every case (``--out``, default ``benchmark-results/pointbased.json``) and a rerun
skips the cases already there unless ``--fresh``. Timings on a shared machine are pessimistic; the machine and
its load are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from _common import default_out, machine, write_result

from trim_pomdp.solvers.formats import read_pomdp
from trim_pomdp.solvers.pointbased.solver import PointBasedSolver

TIGER_FINITE = {
    1: (-1.0, 3),
    2: (-1.95, 5),
    3: (2.3098, 9),
    4: (1.795544, 7),
    5: (2.763096, 13),
    6: (4.428531, 15),
    7: (4.584266, 19),
    8: (5.324021, 25),
    10: (6.693368, 27),
    20: (11.879569, 59),
    40: (16.679939, 81),
}


def _solve(model, trajectory: list | None = None, **kw):
    if trajectory is not None:
        kw["callback"] = lambda d: trajectory.append([d["seconds"], d["lower_bound"], d["upper_bound"]])
        kw["callback_interval"] = 2.0
    solver = PointBasedSolver(**kw)
    t0 = time.perf_counter()
    policy = solver.solve(model)
    info = policy.info
    return {
        "lower_bound": info.lower_bound,
        "upper_bound": info.upper_bound,
        "gap": info.gap,
        "seconds": time.perf_counter() - t0,
        "converged": info.converged,
        "trials": info.iterations,
        "alphas": info.sizes.get("alpha_vectors"),
        "stop_reason": info.extra.get("stop_reason"),
    }


def case_tiger(data: Path, repeats: int) -> dict:
    m = read_pomdp(data / "Tiger.pomdp")
    runs = {
        name: [_solve(m, precision=5e-4, time_limit=30, sampling=name, seed=r) for r in range(repeats)]
        for name in ("stochastic", "greedy")
    }
    out = {}
    for name, rs in runs.items():
        out[name] = {
            "median_seconds": statistics.median(r["seconds"] for r in rs),
            "runs": rs,
            "all_within_1e-3_of_19.3711": all(
                abs(r["lower_bound"] - 19.3711) <= 1e-3 and abs(r["upper_bound"] - 19.3711) <= 1e-3
                for r in rs
            ),
        }
    out["speed_ratio_greedy_over_stochastic"] = (
        out["greedy"]["median_seconds"] / out["stochastic"]["median_seconds"]
    )
    out["target_met"] = (
        out["stochastic"]["all_within_1e-3_of_19.3711"] and out["stochastic"]["median_seconds"] <= 1.0
    )
    return out


def case_tiger_start(data: Path) -> dict:
    m = read_pomdp(data / "Tiger.pomdp")
    m.b0 = np.array([0.9, 0.1])
    r = _solve(m, precision=1e-3, time_limit=30)
    r["target_met"] = (
        r["lower_bound"] <= 22.5744 + 1e-9 and r["upper_bound"] >= 22.5735 - 1e-9 and r["gap"] <= 1e-3
    )
    return r


def case_tiger_finite(data: Path) -> dict:
    m = read_pomdp(data / "Tiger.pomdp")
    rows = {}
    for h, (value, n_ref) in TIGER_FINITE.items():
        solver = PointBasedSolver(finite_horizon=h, time_limit=300)
        t0 = time.perf_counter()
        policy = solver.solve(m)
        rows[h] = {
            "value": policy.info.lower_bound,
            "reference": value,
            "alphas": len(policy.alphas),
            "reference_alphas": n_ref,
            "seconds": time.perf_counter() - t0,
            "value_matches": abs(policy.info.lower_bound - value) <= 5e-7,
        }
    return {"horizons": rows, "target_met": all(r["value_matches"] for r in rows.values())}


def case_hallway(data: Path, seconds: float) -> dict:
    m = read_pomdp(data / "Hallway.pomdp")
    out = {name: _solve(m, time_limit=seconds, sampling=name) for name in ("stochastic", "greedy")}
    s = out["stochastic"]
    out["target_met"] = s["lower_bound"] >= 0.99 and s["upper_bound"] <= 1.21
    out["pomdpsol_180s"] = [0.995377, 1.20519]
    return out


def case_file(data: Path, name: str) -> dict:
    r = _solve(read_pomdp(data / name), precision=1e-3, time_limit=60)
    r["target_met"] = r["converged"]
    return r


def case_trim(seconds: float) -> dict:
    from trim_pomdp.pomdp import build_trim_pomdp, default_observation_model, load_default_params
    from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver

    tp = build_trim_pomdp(load_default_params(), default_observation_model())
    gamma, reward = tp.params.discount, tp.params.reward
    native = FiniteHorizonSolver(precision=1e-6)
    native_policy = native.solve(tp.structured(discount=gamma))
    lo, hi = gamma * native_policy.info.lower_bound, gamma * native_policy.info.upper_bound
    t0 = time.perf_counter()
    flat = tp.flatten()
    flatten_seconds = time.perf_counter() - t0
    traj: list = []
    r = _solve(flat, trajectory=traj, precision=1e-3 * reward, time_limit=seconds)
    hit = [t for t, lo_, up_ in traj if up_ - lo_ <= 1e-3 * reward]
    r["trajectory"] = traj
    r["seconds_to_gap_target"] = hit[0] if hit else None
    r.update(
        {
            "native_lower": lo,
            "native_upper": hi,
            "native_seconds": native_policy.info.seconds,
            "flatten_seconds": flatten_seconds,
            "states": flat.n_states,
            "observations": flat.n_observations,
            "brackets_native": r["lower_bound"] <= hi + 1e-9 and r["upper_bound"] >= lo - 1e-9,
            "gap_target": 1e-3 * reward,
        }
    )
    r["target_met"] = r["brackets_native"] and r["gap"] <= 1e-3 * reward
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=None, help="folder with the classic .pomdp files")
    ap.add_argument("--out", type=Path, default=default_out(__file__), help="result file (JSON)")
    ap.add_argument("--hallway-time", type=float, default=60.0, help="seconds for Hallway")
    ap.add_argument("--trim-time", type=float, default=60.0, help="seconds for the flattened TRIM-POMDP")
    ap.add_argument("--repeats", type=int, default=5, help="Tiger solves per sampling variant")
    ap.add_argument("--cases", default=None, help="comma-separated cases to run (default: all)")
    ap.add_argument("--fresh", action="store_true", help="ignore results already in --out")
    args = ap.parse_args()

    results = {} if args.fresh or not args.out.exists() else json.loads(args.out.read_text())
    results["machine"] = machine()
    cases = results.setdefault("cases", {})
    data = args.data_dir
    plan = {
        "tiger": lambda: case_tiger(data, args.repeats),
        "tiger_start_0.9": lambda: case_tiger_start(data),
        "tiger_finite": lambda: case_tiger_finite(data),
        "hallway": lambda: case_hallway(data, args.hallway_time),
        "cheese": lambda: case_file(data, "cheese.95.POMDP"),
        "1d": lambda: case_file(data, "1d.POMDP"),
        "trim_default": lambda: case_trim(args.trim_time),
    }
    wanted = set(plan) if args.cases is None else {c.strip() for c in args.cases.split(",") if c.strip()}
    unknown = wanted - set(plan)
    if unknown:
        ap.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(plan)}")
    for name, fn in plan.items():
        if name not in wanted:
            continue
        if name in cases:
            print(f"{name}: already in {args.out}, skipped (use --fresh to rerun)")
            continue
        if name != "trim_default" and (data is None or not data.is_dir()):
            print(f"{name}: skipped, no --data-dir with the classic files")
            continue
        print(f"running {name} ...", flush=True)
        cases[name] = fn()
        cases[name]["load_average_after"] = list(os.getloadavg())
        write_result(args.out, results)

    print(f"\n{'case':<18}{'lower':>12}{'upper':>12}{'gap':>10}{'seconds':>10}  target")
    for name, c in cases.items():
        if name == "tiger":
            s = c["stochastic"]["runs"][0]
            print(
                f"{name:<18}{s['lower_bound']:>12.6f}{s['upper_bound']:>12.6f}{s['gap']:>10.2e}"
                f"{c['stochastic']['median_seconds']:>10.3f}  {c['target_met']}  "
                f"(greedy HSVI2 baseline {c['greedy']['median_seconds']:.3f} s, "
                f"ratio {c['speed_ratio_greedy_over_stochastic']:.2f})"
            )
        elif name == "hallway":
            s, g = c["stochastic"], c["greedy"]
            print(
                f"{name:<18}{s['lower_bound']:>12.6f}{s['upper_bound']:>12.6f}{s['gap']:>10.2e}"
                f"{s['seconds']:>10.1f}  {c['target_met']}  (greedy baseline [{g['lower_bound']:.4f}, "
                f"{g['upper_bound']:.4f}])"
            )
        elif name == "tiger_finite":
            for h, r in c["horizons"].items():
                print(
                    f"  h={h:<14}{r['value']:>12.6f}{r['reference']:>12.6f}{'':>10}{r['seconds']:>10.3f}  "
                    f"{r['value_matches']}  alphas {r['alphas']} (reference {r['reference_alphas']})"
                )
        else:
            print(
                f"{name:<18}{c['lower_bound']:>12.6f}{c['upper_bound']:>12.6f}{c['gap']:>10.2e}"
                f"{c['seconds']:>10.2f}  {c['target_met']}"
                + (
                    f"  native [{c['native_lower']:.6f}, {c['native_upper']:.6f}]"
                    if name == "trim_default"
                    else ""
                )
            )
    print(f"\nmachine: {results['machine']}; results in {args.out}")


if __name__ == "__main__":
    main()
