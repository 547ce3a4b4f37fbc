"""Router benchmarks: per-step overhead, vectorised evaluation, re-planning cost, TRIM-Agg training quality.

    python benchmarks/router.py            # all sections (TRIM-Agg training takes up to --agg-minutes)
    python benchmarks/router.py --sections overhead,batch,replan
    python benchmarks/router.py --sections agg --agg-minutes 10
    python benchmarks/router.py --sections classes   # BeliefRouter.decide with D = 1, 2, 3 difficulty classes

Prints a table per section and writes JSON (default ``benchmark-results/router.json``, git-ignored) after every
section. Episodes run through :func:`trim_pomdp.routers.rollout.rollout`, the one evaluation loop.
Timings are medians over repeats on this machine (see the ``machine`` entry); on a shared machine they are
pessimistic. Model: the shipped default TRIM-POMDP (``load_default_params`` + shipped observation model) at
``--lambda``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import default_out, write_result

from trim_pomdp.pomdp import ModelProcess, build_trim_pomdp, load_default_params, solve_trim
from trim_pomdp.routers.belief import BeliefRouter
from trim_pomdp.routers.rl.agg import AggRouter
from trim_pomdp.routers.rollout import rollout
from trim_pomdp.routers.threshold import ThresholdRouter
from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver

HERE = Path(__file__).resolve().parent


class NullRouter:
    """The empty loop's router: does nothing, answers continue."""

    def reset(self) -> None:
        pass

    def decide(self, obs) -> str:
        return "continue"

    def reset_batch(self, n: int) -> None:
        pass

    def decide_batch(self, obs) -> np.ndarray:
        return np.zeros(obs.n, dtype=np.int64)


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def random_agg(horizon: int, seed: int = 0) -> AggRouter:
    """An untrained TRIM-Agg actor (same shapes as a trained one): for timing only."""
    rng = np.random.default_rng(seed)
    shapes = [(4, 128), (128, 128), (128, 2)]
    return AggRouter([(rng.normal(0, 0.1, s), np.zeros(s[1])) for s in shapes], horizon, {"lam": None})


def episodes(model, n: int, seed: int) -> list[list]:
    """Step observations of ``n`` episodes of the model's own process (M_w alone)."""
    src = ModelProcess(model)
    obs = src.reset(n, seed=seed)
    eps: list[list] = [[] for _ in range(n)]
    while obs.active.any():
        for i in np.flatnonzero(obs.active):
            eps[i].append(obs.row(i))
        obs = src.step(np.zeros(n, dtype=np.int64))
    return eps


def time_loop(router, eps, repeats: int) -> tuple[float, float]:
    """(median per-step seconds of the whole loop over repeats, median per-call seconds of decide)."""
    n_steps = sum(len(e) for e in eps)
    totals, calls = [], []
    pc = time.perf_counter
    for _ in range(repeats):
        t0 = pc()
        for e in eps:
            router.reset()
            for o in e:
                router.decide(o)
        totals.append((pc() - t0) / n_steps)
    for e in eps:
        router.reset()
        for o in e:
            t0 = pc()
            router.decide(o)
            calls.append(pc() - t0)
    return statistics.median(totals), statistics.median(calls)


def section_overhead(model, policy, args) -> dict[str, Any]:
    eps = episodes(model, args.overhead_episodes, seed=1)
    n_steps = sum(len(e) for e in eps)
    rows = {
        "empty loop": NullRouter(),
        "ThresholdRouter(0.5)": ThresholdRouter(0.5),
        "BeliefRouter(gate=True)": BeliefRouter(policy, model, gate=True),
        "BeliefRouter(gate=False)": BeliefRouter(policy, model, gate=False),
        "AggRouter (numpy MLP)": random_agg(model.horizon),
    }
    out: dict[str, Any] = {"steps_per_loop": n_steps, "repeats": args.repeats, "routers": {}}
    print(f"\nper-step overhead over {n_steps} steps of {len(eps)} episodes (median of {args.repeats} loops)")
    print(f"{'router':28s} {'loop µs/step':>13s} {'decide() µs (median call)':>26s}")
    for name, router in rows.items():
        loop, call = time_loop(router, eps, args.repeats)
        out["routers"][name] = {"loop_us_per_step": loop * 1e6, "median_call_us": call * 1e6}
        print(f"{name:28s} {loop * 1e6:13.2f} {call * 1e6:26.2f}")
    empty = out["routers"]["empty loop"]["loop_us_per_step"]
    for row in out["routers"].values():
        row["overhead_us_per_step"] = row["loop_us_per_step"] - empty
    return out


def section_classes(model, policy, args) -> dict[str, Any]:
    """BeliefRouter.decide on the model with D = 1, 2, 3 difficulty classes (estimated from 2000 simulated
    training queries, seed 1), over the same episodes of the D = 2 model's process."""
    from trim_pomdp.evaluation.simulator import Simulator
    from trim_pomdp.pomdp import TrimPOMDP
    from trim_pomdp.pomdp.difficulty import load_evidence, with_difficulty

    ev = load_evidence("simulator", queries=2000, seed=1, simulator=Simulator)
    models = {1: model}
    for D in (2, 3):
        params, _ = with_difficulty(model.params, ev, D, max_classes=D)
        models[D] = TrimPOMDP(params, model.obs_model)
    eps = episodes(models[2], args.overhead_episodes, seed=1)
    n_steps = sum(len(e) for e in eps)
    out: dict[str, Any] = {"steps_per_loop": n_steps, "repeats": args.repeats, "classes": {}}
    print(f"\nBeliefRouter(gate=False) per difficulty-class count, {n_steps} steps of {len(eps)} episodes")
    print(f"{'classes':>8s} {'solve s':>8s} {'loop µs/step':>13s} {'decide() µs (median call)':>26s}")
    for D, m in models.items():
        t0 = time.perf_counter()
        pol = policy if D == 1 else solve_trim(m)
        solve_s = time.perf_counter() - t0
        loop, call = time_loop(BeliefRouter(pol, m, gate=False), eps, args.repeats)
        out["classes"][str(D)] = {
            "solve_seconds": solve_s,
            "loop_us_per_step": loop * 1e6,
            "median_call_us": call * 1e6,
        }
        print(f"{D:8d} {solve_s:8.2f} {loop * 1e6:13.2f} {call * 1e6:26.2f}")
    return out


def section_batch(model, policy, args) -> dict[str, Any]:
    from trim_pomdp.evaluation import Simulator

    n = args.batch_episodes
    lam = model.params.lam
    routers = {
        "source only (never regenerate)": lambda: NullRouter(),
        "ThresholdRouter(0.5)": lambda: ThresholdRouter(0.5),
        "BeliefRouter(gate=True)": lambda: BeliefRouter(policy, model, gate=True),
        "BeliefRouter(gate=False)": lambda: BeliefRouter(policy, model, gate=False),
        "AggRouter (numpy MLP)": lambda: random_agg(model.horizon),
    }
    out: dict[str, Any] = {"episodes": n, "sources": {}}
    for sname, make_src in (("ModelProcess", lambda: ModelProcess(model)), ("Simulator", Simulator)):
        src = make_src()
        print(f"\n{n} episodes in lock-step on {sname} (median of {args.repeats} runs)")
        print(f"{'router':32s} {'seconds':>8s}")
        res = {}
        for name, make in routers.items():
            secs = []
            for _ in range(args.repeats):
                r = make()
                t0 = time.perf_counter()
                rollout(r, src, n, lam=lam, seed=0)
                secs.append(time.perf_counter() - t0)
            res[name] = statistics.median(secs)
            print(f"{name:32s} {res[name]:8.3f}")
        out["sources"][sname] = res
    return out


def section_replan(model, policy, args) -> dict[str, Any]:
    """Gated re-plans while running episodes of the model through one router per configuration."""
    configs = {
        "native auto (1e-3), re-solved every time": (FiniteHorizonSolver(), False),
        "native auto (1e-3), certified tail re-use (default)": (FiniteHorizonSolver(), "auto"),
        "native grid (17 pts), re-solved every time": (FiniteHorizonSolver(mode="grid"), False),
        "native grid (17 pts), tail re-used per epoch": (FiniteHorizonSolver(mode="grid"), "auto"),
    }
    try:
        FiniteHorizonSolver(mode="exact").solve(model.structured())
        configs["native exact, tail re-used per epoch"] = (FiniteHorizonSolver(mode="exact"), "auto")
        exact_note = "exact mode solved the default model"
    except Exception as exc:  # the exact value function is too large for the default model
        exact_note = f"exact mode is not available on the default model: {exc}"
    eps = episodes(model, args.replan_episodes, seed=2)
    out: dict[str, Any] = {"episodes": len(eps), "exact_mode": exact_note, "configs": {}}
    print(f"\ngated re-plans (delta 0.375) over {len(eps)} episodes; {exact_note}")
    print(
        f"{'configuration':52s} {'re-plans':>8s} {'median ms':>10s} {'mean ms':>8s} {'p90 ms':>8s} "
        f"{'re-used':>8s} {'agree':>6s}"
    )
    for name, (solver, cache) in configs.items():
        router = BeliefRouter(policy, model, replan_solver=solver, gate=True, replan_cache=cache)
        times, first, seen, agree, n = [], [], set(), 0, 0
        t_start = time.perf_counter()
        for e in eps:
            router.reset()
            for o in e:
                a = router.decide(o)
                d = router.last_decision
                if "replan_seconds" in d:
                    (first if d["t"] not in seen else times).append(d["replan_seconds"])
                    seen.add(d["t"])
                    n += 1
                    agree += a == (
                        "regenerate"
                        if policy.action(d["t"], d["bucket"], d["final"], np.array(d["belief"]))
                        else "continue"
                    )
            if time.perf_counter() - t_start > args.replan_seconds:
                break
        all_t = first + times
        row = {
            "replans": n,
            "median_ms": 1e3 * statistics.median(all_t) if all_t else None,
            "p90_ms": 1e3 * float(np.quantile(all_t, 0.9)) if all_t else None,
            "warm_median_ms": 1e3 * statistics.median(times) if times else None,
            "first_per_epoch_median_ms": 1e3 * statistics.median(first) if first else None,
            "agreement_with_policy": agree / n if n else None,
            "reused_fraction": router.n_replans_cached / n if n else None,
            "mean_ms": 1e3 * statistics.mean(all_t) if all_t else None,
        }
        out["configs"][name] = row
        fmt = lambda x: f"{x:.3f}" if x is not None else "-"  # noqa: E731
        print(
            f"{name:52s} {n:8d} {fmt(row['median_ms']):>10s} {fmt(row['mean_ms']):>8s} "
            f"{fmt(row['p90_ms']):>8s} {fmt(row['reused_fraction']):>8s} "
            f"{fmt(row['agreement_with_policy']):>6s}"
        )
    return out


def section_agg(model, policy, args, out_path: Path, results: dict) -> dict[str, Any]:
    """Train TRIM-Agg under a wall-clock budget; compare its return under the model with the POMDP's."""
    from stable_baselines3.common.callbacks import BaseCallback

    from trim_pomdp.routers.rl.agg import train_agg

    lam = model.params.lam
    n_eval, seed_eval = args.agg_eval_episodes, 12345
    t0 = time.perf_counter()
    pomdp = rollout(policy, ModelProcess(model), n_eval, seed=seed_eval)
    print(
        f"\nexact POMDP policy under the model: return {pomdp.ret:.4f} ± {pomdp.ret_se:.4f} "
        f"({n_eval} episodes, {time.perf_counter() - t0:.1f} s)"
    )
    curve: list[dict[str, float]] = []
    budget = 60.0 * args.agg_minutes
    start = time.perf_counter()
    record = {"lam": lam, "pomdp": pomdp.to_dict(), "budget_seconds": budget, "curve": curve}

    class Budget(BaseCallback):
        """Stop at the wall-clock budget; evaluate the current actor every ``agg_eval_every`` steps."""

        def __init__(self) -> None:
            super().__init__()
            self.next_eval = args.agg_eval_every

        def _on_step(self) -> bool:
            if self.model.num_timesteps >= self.next_eval:
                self.next_eval += args.agg_eval_every
                r = AggRouter.from_ppo(self.model, model.horizon)
                res = rollout(r, ModelProcess(model), args.agg_curve_episodes, lam=lam, seed=seed_eval)
                el = time.perf_counter() - start
                curve.append(
                    {
                        "timesteps": int(self.model.num_timesteps),
                        "seconds": el,
                        "ret": res.ret,
                        "gap": (pomdp.ret - res.ret) / abs(pomdp.ret),
                    }
                )
                print(
                    f"  {self.model.num_timesteps:>9d} steps {el:7.0f} s  return {res.ret:.4f}  "
                    f"gap {100 * curve[-1]['gap']:.2f}%"
                )
                results["agg"] = record
                write_result(out_path, results)
            return time.perf_counter() - start < budget

    print(
        f"training TRIM-Agg (λ={lam:g}, up to {args.agg_timesteps} steps or {args.agg_minutes} min, "
        f"{args.agg_envs} envs, torch threads 1)"
    )
    router = train_agg(
        lambda: ModelProcess(model),
        lam,
        timesteps=args.agg_timesteps,
        seed=args.seed,
        n_envs=args.agg_envs,
        callback=Budget(),
    )
    seconds = time.perf_counter() - start
    final = rollout(router, ModelProcess(model), n_eval, lam=lam, seed=seed_eval)
    gap = (pomdp.ret - final.ret) / abs(pomdp.ret)
    record.update(
        {
            "train_seconds": seconds,
            "timesteps": int(router.ppo.num_timesteps),
            "agg": final.to_dict(),
            "relative_gap": gap,
            "within_5_percent": bool(gap <= 0.05),
        }
    )
    print(
        f"TRIM-Agg after {router.ppo.num_timesteps} steps / {seconds:.0f} s: return {final.ret:.4f} ± "
        f"{final.ret_se:.4f}; POMDP {pomdp.ret:.4f}; gap {100 * gap:.2f}%"
    )
    if args.agg_save:
        router.save(args.agg_save)
    return record


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="overhead,batch,replan,agg")
    ap.add_argument("--lambda", dest="lam", type=float, default=5e-4)
    ap.add_argument("--out", type=Path, default=default_out(__file__))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overhead-episodes", type=int, default=1000)
    ap.add_argument("--batch-episodes", type=int, default=10_000)
    ap.add_argument("--replan-episodes", type=int, default=200)
    ap.add_argument(
        "--replan-seconds", type=float, default=60.0, help="time cap per re-planning configuration"
    )
    ap.add_argument("--agg-minutes", type=float, default=10.0)
    ap.add_argument("--agg-timesteps", type=int, default=3_000_000)
    ap.add_argument("--agg-envs", type=int, default=8)
    ap.add_argument("--agg-eval-every", type=int, default=100_000)
    ap.add_argument("--agg-curve-episodes", type=int, default=20_000)
    ap.add_argument("--agg-eval-episodes", type=int, default=100_000)
    ap.add_argument("--agg-save", type=Path, default=None, help="save the trained TRIM-Agg router here")
    args = ap.parse_args(argv)

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    model = build_trim_pomdp(load_default_params(lam=args.lam), None)
    t0 = time.perf_counter()
    policy = solve_trim(model)
    solve_s = time.perf_counter() - t0
    results: dict[str, Any] = {}
    if args.out.exists():
        try:
            results = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            results = {}
    results.update({"machine": machine(), "lam": args.lam, "policy": repr(policy), "solve_seconds": solve_s})
    print(
        f"{policy} solved in {solve_s:.2f} s on {os.cpu_count()} CPUs "
        f"(load {results['machine']['load_average']})"
    )
    for name in sections:
        if name == "overhead":
            results["overhead"] = section_overhead(model, policy, args)
        elif name == "batch":
            results["batch"] = section_batch(model, policy, args)
        elif name == "replan":
            results["replan"] = section_replan(model, policy, args)
        elif name == "agg":
            results["agg"] = section_agg(model, policy, args, args.out, results)
        elif name == "classes":
            results["classes"] = section_classes(model, policy, args)
        else:
            raise SystemExit(f"unknown section {name!r}: choose from overhead, batch, replan, agg, classes")
        results["machine"] = machine()
        write_result(args.out, results)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
