"""Simulator throughput: 10^4 episodes for one router at one knob (goal ≤ 2 s).

Measures, medians over repeats, on the default simulator (simulated scores):

- ``baseline``: the TRIM-POMDP's own generative process (:class:`trim_pomdp.pomdp.ModelProcess`, shipped
  defaults) with M_w alone — another vectorised episode source, for scale (falls back to a bare lock-step loop
  copying an (n, H) score matrix per step when the model package is unavailable);
- ``simulator/never``: the simulator with M_w alone (no router cost);
- ``simulator/thr``: with TRIM-Thr (k = 0.5), the cheapest real router;
- ``simulator/pomdp``: with the POMDP BeliefRouter at λ = 5e-4 when the model package is importable (router
  cost included; solving the policy is not timed).

Every case runs through :func:`trim_pomdp.routers.rollout.rollout`, the one evaluation loop.

Usage: ``python benchmarks/simulator.py [--n 10000] [--repeats 5] [--out FILE]`` (default: the git-ignored
``benchmark-results/`` folder).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from _common import default_out, write_result

from trim_pomdp.evaluation.simulator import Simulator
from trim_pomdp.routers.rollout import rollout


class _Never:
    def reset_batch(self, n: int) -> None:
        pass

    def decide_batch(self, obs):
        return np.zeros(obs.n, dtype=np.int64)


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (imports, caches)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def _pomdp_router():
    try:
        from trim_pomdp.observation_models.observation import load_shipped_observation_model
        from trim_pomdp.pomdp import build_trim_pomdp, load_default_params, solve_trim
        from trim_pomdp.routers import BeliefRouter

        model = build_trim_pomdp(load_default_params().replace(lam=5e-4), load_shipped_observation_model())
        return BeliefRouter(solve_trim(model), model), "ok"
    except Exception as exc:  # the model or the shipped observation model may be absent in a partial checkout
        return None, f"unavailable ({type(exc).__name__}: {str(exc)[:120]})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(default_out(__file__)))
    args = ap.parse_args()
    sim = Simulator()
    n, H = args.n, sim.horizon
    steps = int(sim.queries(n, seed=0).n_steps.max())

    try:
        from trim_pomdp.pomdp import ModelProcess, build_trim_pomdp

        process = ModelProcess(build_trim_pomdp())
        baseline_name = "ModelProcess"

        def baseline() -> None:
            obs = process.reset(n, seed=0)
            while obs.active.any():
                obs = process.step(np.zeros(n, dtype=np.int64))

    except Exception:  # partial checkout: no model package or shipped artifacts
        baseline_name = "bare loop"

        def baseline() -> None:
            scores = np.zeros((n, H))
            for _ in range(steps):
                scores.copy()

    from trim_pomdp.routers import ThresholdRouter

    rows = {"baseline": _time(baseline, args.repeats)}
    rows["simulator/never"] = _time(lambda: rollout(_Never(), sim, n, seed=0, lam=0.0), args.repeats)
    rows["simulator/thr"] = _time(
        lambda: rollout(ThresholdRouter(0.5), sim, n, seed=0, lam=0.0), args.repeats
    )
    pomdp, status = _pomdp_router()
    if pomdp is not None:
        rows["simulator/pomdp"] = _time(lambda: rollout(pomdp, sim, n, seed=0), max(1, args.repeats // 2))
    goal = 2.0
    print(f"{'case':<18} {'median s':>9} {'x baseline':>11} {'goal ≤ 2 s':>11}")
    for name, sec in rows.items():
        ok = "" if name == "baseline" else ("yes" if sec <= goal else "NO")
        print(f"{name:<18} {sec:9.3f} {sec / rows['baseline']:11.1f} {ok:>11}")
    print(f"baseline = {baseline_name} (M_w alone, same n)")
    if pomdp is None:
        print(f"simulator/pomdp: {status}")
    result = {
        "n_episodes": n,
        "max_steps": steps,
        "repeats": args.repeats,
        "median_seconds": rows,
        "goal_seconds": goal,
        "pomdp": status,
        "baseline": baseline_name,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "note": "simulated episodes; timings on a shared machine are pessimistic",
    }
    write_result(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
