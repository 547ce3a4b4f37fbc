"""Hard per-query caps on strong tokens: the budget-aware planner against the clip, at equal caps (SIMULATED).

The TRIM-POMDP is estimated from ``--n-train`` labelled simulated queries (5 token buckets, the shipped
observation model) and solved at ``--lam``. For each cap ``N`` two routers run on the same ``--queries`` held-out
simulated queries (common random numbers):

- ``plan``: ``BeliefRouter(policy, max_strong_tokens=N)``, the budget-aware TRIM-POMDP solved with certified
  bounds (its solve time and certified gap are recorded);
- ``clip``: ``BeliefRouter(policy, max_strong_tokens=N, cap_mode="clip")``, the uncapped policy whose
  regenerations stop once the budget cannot pay their expected tokens.

Both are told after every step what M_s actually spent (as the generation loop tells them). The simulator's strong
steps vary in length and it cannot cut a step short, so a query can end over the cap when its last strong step
is longer than the model expects; the generation loop would cut that step at the cap instead. That share is
reported (``over_cap``). The uncapped policy and M_w alone are the reference points. Accuracy differences are
paired (same queries), with their standard errors.

Usage: ``python benchmarks/budget.py [--caps 25 50 100 200] [--queries 4000] [--out FILE]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import default_out, write_result  # noqa: E402  (benchmarks/ is on sys.path when run)

from trim_pomdp.evaluation.simulator import Simulator  # noqa: E402
from trim_pomdp.evaluation.sweep import estimate_trim_params  # noqa: E402
from trim_pomdp.pomdp import build_trim_pomdp, default_observation_model, solve_trim  # noqa: E402
from trim_pomdp.routers import BeliefRouter  # noqa: E402


def run(router, sim: Simulator, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query ``(correct, strong_tokens)``, the router told what each step actually spent."""
    obs = sim.reset(n, seed)
    if router is None:
        while obs.active.any():
            obs = sim.step(np.zeros(n, dtype=np.int64))
        return sim.correct, sim.strong_tokens
    router.reset_batch(n)
    while obs.active.any():
        a = router.decide_batch(obs)
        before = sim.strong_tokens
        obs = sim.step(a)
        router.spent_strong_batch(sim.strong_tokens - before)
    return sim.correct, sim.strong_tokens


def summary(correct: np.ndarray, tokens: np.ndarray, cap: float = math.inf) -> dict:
    n = correct.size
    return {
        "accuracy": float(correct.mean()),
        "accuracy_se": float(correct.std(ddof=1) / math.sqrt(n)),
        "strong_tokens": float(tokens.mean()),
        "strong_tokens_se": float(tokens.std(ddof=1) / math.sqrt(n)),
        "max_strong_tokens": float(tokens.max()),
        "over_cap": float((tokens > cap + 1e-9).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--caps", type=float, nargs="*", default=[25.0, 50.0, 100.0, 200.0])
    ap.add_argument("--lam", type=float, default=2e-4)
    ap.add_argument("--queries", type=int, default=4000)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--levels", type=int, default=32)
    ap.add_argument("--grid", type=int, default=33)
    ap.add_argument("--out", default=str(default_out(__file__)))
    args = ap.parse_args()
    sim = Simulator()
    params = estimate_trim_params(sim.labelled_statistics(args.n_train, 0), n_buckets=5).replace(lam=args.lam)
    model = build_trim_pomdp(params, default_observation_model())
    policy = solve_trim(model)
    kw = {"gate": False, "floor": 1e-300}
    n, seed = args.queries, args.seed
    weak = summary(*run(None, sim, n, seed))
    free_c, free_t = run(BeliefRouter(policy, model, **kw), sim, n, seed)
    uncapped = summary(free_c, free_t)
    print(f"M_w alone: accuracy {weak['accuracy']:.4f}; uncapped λ={args.lam:g}: accuracy "
          f"{uncapped['accuracy']:.4f}, {uncapped['strong_tokens']:.1f} strong tokens/query (SIMULATED)")  # fmt: skip
    rows = []
    for cap in args.caps:
        row: dict = {"cap": cap}
        outcomes = {}
        for mode in ("plan", "clip"):
            t0 = time.perf_counter()
            router = BeliefRouter(
                policy, model, max_strong_tokens=cap, cap_mode=mode, budget_levels=args.levels,
                budget_grid=args.grid, **kw,
            )  # fmt: skip
            build_s = time.perf_counter() - t0
            c, t = run(router, sim, n, seed)
            outcomes[mode] = c
            row[mode] = summary(c, t, cap)
            if mode == "plan":
                lo, hi = router.budget.bounds()
                row[mode].update(solve_seconds=build_s, lower_bound=lo, upper_bound=hi, gap=hi - lo)
        d = outcomes["plan"].astype(float) - outcomes["clip"].astype(float)
        row["accuracy_gain"] = float(d.mean())
        row["accuracy_gain_se"] = float(d.std(ddof=1) / math.sqrt(n))
        rows.append(row)
        p, c = row["plan"], row["clip"]
        print(
            f"cap {cap:g}: plan accuracy {p['accuracy']:.4f} ({p['strong_tokens']:.1f} tokens, over cap "
            f"{p['over_cap']:.3f}, solved in {p['solve_seconds']:.1f} s, gap {p['gap']:.1e}) | clip "
            f"{c['accuracy']:.4f} ({c['strong_tokens']:.1f} tokens, over cap {c['over_cap']:.3f}) | gain "
            f"{row['accuracy_gain']:+.4f} ± {row['accuracy_gain_se']:.4f} (SIMULATED)"
        )
    write_result(
        Path(args.out),
        {
            "simulated": True,
            "lam": args.lam,
            "queries": n,
            "n_train": args.n_train,
            "levels": args.levels,
            "grid_points": args.grid,
            "weak_alone": weak,
            "uncapped": uncapped,
            "caps": rows,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
