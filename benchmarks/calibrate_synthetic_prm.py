"""Re-derive the calibrated parameters of the synthetic PRM and check them.

Usage::

    python benchmarks/calibrate_synthetic_prm.py [--data-dir PROCESSBENCH_DIR] [--search-shapes] [--out FILE]

(``PROCESSBENCH_DIR``: a folder with ProcessBench's ``<split>.json`` files; without it, the hub.)

With ``--search-shapes``, first a grid search of the shape parameters (``s0_sd``, ``s1_high``, ``s1_shift``; the
others fixed) against the one real Qwen2.5-Math-PRM-7B trace: for every grid point the gsm8k means are
calibrated, gsm8k is simulated (20 replicates) and the log-probability of the trace's four scores under the
simulated class-conditional score distributions is computed (each value as the fp16 rounding interval it
stands for, widened to ±0.005; 0.99951171875 = fp16's "≥ 0.99927"). The best grid point is what
``SHAPE_DEFAULTS`` holds. One trace identifies little: the log-likelihood differs by < 0.5 nats over most of the
grid.

Then fits ``mu_s0`` / ``mu_s2`` per split with ``calibrate_synthetic_prm`` (20 replicates, seed 0 — the run whose
output is hard-coded in ``trim_pomdp/prm/synthetic.py``), then scores ProcessBench with the shipped defaults
over several fresh seeds and prints simulated vs published Qwen2.5-Math-PRM-7B accuracies, plus where the one
real Qwen2.5-Math-PRM-7B trace (gsm8k-0: 0.9995, 0.1813, 0.9746, 0.9995 for S0, S2, S1, S1) falls in the
simulated class-conditional score distributions. Writes JSON to ``benchmark-results/`` (or to ``--out``).
Scores are simulated.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import default_out, write_result  # benchmarks/ is on sys.path when a script runs

from trim_pomdp.datasets.processbench import SPLITS, load_processbench
from trim_pomdp.datasets.scored import processbench_metrics, step_table
from trim_pomdp.prm.synthetic import (
    CALIBRATED_MU_S0,
    CALIBRATED_MU_S2,
    QWEN25_MATH_PRM_7B_PROCESSBENCH,
    SHAPE_DEFAULTS,
    SyntheticPRM,
    calibrate_synthetic_prm,
)

REAL_TRACE = {
    "classes": ["S0", "S2", "S1", "S1"],
    "scores": [0.99951171875, 0.1812744140625, 0.974609375, 0.99951171875],
}


SHAPE_GRID = {"s0_sd": (1.5, 2.0, 2.5, 3.0, 3.5, 4.0), "s1_high": (0.4, 0.55, 0.7), "s1_shift": (-1.0, 0.0)}


def trace_log_likelihood(prm: SyntheticPRM, gsm8k_items, repeats: int = 20, seed: int = 1) -> float:
    """Log-probability of the real trace's four scores under ``prm``'s simulated class-conditional marginals."""
    table = step_table(prm.score_items(list(gsm8k_items) * repeats, seed=seed))
    total = 0.0
    for cls, v in zip(REAL_TRACE["classes"], REAL_TRACE["scores"], strict=True):
        z = {"S0": 0, "S1": 1, "S2": 2}[cls]
        half = float(np.spacing(np.float16(v))) / 2
        lo, hi = min(v - half, v - 0.005), (1.0 if v + half >= 0.9995 else max(v + half, v + 0.005))
        r = table.r[table.z == z]
        total += float(np.log(max(((r >= lo) & (r <= hi)).mean(), 1e-6)))
    return total


def search_shapes(items) -> list[tuple[float, dict]]:
    """Grid search of shape parameters against the real trace (see the module docstring); best first."""
    import itertools

    gsm = [it for it in items if it.split == "gsm8k"]
    target = {"gsm8k": QWEN25_MATH_PRM_7B_PROCESSBENCH["gsm8k"]}
    results = []
    for values in itertools.product(*SHAPE_GRID.values()):
        shape = dict(SHAPE_DEFAULTS, **dict(zip(SHAPE_GRID, values, strict=True)))
        m0, m2 = calibrate_synthetic_prm(gsm, target, repeats=10, seed=0, **shape)
        prm = SyntheticPRM(mu_s0=m0, mu_s2=m2, default_split="gsm8k", **shape)
        results.append((trace_log_likelihood(prm, gsm), shape))
    results.sort(key=lambda x: -x[0])
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-dir",
        default=None,
        help="folder with ProcessBench's <split>.json files (default: Qwen/ProcessBench from the hub)",
    )
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--check-seeds", type=int, default=10, help="fresh seeds for the check of the shipped defaults"
    )
    ap.add_argument(
        "--search-shapes", action="store_true", help="grid-search shapes against the real trace first"
    )
    ap.add_argument("--out", default=str(default_out(__file__)))
    args = ap.parse_args()

    items = load_processbench(SPLITS, data_dir=args.data_dir)
    shape = dict(SHAPE_DEFAULTS)
    search = None
    if args.search_shapes:
        search = search_shapes(items)
        print("shape search against the real trace (top 8 of", len(search), "):")
        for ll, sh in search[:8]:
            print(f"  loglik {ll:7.3f}  " + ", ".join(f"{k}={sh[k]}" for k in SHAPE_GRID))
        shape = search[0][1]
        if shape != SHAPE_DEFAULTS:
            print(
                f"NOTE: the search picked {shape}, which differs from the shipped SHAPE_DEFAULTS {SHAPE_DEFAULTS}"
            )
    t0 = time.perf_counter()
    mu_s0, mu_s2 = calibrate_synthetic_prm(items, repeats=args.repeats, seed=args.seed, **shape)
    fit_s = time.perf_counter() - t0

    print(f"calibration ({args.repeats} replicates, seed {args.seed}) took {fit_s:.1f} s; shapes {shape}")
    print(f"{'split':14s} {'mu_s0 fit':>10s} {'shipped':>8s} {'mu_s2 fit':>10s} {'shipped':>8s}")
    for s in SPLITS:
        print(
            f"{s:14s} {mu_s0[s]:10.4f} {CALIBRATED_MU_S0[s]:8.4f} {mu_s2[s]:10.4f} {CALIBRATED_MU_S2[s]:8.4f}"
        )

    prm = SyntheticPRM()
    gsm8k = [i for i in items if i.split == "gsm8k"]
    print(f"\ntrace log-likelihood of the shipped defaults: {trace_log_likelihood(prm, gsm8k):.3f}")
    rep = [it for _ in range(args.check_seeds) for it in items]
    scored = prm.score_items(rep, seed=12345)
    metrics = processbench_metrics(scored)
    print(
        f"\nshipped defaults over {args.check_seeds} replicates (fresh seed) vs Qwen2.5-Math-PRM-7B (published):"
    )
    print(f"{'split':14s} {'err sim':>8s} {'err pub':>8s} {'corr sim':>9s} {'corr pub':>9s} {'F1 sim':>7s}")
    for s in SPLITS:
        e, c = QWEN25_MATH_PRM_7B_PROCESSBENCH[s]
        m = metrics[s]
        print(f"{s:14s} {m['error']:8.1f} {e:8.1f} {m['correct']:9.1f} {c:9.1f} {m['f1']:7.1f}")

    table = step_table(scored)
    pct = {}
    print("\nreal trace gsm8k-0 vs simulated class-conditional scores (all splits):")
    for cls, r in zip(REAL_TRACE["classes"], REAL_TRACE["scores"], strict=True):
        z = {"S0": 0, "S1": 1, "S2": 2}[cls]
        sim = table.r[table.z == z]
        q = float((sim <= r).mean())
        pct.setdefault(cls, []).append(q)
        print(
            f"  {cls}: real {r:.4f} is at simulated percentile {100 * q:5.1f} (median {np.median(sim):.4f})"
        )
    high = {c: float((table.r[table.z == z] >= 0.5).mean()) for c, z in (("S0", 0), ("S1", 1), ("S2", 2))}
    print(f"  share of steps scoring >= 0.5: {high}")

    out = {
        "simulated": True,
        "fit_seconds": fit_s,
        "repeats": args.repeats,
        "seed": args.seed,
        "shape": shape,
        "shipped_shape": SHAPE_DEFAULTS,
        "shape_search": None if search is None else [{"loglik": ll, **sh} for ll, sh in search],
        "fitted": {"mu_s0": mu_s0, "mu_s2": mu_s2},
        "shipped": {"mu_s0": CALIBRATED_MU_S0, "mu_s2": CALIBRATED_MU_S2},
        "check": {s: {k: metrics[s][k] for k in ("error", "correct", "f1")} for s in SPLITS},
        "targets": {s: list(v) for s, v in QWEN25_MATH_PRM_7B_PROCESSBENCH.items()},
        "real_trace_percentiles": pct,
        "share_ge_0_5": high,
    }
    write_result(Path(args.out), out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
