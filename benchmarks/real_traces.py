"""Real PRM traces: every shipped observation model's belief on them, and the simulator's distance to them.

Two measurements on the real files of ``../shared/data/prm-real`` (their README says what each is):

1. ``trim-pomdp evaluate-observations`` for every shipped observation model on every real file. On the
   Qwen2.5-Math-PRM-7B traces (final answers graded, no step labels): AUROC / Brier / ECE of the belief's
   P(right answer) beside the minimum, last and product of the scores. On the Skywork PRMBench file (step
   labels, no verdicts): the class log-loss and the S2 AUROCs. ``p_w`` is the model card's, else the shipped
   TRIM parameters' (as the CLI does).
2. Simulator against real: the statistics of :mod:`trim_pomdp.evaluation.trace_calibration` (per-solution
   minimum and last score by outcome, score marginals by outcome, steps, lag-1 autocorrelation) of the Qwen
   traces against the simulator's weak model at the traces' operating point, with today's default synthetic
   PRM ("before") and with the PRM of ``trim_pomdp/data/simulator_qwen_traces.json`` ("after"): two-sample KS
   statistics and absolute differences, on the calibration's own seed and on fresh seeds (held out).

Usage::

    python benchmarks/real_traces.py [--prm-real DIR] [--out FILE]

Simulated traces are simulated; the real ones are real PRM outputs. Writes ``benchmark-results/real_traces.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

from _common import REPO, default_out, write_result

from trim_pomdp.datasets.scored import load_scored_items
from trim_pomdp.evaluation import trace_calibration as tc
from trim_pomdp.evaluation.simulator import (
    SimulatorParams,
    default_simulator_file,
    load_default_simulator_params,
)
from trim_pomdp.observation_models.evaluate import PREDICTORS, evaluate_observations
from trim_pomdp.observation_models.shipped import SHIPPED_OBSERVATION_MODELS, load_named_observation_model
from trim_pomdp.pomdp.defaults import load_default_params
from trim_pomdp.prm.synthetic import SyntheticPRM

QWEN = "qwen-prm7b_math500-qwen1.5b_dev.jsonl"
SKYWORK = "skywork-prm7b_prmbench.jsonl"


def evaluate_shipped(prm_real: Path) -> dict:
    """``{model: {file: summary + chain}}`` for every shipped model on every real file."""
    out: dict = {}
    files = {name: load_scored_items(prm_real / name) for name in (QWEN, SKYWORK)}
    for name in SHIPPED_OBSERVATION_MODELS:
        model, _ = load_named_observation_model(name)
        p_w = model.card.get("p_w")
        p_w = float(p_w) if p_w is not None else float(load_default_params().p_w)
        out[name] = {}
        for fname, items in files.items():
            ev = evaluate_observations(model, items, p_w=p_w)
            out[name][fname] = {**ev.summary, "p_w": ev.details["p_w"], "rho": ev.details["rho"]}
    return out


def distances(prm_real: Path, seeds: list[int]) -> dict:
    """Simulated-vs-real distances before and after the recalibration, per seed."""
    real, lengths = tc.load_trace_statistics(prm_real / QWEN)
    after_params = SimulatorParams.from_json(default_simulator_file().parent / tc.QWEN_TRACES_FILE)
    cal = after_params.card["prm_calibration"]
    base = load_default_simulator_params("math")
    op = replace(
        base,
        step_count_probs=tc.step_count_probs(lengths, base.horizon),
        p_w_mean=cal["operating_point"]["p_w_mean"],
    )
    prms = {
        "before": SyntheticPRM(default_split="math"),
        "after": SyntheticPRM(**after_params.prm, default_split="math"),
    }
    res: dict = {"real": real.summary(), "operating_point": cal["operating_point"], "seeds": {}}
    for seed in seeds:
        res["seeds"][seed] = {}
        for label, prm in prms.items():
            s, l_, y = tc.simulate_traces(op, prm, cal["n_simulated"], seed)
            d = tc.trace_distances(tc.trace_statistics(s, l_, y), real)
            res["seeds"][seed][label] = {**d, "objective": tc.objective(d)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = Path(os.environ.get("TRIM_POMDP_SHARED_DATA", REPO.parent / "shared" / "data")) / "prm-real"
    ap.add_argument("--prm-real", type=Path, default=default_dir, help="folder with the real scored files")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="0 is the calibration's own seed")
    ap.add_argument("--out", type=Path, default=default_out(__file__))
    args = ap.parse_args()
    if not (args.prm_real / QWEN).is_file():
        raise SystemExit(f"no {QWEN} in {args.prm_real}: pass --prm-real DIR")
    t0 = time.perf_counter()
    shipped = evaluate_shipped(args.prm_real)
    dist = distances(args.prm_real, args.seeds)
    seconds = time.perf_counter() - t0

    print(f"Shipped observation models on {QWEN} (final answers; belief P(right) vs score aggregates)")
    print(f"{'model':<26}{'predictor':<10}{'AUROC':>8}{'Brier':>8}{'ECE':>8}")
    for name, per_file in shipped.items():
        o = per_file[QWEN]["outcome"]
        for pred in PREDICTORS:
            m = o[pred]
            print(f"{name:<26}{pred:<10}{m['auroc']:>8.3f}{m['brier']:>8.3f}{m['ece']:>8.3f}")
    print(f"\nShipped observation models on {SKYWORK} (step labels)")
    print(f"{'model':<26}{'class log-loss':>15}{'S2 AUROC belief':>17}{'S2 AUROC score':>16}")
    for name, per_file in shipped.items():
        st = per_file[SKYWORK]["steps"]
        print(
            f"{name:<26}{st['class_log_loss']:>15.3f}{st['s2_auroc_belief']:>17.3f}{st['s2_auroc_score']:>16.3f}"
        )
    print(
        "\nSimulator vs real Qwen traces (KS / |difference|; seed 0 = the calibration's own, others held out)"
    )
    keys = list(next(iter(dist["seeds"].values()))["before"])
    print(f"{'statistic':<18}" + "".join(f"{f'before s{s}':>11}{f'after s{s}':>10}" for s in args.seeds))
    for k in keys:
        row = "".join(
            f"{dist['seeds'][s]['before'][k]:>11.3f}{dist['seeds'][s]['after'][k]:>10.3f}" for s in args.seeds
        )
        print(f"{k:<18}{row}")
    path = write_result(
        args.out,
        {
            "simulated_note": "simulated traces are SIMULATED; the real files are real PRM outputs",
            "shipped_models": shipped,
            "simulator_vs_real": dist,
            "seconds": seconds,
        },
    )
    print(f"\nwrote {path} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
