"""Benchmark of the reflected KDE and the observation model against scipy's unreflected gaussian_kde.

Measures:

1. exact box mass of every fitted density (target: within 1e-6 of 1) and an independent midpoint quadrature;
2. uniform data on [0, 1]^2: density at the corners, edge midpoints and centre (target: within 5 % of 1),
   beside scipy's unreflected ``gaussian_kde`` at the same bandwidth;
3. fit + 20 x 20 discretisation on all ProcessBench steps (target <= 5 s), ``score_samples`` on 10^5 points
   against 3 * 10^4 training points (target <= 1 s), peak memory (target <= 1 GiB) — each beside
   ``gaussian_kde`` on the same data and bandwidth in the same run;
4. 5-fold (by item) held-out log-likelihood per class: reflected vs unreflected;
5. held-out class posteriors (binned, as the solver sees them): (r, m) vs r-only, Scott vs Silverman
   bandwidths;
6. accuracy of the grid evaluation against the exact sum.

PRM scores are simulated by ``SyntheticPRM`` (no real PRM scores are available offline); the ProcessBench
labels, step counts and item structure are real. Timings are medians over ``--repeats`` runs.

Usage::

    python benchmarks/observation_models.py [--data-dir PROCESSBENCH_DIR] [--out FILE] [--quick]

``PROCESSBENCH_DIR`` is a folder with ProcessBench's ``<split>.json`` files; without it the splits are loaded
from the Hugging Face hub.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from _common import default_out, write_result
from scipy import stats
from sklearn.model_selection import GroupKFold

from trim_pomdp.datasets.processbench import load_processbench
from trim_pomdp.datasets.scored import step_table
from trim_pomdp.observation_models.kde import ReflectedKDE
from trim_pomdp.observation_models.observation import ObservationModel
from trim_pomdp.prm.synthetic import SyntheticPRM

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLASSES = ("S0", "S1", "S2")


class DiagGaussianKDE(stats.gaussian_kde):
    """scipy's unreflected gaussian_kde with a given per-dimension kernel std instead of its own rule."""

    def __init__(self, X: np.ndarray, h: np.ndarray):
        self._h = np.atleast_1d(np.asarray(h, dtype=float))
        X = np.asarray(X, dtype=float)
        super().__init__(X.T if X.ndim == 2 else X)

    def _compute_covariance(self) -> None:
        self.factor = 1.0
        self.covariance = np.diag(self._h**2)
        self.cho_cov = np.diag(self._h)
        self.log_det = 2 * np.log(self._h * np.sqrt(2 * np.pi)).sum()


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _peak_mib(fn) -> tuple[float, object]:
    tracemalloc.start()
    try:
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20, out


def _table(data_dir: str | None, seed: int):
    items = load_processbench(data_dir=data_dir)
    return items, step_table(SyntheticPRM().score_items(items, seed=seed))


def bench_masses(model: ObservationModel) -> dict:
    errs = {}
    for kind, kdes in (("pair", model.pair_kdes), ("first", model.first_kdes)):
        for name, kde in zip(CLASSES, kdes, strict=True):
            d = kde.n_features_in_
            exact = kde.box_mass(np.zeros(d), np.ones(d))
            k = 1000 if d == 2 else 100000  # midpoint rule on the density as users evaluate it
            c = (np.arange(k) + 0.5) / k
            G = np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2) if d == 2 else c[:, None]
            quad = float(kde.pdf(G).mean())
            errs[f"{kind}_{name}"] = {"exact_minus_1": exact - 1.0, "midpoint_quadrature_minus_1": quad - 1.0}
    rows = np.abs(model.pair_probs.sum(axis=(1, 2)) - 1).max()
    errs["max_bin_row_sum_error"] = float(max(rows, np.abs(model.first_probs.sum(axis=1) - 1).max()))
    return errs


def bench_uniform(n: int, seeds: int) -> dict:
    pts = {
        "corner (0,0)": (0, 0),
        "corner (1,1)": (1, 1),
        "corner (0,1)": (0, 1),
        "edge (0.5,0)": (0.5, 0),
        "edge (1,0.5)": (1, 0.5),
        "centre": (0.5, 0.5),
    }
    P = np.array(list(pts.values()), dtype=float)
    sobol = stats.qmc.Sobol(2, seed=0).random(2 ** int(np.ceil(np.log2(n))))
    k = ReflectedKDE().fit(sobol)
    out = {
        "n_sobol": int(sobol.shape[0]),
        "bandwidth_sobol": k.bandwidth_.tolist(),
        "sobol_reflected": dict(zip(pts, k.pdf(P).tolist(), strict=True)),
        "sobol_unreflected": dict(zip(pts, DiagGaussianKDE(sobol, k.bandwidth_)(P.T).tolist(), strict=True)),
    }
    refl, plain = [], []
    for s in range(seeds):
        U = np.random.default_rng(s).random((n, 2))
        kk = ReflectedKDE().fit(U)
        refl.append(kk.pdf(P))
        plain.append(DiagGaussianKDE(U, kk.bandwidth_)(P.T))
    refl, plain = np.array(refl), np.array(plain)
    out.update(
        n_iid=n,
        iid_seeds=seeds,
        iid_reflected_mean=dict(zip(pts, refl.mean(0).tolist(), strict=True)),
        iid_reflected_sd=dict(zip(pts, refl.std(0, ddof=1).tolist(), strict=True)),
        iid_unreflected_mean=dict(zip(pts, plain.mean(0).tolist(), strict=True)),
    )
    out["max_abs_error_sobol"] = float(np.abs(k.pdf(P) - 1).max())
    out["max_abs_error_iid_mean"] = float(np.abs(refl.mean(0) - 1).max())
    return out


def bench_speed(table, repeats: int, n_queries: int, n_train: int, baseline_bins: int) -> dict:
    res: dict = {}
    # fit + 20 x 20 discretisation of all three classes (plus the t = 1 densities)
    res["fit_discretise_s"], model = _median_time(lambda: ObservationModel.fit(table, n_bins=20), repeats)
    res["fit_discretise_peak_mib"], _ = _peak_mib(lambda: ObservationModel.fit(table, n_bins=20))
    # baseline: gaussian_kde at the same bandwidths, bins by its integrate_box (timed on a sample of bins)
    edges = np.linspace(0, 1, 21)
    later = table.t >= 2
    t_fit = time.perf_counter()
    base = [
        DiagGaussianKDE(
            np.column_stack([table.r[later & (table.z == c)], table.m[later & (table.z == c)]]),
            model.pair_kdes[c].bandwidth_,
        )
        for c in range(3)
    ]
    t_fit = time.perf_counter() - t_fit
    rng = np.random.default_rng(0)
    picks = [
        (int(rng.integers(3)), int(rng.integers(20)), int(rng.integers(20))) for _ in range(baseline_bins)
    ]
    t0 = time.perf_counter()
    for c, i, j in picks:
        base[c].integrate_box([edges[i], edges[j]], [edges[i + 1], edges[j + 1]], rng=rng)
    per_bin = (time.perf_counter() - t0) / baseline_bins
    res["gaussian_kde_fit_discretise_s_extrapolated"] = t_fit + per_bin * 3 * 400
    res["gaussian_kde_bins_timed"] = baseline_bins
    res["fit_discretise_speedup"] = (
        res["gaussian_kde_fit_discretise_s_extrapolated"] / res["fit_discretise_s"]
    )

    # score_samples: n_queries points against n_train training points (pooled t >= 2 steps of two score draws)
    X = np.column_stack([table.r[later], table.m[later]])
    if X.shape[0] < n_train:
        X = np.vstack([X, X + np.random.default_rng(1).normal(0, 1e-3, X.shape)]).clip(0, 1)
    X = X[np.random.default_rng(2).choice(X.shape[0], n_train, replace=False)]
    Q = np.random.default_rng(3).random((n_queries, 2))
    res["score_n_train"], res["score_n_queries"] = int(n_train), int(n_queries)
    res["score_samples_cold_s"], _ = _median_time(lambda: ReflectedKDE().fit(X).score_samples(Q), repeats)
    kde = ReflectedKDE().fit(X)
    kde.score_samples(Q[:10])
    res["score_samples_warm_s"], _ = _median_time(lambda: kde.score_samples(Q), repeats)
    res["score_samples_peak_mib"], _ = _peak_mib(lambda: ReflectedKDE().fit(X).score_samples(Q))
    gk = DiagGaussianKDE(X, kde.bandwidth_)
    t0 = time.perf_counter()
    res["gaussian_kde_score_peak_mib"], _ = _peak_mib(lambda: gk.logpdf(Q.T))
    res["gaussian_kde_score_s"] = time.perf_counter() - t0
    res["score_speedup_cold"] = res["gaussian_kde_score_s"] / res["score_samples_cold_s"]
    # exact evaluation (chunked) for scale, on a subset
    sub = Q[: max(1, n_queries // 20)]
    exact = ReflectedKDE(method="exact", bandwidth=kde.bandwidth_.tolist()).fit(X)
    t0 = time.perf_counter()
    le = exact.score_samples(sub)
    res["exact_score_s_extrapolated"] = (time.perf_counter() - t0) * n_queries / sub.shape[0]
    lg = ReflectedKDE(method="grid", bandwidth=kde.bandwidth_.tolist()).fit(X).score_samples(sub)
    ok = le > -20
    res["grid_vs_exact_max_abs_logpdf_error"] = float(np.max(np.abs(le[ok] - lg[ok])))
    res["grid_vs_exact_median_abs_logpdf_error"] = float(np.median(np.abs(le[ok] - lg[ok])))
    return res


def _sub(table, mask):
    return SimpleNamespace(
        r=table.r[mask], m=table.m[mask], z=table.z[mask], t=table.t[mask], item_index=table.item_index[mask]
    )


def bench_held_out(table, folds: int = 5, seed: int = 0) -> dict:
    items = np.unique(table.item_index)
    fold_of = np.random.default_rng(seed).permutation(items.size) % folds
    fold = fold_of[np.searchsorted(items, table.item_index)]
    out: dict = {"density_loglik": {}, "class_posterior": {}}
    later = table.t >= 2
    for c, name in enumerate(CLASSES):
        mask = later & (table.z == c)
        X = np.column_stack([table.r[mask], table.m[mask]])
        g = fold[mask]
        refl, plain = [], []
        for train, test in GroupKFold(folds).split(X, groups=g):
            k = ReflectedKDE().fit(X[train])
            refl.append(k.score_samples(X[test]))
            plain.append(DiagGaussianKDE(X[train], k.bandwidth_).logpdf(X[test].T))
        out["density_loglik"][name] = {
            "reflected": float(np.concatenate(refl).mean()),
            "unreflected_gaussian_kde": float(np.concatenate(plain).mean()),
        }
    for label, kw in (
        ("(r, m) scott", {}),
        ("r only scott", {"r_only": True}),
        ("(r, m) silverman", {"bandwidth": "silverman"}),
        ("r only silverman", {"r_only": True, "bandwidth": "silverman"}),
    ):
        ce, acc, ce_s2 = [], [], []
        for f in range(folds):
            tr = _sub(table, fold != f)
            te = _sub(table, (fold == f) & later)
            om = ObservationModel.fit(tr, **kw)
            prior = np.bincount(tr.z[tr.t >= 2], minlength=3) / np.sum(tr.t >= 2)
            L = om.bin_probs(first=False)[:, om.observation_index_batch(te.r, te.m)] * prior[:, None]
            P = L / L.sum(axis=0)
            p_true = P[te.z, np.arange(te.z.size)]
            ce.append(-np.log(np.maximum(p_true, 1e-300)))
            acc.append(P.argmax(axis=0) == te.z)
            ce_s2.append(-np.log(np.maximum(P[2][te.z == 2], 1e-300)))
        out["class_posterior"][label] = {
            "cross_entropy_nats": float(np.concatenate(ce).mean()),
            "accuracy": float(np.concatenate(acc).mean()),
            "cross_entropy_on_S2_steps": float(np.concatenate(ce_s2).mean()),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data-dir",
        default=None,
        help="folder with ProcessBench's <split>.json files (default, or 'hub': Qwen/ProcessBench from the hub)",
    )
    ap.add_argument("--out", default=str(default_out(__file__)))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--quick", action="store_true", help="smaller sizes (a smoke run, not the reported numbers)"
    )
    args = ap.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    data_dir = None if args.data_dir == "hub" else args.data_dir
    items, table = _table(data_dir, seed=0)
    model = ObservationModel.fit(table, n_bins=20)
    result: dict = {
        "data": {
            "items": len(items),
            "steps": len(table),
            "counts": model.card["counts"],
            "scores": "SyntheticPRM (simulated), seed 0",
        },
    }
    n_q, n_t = (10_000, 5_000) if args.quick else (100_000, 30_000)
    result["speed"] = bench_speed(
        table, 1 if args.quick else args.repeats, n_q, n_t, 10 if args.quick else 40
    )
    result["masses"] = bench_masses(model)
    result["uniform"] = bench_uniform(2_000 if args.quick else 100_000, 3 if args.quick else 10)
    result["held_out"] = bench_held_out(table)
    import resource

    result["process_max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_result(Path(args.out), result)

    s, u, h = result["speed"], result["uniform"], result["held_out"]
    worst_mass = max(abs(v["exact_minus_1"]) for k, v in result["masses"].items() if isinstance(v, dict))
    worst_quad = max(
        abs(v["midpoint_quadrature_minus_1"]) for k, v in result["masses"].items() if isinstance(v, dict)
    )
    t = Table(title=f"observation models benchmark ({os.cpu_count()} CPUs, {platform.machine()})")
    for col in ("measure", "reflected KDE", "gaussian_kde (same data, bandwidth)", "target", "met"):
        t.add_column(col)
    rows = [
        (
            "box mass |exact − 1|, worst of 6 densities",
            f"{worst_mass:.1e}",
            "leaks mass",
            "≤ 1e-6",
            worst_mass <= 1e-6,
        ),
        ("box mass |midpoint quadrature − 1|", f"{worst_quad:.1e}", "", "≤ 1e-3", worst_quad <= 1e-3),
        (
            "uniform: max |f − 1| at corners/edges (Sobol)",
            f"{u['max_abs_error_sobol']:.3f}",
            f"corner {u['sobol_unreflected']['corner (0,0)']:.2f}, "
            f"edge {u['sobol_unreflected']['edge (0.5,0)']:.2f}",
            "≤ 0.05",
            u["max_abs_error_sobol"] <= 0.05,
        ),
        (
            f"uniform iid n={u['n_iid']}: max |mean f − 1| ({u['iid_seeds']} seeds)",
            f"{u['max_abs_error_iid_mean']:.3f}",
            f"corner {u['iid_unreflected_mean']['corner (0,0)']:.2f}",
            "≤ 0.05",
            u["max_abs_error_iid_mean"] <= 0.05,
        ),
        (
            "fit + 20×20 bins, all steps (s)",
            f"{s['fit_discretise_s']:.2f}",
            f"{s['gaussian_kde_fit_discretise_s_extrapolated']:.0f} "
            f"(×{s['fit_discretise_speedup']:.0f}, extrapolated)",
            "≤ 5",
            s["fit_discretise_s"] <= 5,
        ),
        (
            f"score_samples {s['score_n_queries']:.0e} × {s['score_n_train']:.0e} (s, incl. grid)",
            f"{s['score_samples_cold_s']:.2f} (warm {s['score_samples_warm_s']:.3f})",
            f"{s['gaussian_kde_score_s']:.1f} (×{s['score_speedup_cold']:.0f})",
            "≤ 1",
            s["score_samples_cold_s"] <= 1,
        ),
        (
            "peak memory of score_samples (MiB, tracemalloc)",
            f"{s['score_samples_peak_mib']:.0f}",
            f"{s['gaussian_kde_score_peak_mib']:.0f} (C buffers not traced)",
            "≤ 1024",
            s["score_samples_peak_mib"] <= 1024,
        ),
        (
            "max RSS of the whole benchmark process (MiB)",
            f"{result['process_max_rss_mib']:.0f}",
            "",
            "≤ 1024",
            result["process_max_rss_mib"] <= 1024,
        ),
        (
            "grid vs exact |Δ log f| max (log f > −20)",
            f"{s['grid_vs_exact_max_abs_logpdf_error']:.1e}",
            "",
            "",
            True,
        ),
    ]
    for name, v in h["density_loglik"].items():
        rows.append(
            (
                f"held-out loglik {name} (nats/step, 5-fold by item)",
                f"{v['reflected']:.3f}",
                f"{v['unreflected_gaussian_kde']:.3f}",
                "reflected better",
                v["reflected"] > v["unreflected_gaussian_kde"],
            )
        )
    for col in rows:
        t.add_row(*[str(x) for x in col[:4]], "yes" if col[4] else "NO")
    Console().print(t)
    t2 = Table(title="held-out class posterior from the 20×20 bins (5-fold by item, t ≥ 2)")
    for col in ("model", "cross-entropy (nats)", "accuracy", "cross-entropy on S2 steps"):
        t2.add_column(col)
    for name, v in h["class_posterior"].items():
        t2.add_row(
            name,
            f"{v['cross_entropy_nats']:.4f}",
            f"{v['accuracy']:.4f}",
            f"{v['cross_entropy_on_S2_steps']:.4f}",
        )
    Console().print(t2)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
