"""Run a step router through an episode source in lock-step (the vectorised evaluation loop)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.routers.base import BatchRouter, Router
from trim_pomdp.types import EpisodeBatch, StepObservation

__all__ = ["RolloutResult", "rollout"]


@dataclass(frozen=True)
class RolloutResult:
    """Outcome of :func:`rollout`: means over ``n`` episodes with their standard errors.

    ``ret`` is the return ``R * correct - lam * strong_tokens`` per episode, averaged.
    """

    n: int
    accuracy: float
    strong_tokens: float
    ret: float
    accuracy_se: float
    strong_tokens_se: float
    ret_se: float
    regenerate_rate: float

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")


def rollout(
    router: Router | BatchRouter,
    source: EpisodeBatch,
    n: int,
    *,
    lam: float,
    reward: float = 1.0,
    seed: int | None = 0,
) -> RolloutResult:
    """Run ``n`` episodes of ``source`` with ``router`` deciding every step.

    Uses the router's vectorised :meth:`decide_batch` when it has one, else calls :meth:`decide` row by row
    (with one router per row reset between episodes is not possible in lock-step, so a plain :class:`Router`
    is run one episode at a time).
    """
    if int(n) < 1:
        raise InvalidParameterError(f"n must be >= 1, got {n!r}")
    n = int(n)
    H = int(source.horizon)
    regen = 0
    steps = 0
    if hasattr(router, "decide_batch") and hasattr(router, "reset_batch"):
        obs = source.reset(n, seed=seed)
        router.reset_batch(n)
        for _ in range(H + 2):
            if not obs.active.any():
                break
            actions = np.asarray(router.decide_batch(obs), dtype=np.int64)
            actions = np.where(obs.active, actions, 0)
            regen += int(actions.sum())
            steps += int(obs.active.sum())
            obs = source.step(actions)
        if obs.active.any():
            raise RuntimeError(
                f"episodes still active after {H + 2} steps: the source does not respect its horizon"
            )
        correct = np.asarray(source.correct, dtype=float)
        tokens = np.asarray(source.strong_tokens, dtype=float)
    else:
        correct = np.zeros(n)
        tokens = np.zeros(n)
        rng = np.random.default_rng(seed)
        for i in range(n):
            obs = source.reset(1, seed=int(rng.integers(0, 2**31 - 1)))
            router.reset()
            while obs.active[0]:
                row: StepObservation = obs.row(0)
                a = 1 if router.decide(row) == "regenerate" else 0
                regen += a
                steps += 1
                obs = source.step(np.array([a]))
            correct[i] = float(np.asarray(source.correct)[0])
            tokens[i] = float(np.asarray(source.strong_tokens)[0])
    ret = reward * correct - lam * tokens
    return RolloutResult(
        n=n,
        accuracy=float(correct.mean()),
        strong_tokens=float(tokens.mean()),
        ret=float(ret.mean()),
        accuracy_se=_se(correct),
        strong_tokens_se=_se(tokens),
        ret_se=_se(ret),
        regenerate_rate=regen / max(steps, 1),
    )
