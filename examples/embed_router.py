"""Embed TRIM's BeliefRouter in your own generation loop.

The router never calls a model: your loop generates each step with the cheap model, scores the prefix with
your PRM, asks the router, and calls the expensive model when told to. Here the three models are offline
stand-ins (a random step generator with hidden correctness and a scorer whose scores are noisy in the
correctness), so the script runs anywhere in a few seconds:

    python examples/embed_router.py [--lambda 5e-4] [--queries 300] [--seed 0]

Swap ``ToyModel.generate_step`` and ``toy_prm`` for vLLM / Anthropic calls and a real PRM (see
``trim_pomdp.generation`` for ready-made backends) and the loop stays the same.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import numpy as np

from trim_pomdp.routers import BeliefRouter
from trim_pomdp.types import StepObservation

MAX_STEPS = 30  # the horizon H of the shipped model: solutions are cut at 30 steps


# -- offline stand-ins for M_w, M_s and the PRM (replace these with your own) -----
@dataclass
class Step:
    text: str
    tokens: int
    final: bool
    correct: bool  # hidden: only the stand-ins look at it


@dataclass
class Problem:
    text: str
    n_steps: int  # how long a solution of this problem is
    rng: np.random.Generator = field(repr=False, default_factory=np.random.default_rng)


class ToyModel:
    """A step generator: each step is right with probability ``accuracy`` if the prefix is right."""

    def __init__(self, name: str, accuracy: float, length_scale: float):
        self.name, self.accuracy, self.length_scale = name, accuracy, length_scale

    def generate_step(self, problem: Problem, prefix: list[Step]) -> Step:
        t = len(prefix) + 1
        ok = all(s.correct for s in prefix) and problem.rng.random() < self.accuracy
        tokens = int(problem.rng.gamma(2.0, self.length_scale)) + 5
        final = t >= problem.n_steps
        return Step(f"[{self.name} step {t}]", tokens, final, ok)


def toy_prm(problem: Problem, steps: list[Step]) -> list[float]:
    """Scores r_1..r_t of the prefix: high for right steps, low for wrong ones, noisy."""
    out = []
    for s in steps:
        a, b = (6.0, 1.5) if s.correct else (1.5, 3.5)
        out.append(float(problem.rng.beta(a, b)))
    return out


# -- the loop -----
def solve_with_trim(
    problem: Problem, router: BeliefRouter, weak: ToyModel, strong: ToyModel
) -> tuple[list[Step], int]:
    """One query: returns the accepted steps and the strong model's output tokens."""
    router.reset()
    steps: list[Step] = []
    strong_tokens = 0
    for t in range(1, MAX_STEPS + 1):
        step = weak.generate_step(problem, steps)
        scores = toy_prm(problem, [*steps, step])
        obs = StepObservation(
            t=t, scores=tuple(scores), tokens=step.tokens, final=step.final or t == MAX_STEPS
        )
        if router.decide(obs) == "regenerate":
            step = strong.generate_step(problem, steps)
            strong_tokens += step.tokens
        steps.append(step)
        if obs.final:  # a regenerated final step is taken as final
            break
    return steps, strong_tokens


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lambda", dest="lam", type=float, default=5e-4, help="price of one strong token")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--obs",
        "--observation-model",
        dest="observation_model",
        default=None,
        help="observation model file/dir (default: the shipped one)",
    )
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    # the shipped defaults solved for λ; or BeliefRouter.load(DIR) on the output of `trim-pomdp solve`
    router = BeliefRouter.from_defaults(lam=args.lam, observation_model=args.observation_model)
    print(f"solved the shipped TRIM-POMDP for λ={args.lam:g} in {time.perf_counter() - t0:.2f} s: {router}")

    weak, strong = ToyModel("weak", 0.88, 40.0), ToyModel("strong", 0.97, 45.0)
    rng = np.random.default_rng(args.seed)
    results = {"trim": [], "weak only": [], "strong only": []}
    t0 = time.perf_counter()
    for q in range(args.queries):
        n_steps = int(rng.integers(3, 12))
        seed = int(rng.integers(2**31))

        def problem(q: int = q, n_steps: int = n_steps, seed: int = seed) -> Problem:
            # the same problem (and randomness) for each way of solving it
            return Problem(f"problem {q}", n_steps, np.random.default_rng(seed))

        steps, cost = solve_with_trim(problem(), router, weak, strong)
        results["trim"].append((steps[-1].correct and all(s.correct for s in steps), cost))
        for name, model in (("weak only", weak), ("strong only", strong)):
            p, prefix = problem(), []
            while not prefix or not prefix[-1].final:
                prefix.append(model.generate_step(p, prefix))
            results[name].append(
                (all(s.correct for s in prefix), sum(s.tokens for s in prefix) if model is strong else 0)
            )
    seconds = time.perf_counter() - t0
    print(f"{args.queries} queries in {seconds:.2f} s")
    print(f"{'':12s} {'accuracy':>9s} {'strong tokens/query':>20s}")
    for name, rows in results.items():
        acc = np.mean([c for c, _ in rows])
        cost = np.mean([k for _, k in rows])
        print(f"{name:12s} {acc:9.3f} {cost:20.1f}")
    d = router.last_decision
    print(
        f"last decision: t={d['t']} belief(S0,S1,S2)={np.round(d['belief'], 3).tolist()} "
        f"gate_open={d['gate_open']} action={d['action']}"
    )


if __name__ == "__main__":
    main()
