"""Re-derive the calibrated per-split means of the synthetic PRM and check them.

Usage::

    python benchmarks/calibrate_synthetic_prm.py --data-dir ../shared/data/processbench [--out FILE]

Fits ``mu_s0`` / ``mu_s2`` per split with :func:`calibrate_synthetic_prm` (20 replicates, seed 0 — the run whose
output is hard-coded in ``trim_pomdp/observation_models/synthetic_prm.py``), then scores ProcessBench with the shipped
defaults over several fresh seeds and prints simulated vs published Qwen2.5-Math-PRM-7B accuracies, plus where the
one real Qwen2.5-Math-PRM-7B trace (gsm8k-0: 0.9995, 0.1813, 0.9746, 0.9995 for S0, S2, S1, S1) falls in the simulated
class-conditional score distributions. Writes JSON next to this file (or to --out). Scores are simulated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from trim_pomdp.observation_models.processbench import SPLITS, load_processbench, processbench_metrics, step_table
from trim_pomdp.observation_models.synthetic_prm import (
    CALIBRATED_MU_S0,
    CALIBRATED_MU_S2,
    QWEN25_MATH_PRM_7B_PROCESSBENCH,
    SHAPE_DEFAULTS,
    SyntheticPRM,
    calibrate_synthetic_prm,
)

REAL_TRACE = {"classes": ["S0", "S2", "S1", "S1"], "scores": [0.99951171875, 0.1812744140625, 0.974609375, 0.99951171875]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = Path(__file__).resolve().parents[2] / "shared" / "data" / "processbench"
    ap.add_argument("--data-dir", default=str(default_dir) if default_dir.is_dir() else None,
                    help="folder with <split>.json (default ../shared/data/processbench; else the HF hub)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-seeds", type=int, default=10, help="fresh seeds for the check of the shipped defaults")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()

    items = load_processbench(SPLITS, data_dir=args.data_dir)
    t0 = time.perf_counter()
    mu_s0, mu_s2 = calibrate_synthetic_prm(items, repeats=args.repeats, seed=args.seed)
    fit_s = time.perf_counter() - t0

    print(f"calibration ({args.repeats} replicates, seed {args.seed}) took {fit_s:.1f} s; shapes {SHAPE_DEFAULTS}")
    print(f"{'split':14s} {'mu_s0 fit':>10s} {'shipped':>8s} {'mu_s2 fit':>10s} {'shipped':>8s}")
    for s in SPLITS:
        print(f"{s:14s} {mu_s0[s]:10.4f} {CALIBRATED_MU_S0[s]:8.4f} {mu_s2[s]:10.4f} {CALIBRATED_MU_S2[s]:8.4f}")

    prm = SyntheticPRM()
    rep = [it for _ in range(args.check_seeds) for it in items]
    scored = prm.score_items(rep, seed=12345)
    metrics = processbench_metrics(scored)
    print(f"\nshipped defaults over {args.check_seeds} replicates (fresh seed) vs Qwen2.5-Math-PRM-7B (published):")
    print(f"{'split':14s} {'err sim':>8s} {'err pub':>8s} {'corr sim':>9s} {'corr pub':>9s} {'F1 sim':>7s}")
    for s in SPLITS:
        e, c = QWEN25_MATH_PRM_7B_PROCESSBENCH[s]
        m = metrics[s]
        print(f"{s:14s} {m['error']:8.1f} {e:8.1f} {m['correct']:9.1f} {c:9.1f} {m['f1']:7.1f}")

    table = step_table(scored)
    pct = {}
    print("\nreal trace gsm8k-0 vs simulated class-conditional scores (all splits):")
    for cls, r in zip(REAL_TRACE["classes"], REAL_TRACE["scores"]):
        z = {"S0": 0, "S1": 1, "S2": 2}[cls]
        sim = table.r[table.z == z]
        q = float((sim <= r).mean())
        pct.setdefault(cls, []).append(q)
        print(f"  {cls}: real {r:.4f} is at simulated percentile {100 * q:5.1f} (median {np.median(sim):.4f})")
    high = {c: float((table.r[table.z == z] >= 0.5).mean()) for c, z in (("S0", 0), ("S1", 1), ("S2", 2))}
    print(f"  share of steps scoring >= 0.5: {high}")

    out = {
        "simulated": True,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "fit_seconds": fit_s,
        "repeats": args.repeats,
        "seed": args.seed,
        "shape": SHAPE_DEFAULTS,
        "fitted": {"mu_s0": mu_s0, "mu_s2": mu_s2},
        "shipped": {"mu_s0": CALIBRATED_MU_S0, "mu_s2": CALIBRATED_MU_S2},
        "check": {s: {k: metrics[s][k] for k in ("error", "correct", "f1")} for s in SPLITS},
        "targets": {s: list(v) for s, v in QWEN25_MATH_PRM_7B_PROCESSBENCH.items()},
        "real_trace_percentiles": pct,
        "share_ge_0_5": high,
    }
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
