"""Which bin edges the default observation model should have: held-out likelihood and decision value per scheme.

The same class densities (reflected KDEs of (r, m) on the score scale, Scott bandwidths, the shipped model's
settings) are discretised with each bin scheme of :mod:`trim_pomdp.observation_models.binning` (uniform, logit,
quantile) and 20, 30 and 50 bins per axis, and each version is measured by

1. **held-out log-likelihood** of the binned ``t >= 2`` density (bin probability over bin area on the scores,
   :func:`~trim_pomdp.observation_models.fitting.held_out_binned_log_likelihood`), 5 folds by item on the fitting
   data, per class and pooled over steps; and on ProcessBench's ``math`` split, which no fit sees;
2. **decision value** on the default simulator (``trim-pomdp evaluate --routers pomdp,thr``: 2,000 simulated
   ``math`` queries, the default λ grid, which starts at λ = 0): the POMDP's top accuracy, ΔIBC and CPT(95%),
   with TRIM-Thr's best accuracy and ΔIBC from the same run beside it, on three query sets (medians reported);
3. **cost**: the wall time of that sweep (18 POMDP solves plus the threshold sweep), which grows with the n²
   observations.

Rows with ``density_scale: "logit"`` (``--logit-scale-n-bins``) fit the densities on the logit scale of the scores
instead, a different density: they show whether information lost near 1 is lost in the bins or in the kernel.

The data are those of the shipped ``synthetic-processbench`` model: ProcessBench's human step labels on the
``gsm8k``, ``olympiadbench`` and ``omnimath`` splits (``math`` left out: its problems are MATH test problems
and overlap MATH-500) with SIMULATED PRM scores (``SyntheticPRM``, seed 0). Every routing figure is simulated.

Usage::

    python benchmarks/bins.py [--data-dir PROCESSBENCH_DIR] [--n-bins 20 30 50] [--out FILE]

Writes ``benchmark-results/bins.json`` (the documented copy is ``docs/benchmarks/results/bins.json``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import default_out, write_result

from trim_pomdp.constants import HIDDEN_CLASSES
from trim_pomdp.datasets.processbench import load_processbench
from trim_pomdp.datasets.scored import step_table
from trim_pomdp.evaluation.runner import evaluate_simulated
from trim_pomdp.evaluation.simulator import load_default_simulator_params
from trim_pomdp.evaluation.sweep import SweepSettings
from trim_pomdp.observation_models.binning import BIN_SCHEMES
from trim_pomdp.observation_models.fitting import held_out_binned_log_likelihood
from trim_pomdp.observation_models.observation import ObservationModel
from trim_pomdp.observation_models.tables import table_arrays
from trim_pomdp.prm.synthetic import SyntheticPRM

FIT_SPLITS = ("gsm8k", "olympiadbench", "omnimath")
HELD_OUT_SPLIT = "math"


def binned_log_likelihood(model: ObservationModel, table: Any) -> dict[str, float]:
    """Mean log binned density per ``t >= 2`` step of each class (and pooled) of ``table`` under ``model``."""
    tab = table_arrays(table)
    later = tab.t >= 2
    r, m, z = tab.r[later], tab.m[later], tab.z[later]
    n = model.n_bins
    ir = np.clip(np.searchsorted(model.r_edges, r, side="right") - 1, 0, n - 1)
    im = np.clip(np.searchsorted(model.m_edges, m, side="right") - 1, 0, n - 1)
    area = np.diff(model.r_edges)[ir] * np.diff(model.m_edges)[im]
    logp = np.log(np.maximum(model.pair_probs[z, ir, im] / area, 1e-300))
    out = {name: float(logp[z == c].mean()) for c, name in enumerate(HIDDEN_CLASSES)}
    out["pooled"] = float(logp.mean())
    return out


def pooled(per_class: dict[str, float], counts: dict[str, int]) -> float:
    """Step-weighted mean of per-class values."""
    total = sum(counts.values())
    return float(sum(per_class[k] * counts[k] for k in counts) / total)


def decision_value(model: ObservationModel, n_queries: int, seed: int) -> dict[str, Any]:
    """POMDP and TRIM-Thr on the default simulator's ``math`` queries, as ``trim-pomdp evaluate`` runs them."""
    settings = SweepSettings(routers=("pomdp", "thr"), n_queries=n_queries, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        _, _, summary = evaluate_simulated(
            tmp, settings, load_default_simulator_params("math"), obs_model_loader=lambda: model
        )
        wall = time.perf_counter() - t0
    out: dict[str, Any] = {"query_seed": seed, "sweep_wall_s": wall}
    for name in ("pomdp", "thr"):
        pol = summary["policies"][name]
        best = max(pol["points"], key=lambda p: p["accuracy"])
        cpt95 = pol["cpt"].get("95")
        out[name] = {
            "top_accuracy": best["accuracy"],
            "top_accuracy_knob": best["knob"],
            "delta_ibc": pol["delta_ibc"],
            "cpt95_fraction": None if cpt95 is None else cpt95["fraction"],
        }
    out["weak_accuracy"], out["strong_accuracy"] = summary["weak"]["accuracy"], summary["strong"]["accuracy"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-dir", type=Path, default=None, help="folder with ProcessBench's <split>.json files"
    )
    ap.add_argument("--n-bins", type=int, nargs="+", default=[20, 30, 50])
    ap.add_argument(
        "--logit-scale-n-bins",
        type=int,
        nargs="*",
        default=[20],
        help="also fit the densities on the logit scale with these bin counts (a different density)",
    )
    ap.add_argument("--schemes", nargs="+", default=list(BIN_SCHEMES), choices=BIN_SCHEMES)
    ap.add_argument("--n-queries", type=int, default=2000)
    ap.add_argument("--query-seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the query sets")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic PRM and the CV folds")
    ap.add_argument("--out", type=Path, default=default_out(__file__))
    args = ap.parse_args()

    prm = SyntheticPRM()
    fit_items = load_processbench(FIT_SPLITS, data_dir=args.data_dir)
    table = step_table(prm.score_items(fit_items, seed=args.seed))
    held_items = load_processbench([HELD_OUT_SPLIT], data_dir=args.data_dir)
    held_table = step_table(prm.score_items(held_items, seed=args.seed))
    tab = table_arrays(table)
    counts = {name: int(np.sum((tab.t >= 2) & (tab.z == c))) for c, name in enumerate(HIDDEN_CLASSES)}

    configs = [("score", scheme, n) for scheme in args.schemes for n in args.n_bins]
    configs += [("logit", scheme, n) for scheme in args.schemes for n in args.logit_scale_n_bins]
    rows = []
    for scale, scheme, n in configs:
        fit = {"n_bins": n, "bins": scheme, "density_scale": scale}
        t0 = time.perf_counter()
        model = ObservationModel.fit(table, random_state=args.seed, **fit)
        fit_s = time.perf_counter() - t0
        cv = held_out_binned_log_likelihood(table, n_folds=5, seed=args.seed, **fit)
        cv["pooled"] = pooled(cv, counts)
        row = {
            "density_scale": scale,
            "scheme": scheme,
            "n_bins": n,
            "fit_s": fit_s,
            "cv_loglik_nats_per_step": cv,
            "math_split_loglik_nats_per_step": binned_log_likelihood(model, held_table),
        }
        runs = [decision_value(model, args.n_queries, s) for s in args.query_seeds]
        row["decision_runs"] = runs
        row["median"] = {
            name: {k: float(np.median([r[name][k] for r in runs])) for k in ("top_accuracy", "delta_ibc")}
            for name in ("pomdp", "thr")
        }
        row["median"]["pomdp_minus_thr_top_accuracy"] = float(
            np.median([r["pomdp"]["top_accuracy"] - r["thr"]["top_accuracy"] for r in runs])
        )
        row["median_sweep_wall_s"] = float(np.median([r["sweep_wall_s"] for r in runs]))
        rows.append(row)
        p, t = row["median"]["pomdp"], row["median"]["thr"]
        print(
            f"{scale:>5} {scheme:>8} {n:>3}: CV loglik {cv['pooled']:.4f}, math split "
            f"{row['math_split_loglik_nats_per_step']['pooled']:.4f} | POMDP top acc {p['top_accuracy']:.4f} "
            f"ΔIBC {p['delta_ibc']:.2f} | Thr top acc {t['top_accuracy']:.4f} ΔIBC {t['delta_ibc']:.2f} | "
            f"sweep {row['median_sweep_wall_s']:.1f} s (medians over {len(runs)} query sets)",
            flush=True,
        )
    result = {
        "benchmark": "bins",
        "simulated": "PRM scores (SyntheticPRM) and every routing figure are simulated; step labels are real",
        "fit_splits": list(FIT_SPLITS),
        "held_out_split": HELD_OUT_SPLIT,
        "density": "reflected KDE, Scott bandwidths; density_scale 'score' is the shipped model's, 'logit' a check",
        "t_ge_2_steps_per_class": counts,
        "n_queries": args.n_queries,
        "query_seeds": args.query_seeds,
        "seed": args.seed,
        "rows": rows,
    }
    print(f"wrote {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
