"""Outcome supervision (EM over the hidden first-error step): speed, recovery, and real-data cross-validation.

Three measurements (issue 13):

1. **Speed at ProcessBench scale**: all 3,400 ProcessBench solutions (25,697 steps), scores simulated by the
   default ``SyntheticPRM`` (seed 0), final answers from ProcessBench: EM with the CLI's defaults (3 restarts),
   total seconds, iterations and seconds per iteration, converged or not. The goal is <= 60 s on 2 cores.
2. **Recovery** as the number of solutions grows (200 -> 10,000), true classes hidden from the fit:
   (a) the model's own process (the chain S0 -> S2 -> S1 with p_w = 0.9, rho = 0.15 and known r-only
   emissions): errors of p_w, rho and the total-variation distance of each class's r-bin probabilities;
   (b) the evaluation simulator (``Simulator``, default ``math`` statistics and PRM; not the POMDP): the truth
   is the simulator's own pooled S0 / (S0 + S2) and its per-class r histograms on 20,000 solutions on the same
   bins. Medians over ``--repeats`` seeds.
3. **Real data, cross-validated by question** on ``qwen-prm7b_math500-qwen1.5b_dev.jsonl`` (``../shared/data``):
   5 folds grouped by MATH-500 question; EM fitted on 4 folds (logit bins and logit density scale, r only), the
   belief's P(right answer) on the held-out fold scored as ``trim-pomdp evaluate-observations`` does, beside
   min / last / product of the scores and every shipped (step-supervised) model, for every fold and pooled over
   the held-out predictions. Goal: AUROC >= best of min/last/product and ECE <= 0.03 on held-out questions.

Usage::

    python benchmarks/em.py [--data-dir DIR] [--repeats 3] [--sizes 200 1000 3000 10000] [--out FILE]

``DIR`` holds ``processbench/`` and ``prm-real/`` (default ``../shared/data``). Scores in 1 and 2 are simulated.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
from _common import REPO, default_out, write_result
from sklearn.model_selection import GroupKFold

from trim_pomdp.datasets.processbench import load_processbench
from trim_pomdp.datasets.scored import load_scored_items
from trim_pomdp.evaluation.simulator import Simulator, load_default_simulator_params
from trim_pomdp.observation_models.chain import Trajectories
from trim_pomdp.observation_models.evaluate import PREDICTORS, evaluate_observations, outcome_metrics
from trim_pomdp.observation_models.outcome_em import fit_outcome_em
from trim_pomdp.observation_models.shipped import SHIPPED_OBSERVATION_MODELS, load_named_observation_model
from trim_pomdp.pomdp.defaults import load_default_params
from trim_pomdp.prm.synthetic import SyntheticPRM

QWEN = "qwen-prm7b_math500-qwen1.5b_dev.jsonl"
#: EM settings of the real-data and simulator runs (scores pile up near 1: logit bins and density scale).
REAL_SETTINGS = {"bins": "logit", "density_scale": "logit", "r_only": True}
#: r-only emissions of the model's own process (S0 high, S1 middling, S2 low), 8 uniform bins.
OWN_TRUE = np.array(
    [
        [0.01, 0.01, 0.02, 0.03, 0.05, 0.10, 0.28, 0.50],
        [0.10, 0.12, 0.14, 0.14, 0.14, 0.14, 0.12, 0.10],
        [0.35, 0.25, 0.15, 0.10, 0.06, 0.04, 0.03, 0.02],
    ]
)


def _fit(traj: Trajectories, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit_outcome_em(traj, **kw)
    return res, [str(w.message) for w in caught]


def _r_probs(model) -> np.ndarray:
    """P(r-bin | class) for t >= 2 (the pair table summed over m)."""
    return model.pair_probs.sum(axis=2)


# ------------------------------------------------------------------------------------------------ 1. speed


def speed(data_dir: Path) -> dict:
    items = SyntheticPRM().score_items(load_processbench(data_dir=data_dir / "processbench"), seed=0)
    traj = Trajectories.from_scored(items)
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    res, warns = _fit(traj, restarts=3, time_limit=600.0, seed=0)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    its = sum(r["iterations"] for r in res.restarts)
    return {
        "solutions": len(traj),
        "steps": int(traj.lengths.sum()),
        "settings": "fit_outcome_em defaults (uniform 20 bins, r only, 3 restarts, tol 1e-6), time limit lifted",
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load_average_before": load,
        "iterations": its,
        "seconds_per_iteration": seconds / its if its else None,
        "converged": res.converged,
        "restarts": res.restarts,
        "within_60_s": seconds <= 60.0,
        "warnings": warns,
        "p_w": res.p_w,
        "rho": res.rho,
    }


# --------------------------------------------------------------------------------------------- 2. recovery


def _own_process(n: int, seed: int, p_w: float = 0.9, rho: float = 0.15) -> Trajectories:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 10, n)
    H = int(lengths.max())
    r = np.full((n, H), np.nan)
    outcome = np.ones(n)
    edges = np.linspace(0, 1, OWN_TRUE.shape[1] + 1)
    cum = OWN_TRUE.cumsum(axis=1)
    for i, T in enumerate(lengths):
        ok = rng.random(T) < p_w
        k = int(np.argmin(ok)) if not ok.all() else -1
        z = np.zeros(T, dtype=int)
        if k >= 0:
            z[k], z[k + 1 :] = 2, 1
            outcome[i] = float(rng.random() < rho)
        b = np.minimum((rng.random(T)[:, None] > cum[z]).sum(axis=1), OWN_TRUE.shape[1] - 1)
        r[i, :T] = edges[b] + rng.random(T) / OWN_TRUE.shape[1]
    return Trajectories.from_arrays(r, lengths, outcome)


def _simulated(n: int, seed: int) -> tuple[Trajectories, np.ndarray]:
    """``n`` solutions of the evaluation simulator's weak model (outcomes) and the true class of every step."""
    sim = Simulator(load_default_simulator_params("math"))
    table = sim.step_table(n, seed)
    correct = sim.correct
    H = int(table.t.max())
    r = np.full((n, H), np.nan)
    z = np.full((n, H), -1)
    r[table.item_index, table.t - 1] = table.r
    z[table.item_index, table.t - 1] = table.z
    lengths = (~np.isnan(r)).sum(axis=1)
    return Trajectories.from_arrays(r, lengths, correct.astype(float)), z


def _tv(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * np.abs(a - b).sum())


def recovery(sizes: list[int], repeats: int) -> dict:
    out: dict = {"own_process": {}, "simulator": {}}
    for n in sizes:
        rows = []
        for rep in range(repeats):
            res, _ = _fit(_own_process(n, seed=100 + rep), n_bins=8, bins="uniform", r_only=True, restarts=2)
            got = _r_probs(res.model)
            rows.append(
                {
                    "p_w_error": abs(res.p_w - 0.9),
                    "rho_error": abs(res.rho - 0.15),
                    **{f"tv_{c}": _tv(got[i], OWN_TRUE[i]) for i, c in enumerate(("S0", "S1", "S2"))},
                    "converged": res.converged,
                    "seconds": res.seconds,
                }
            )
        out["own_process"][n] = _median_rows(rows)
    # the simulator's truth: pooled S0 / (S0 + S2) and per-class r histograms of a large sample
    big, zbig = _simulated(20_000, seed=999)
    s0, s2 = int((zbig == 0).sum()), int((zbig == 2).sum())
    true_pw = s0 / (s0 + s2)
    for n in sizes:
        rows = []
        for rep in range(repeats):
            traj, _ = _simulated(n, seed=200 + rep)
            res, _ = _fit(traj, restarts=2, **REAL_SETTINGS)
            edges = np.asarray(res.model.card["bins"]["r_edges"])
            got = _r_probs(res.model)
            t2 = np.arange(big.r.shape[1])[None, :] >= 1
            truth = []
            for c in range(3):
                sel = (zbig == c) & t2 & big.valid
                h = np.histogram(big.r[sel], bins=edges)[0].astype(float)
                truth.append(h / h.sum())
            rows.append(
                {
                    "p_w_error": abs(res.p_w - true_pw),
                    **{f"tv_{c}": _tv(got[i], truth[i]) for i, c in enumerate(("S0", "S1", "S2"))},
                    "converged": res.converged,
                    "seconds": res.seconds,
                }
            )
        out["simulator"][n] = _median_rows(rows)
    out["simulator_true_p_w"] = true_pw
    return out


def _median_rows(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k != "converged"]
    return {
        **{k: statistics.median(r[k] for r in rows) for k in keys},
        "converged": sum(bool(r["converged"]) for r in rows),
        "repeats": len(rows),
    }


# ---------------------------------------------------------------------------------------- 3. cross-validation


def cross_validation(data_dir: Path, folds: int = 5) -> dict:
    items = load_scored_items(data_dir / "prm-real" / QWEN)
    groups = [it.extra["unique_id"] for it in items]
    traj = Trajectories.from_scored(items)
    shipped = {name: load_named_observation_model(name)[0] for name in SHIPPED_OBSERVATION_MODELS}
    default_pw = float(load_default_params().p_w)
    per_fold = []
    pooled: dict[str, list[np.ndarray]] = {}
    ys = []
    for f, (train, test) in enumerate(GroupKFold(folds).split(np.zeros(len(items)), groups=groups)):
        res, warns = _fit(traj.select(train), restarts=3, seed=0, **REAL_SETTINGS)
        held = traj.select(test)
        ev = evaluate_observations(res.model, held)
        row = {
            "fold": f,
            "test_items": len(test),
            "test_questions": len({groups[i] for i in test}),
            "em": {"p_w": res.p_w, "rho": res.rho, "converged": res.converged, "seconds": res.seconds},
            "outcome": {("em_belief" if k == "belief" else k): v for k, v in ev.summary["outcome"].items()},
            "warnings": warns,
        }
        ys.append(ev.predictions["y"])
        for k in PREDICTORS:
            pooled.setdefault("em_belief" if k == "belief" else k, []).append(ev.predictions[k])
        for name, model in shipped.items():
            p_w = model.card.get("p_w")
            sev = evaluate_observations(model, held, p_w=float(p_w) if p_w is not None else default_pw)
            row["outcome"][f"{name}_belief"] = sev.summary["outcome"]["belief"]
            pooled.setdefault(f"{name}_belief", []).append(sev.predictions["belief"])
        best = max(row["outcome"][k]["auroc"] for k in ("min", "last", "product"))
        e = row["outcome"]["em_belief"]
        row["goal_auroc"] = e["auroc"] >= best
        row["goal_ece"] = e["ece"] <= 0.03
        per_fold.append(row)
    y = np.concatenate(ys)
    pooled_metrics = {k: outcome_metrics(np.concatenate(v), y)[0] for k, v in pooled.items()}
    best = max(pooled_metrics[k]["auroc"] for k in ("min", "last", "product"))
    return {
        "file": QWEN,
        "folds": folds,
        "grouped_by": "unique_id (MATH-500 question)",
        "settings": {**REAL_SETTINGS, "restarts": 3},
        "per_fold": per_fold,
        "pooled": pooled_metrics,
        "pooled_goal_auroc": pooled_metrics["em_belief"]["auroc"] >= best,
        "pooled_goal_ece": pooled_metrics["em_belief"]["ece"] <= 0.03,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = Path(os.environ.get("TRIM_POMDP_SHARED_DATA", REPO.parent / "shared" / "data"))
    ap.add_argument("--data-dir", type=Path, default=default_dir)
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 3000, 10000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", nargs="*", default=[], choices=["speed", "recovery", "cv"])
    ap.add_argument("--out", type=Path, default=default_out(__file__))
    args = ap.parse_args()
    result: dict = {"simulated_note": "parts 1 and 2 use SIMULATED scores; part 3 real PRM scores"}
    if "speed" not in args.skip:
        s = result["speed"] = speed(args.data_dir)
        print(
            f"1. ProcessBench scale ({s['solutions']} solutions, {s['steps']} steps, simulated scores): "
            f"{s['seconds']:.1f} s wall ({s['cpu_seconds']:.1f} s CPU, load {s['load_average_before']:.1f}), "
            f"{s['iterations']} iterations, {s['seconds_per_iteration'] * 1e3:.0f} ms/iteration, "
            f"converged {s['converged']}"
        )
    if "recovery" not in args.skip:
        rec = result["recovery"] = recovery(args.sizes, args.repeats)
        for where, rows in (("own process", rec["own_process"]), ("evaluation simulator", rec["simulator"])):
            print(f"\n2. recovery on the {where} (median of {args.repeats}; TV of r-bin probabilities)")
            print(
                f"{'n':>7}{'|p_w err|':>11}{'|rho err|':>11}{'TV S0':>8}{'TV S1':>8}{'TV S2':>8}{'conv':>6}"
            )
            for n, r in rows.items():
                rho = f"{r['rho_error']:>11.4f}" if "rho_error" in r else f"{'-':>11}"
                print(
                    f"{n:>7}{r['p_w_error']:>11.4f}{rho}{r['tv_S0']:>8.3f}{r['tv_S1']:>8.3f}{r['tv_S2']:>8.3f}"
                    f"{r['converged']:>4}/{r['repeats']}"
                )
    if "cv" not in args.skip:
        cv = result["cv"] = cross_validation(args.data_dir)
        print(f"\n3. {QWEN}, {cv['folds']} folds by question (held-out AUROC / ECE)")
        names = list(cv["pooled"])
        print(f"{'fold':<7}" + "".join(f"{n[:22]:>24}" for n in names))
        for row in cv["per_fold"]:
            print(
                f"{row['fold']:<7}"
                + "".join(
                    f"{row['outcome'][n]['auroc']:>15.3f} /{row['outcome'][n]['ece']:>6.3f}" for n in names
                )
            )
        print(
            f"{'pooled':<7}"
            + "".join(f"{cv['pooled'][n]['auroc']:>15.3f} /{cv['pooled'][n]['ece']:>6.3f}" for n in names)
        )
        print(
            f"goal met per fold: AUROC {sum(r['goal_auroc'] for r in cv['per_fold'])}/{cv['folds']}, "
            f"ECE {sum(r['goal_ece'] for r in cv['per_fold'])}/{cv['folds']}; pooled: AUROC {cv['pooled_goal_auroc']}, "
            f"ECE {cv['pooled_goal_ece']}"
        )
    path = write_result(args.out, result)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
