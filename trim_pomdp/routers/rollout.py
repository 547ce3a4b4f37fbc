"""The one evaluation loop: run a router through an episode source in lock-step and summarise the episodes.

:func:`rollout` runs ``n`` episodes of any :class:`~trim_pomdp.types.EpisodeBatch` (the TRIM-POMDP's own
process, the offline simulator, replays) with any step router deciding every step, and returns a
:class:`RolloutResult`: accuracy, M_s tokens and the return ``R · correct − λ · strong_tokens`` per episode,
averaged, with their standard errors, and on request the per-episode outcomes.

What may decide:

- a :class:`~trim_pomdp.routers.base.BatchRouter` (``reset_batch`` + ``decide_batch``), used as it is;
- a :class:`~trim_pomdp.pomdp.policy.TrimPolicy`, run as a :class:`~trim_pomdp.routers.belief.BeliefRouter`
  with the gate off (the policy plus its belief filter);
- a plain :class:`~trim_pomdp.routers.base.Router` (``reset`` + ``decide``): one copy per episode, stepped in
  lock-step with the others, so it sees the same episodes as a batch router would (slow; for small ``n``);
- ``None``: never regenerate (M_w alone).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.pomdp.policy import TrimPolicy
from trim_pomdp.routers.base import BatchRouter, Router
from trim_pomdp.types import BatchObservation, EpisodeBatch

__all__ = ["RolloutResult", "as_batch_router", "rollout"]


@dataclass(frozen=True)
class RolloutResult:
    """Outcome of :func:`rollout`: means over ``n`` episodes with their standard errors (``*_se``).

    Attributes
    ----------
    n : int
        Episodes run.
    accuracy : float
        Fraction of episodes that ended correct.
    strong_tokens : float
        Mean M_s output tokens per episode.
    ret : float
        Mean return ``reward · correct − lam · strong_tokens``.
    accuracy_se, strong_tokens_se, ret_se : float
        Standard errors of the three means (``nan`` for a single episode).
    regenerate_rate : float
        Regenerations per decided step.
    regenerations : float
        Mean regenerations per episode.
    lam, reward : float
        λ and R of the return.
    seconds : float
        Wall-clock time of the run (not compared by ``==``).
    episode_correct, episode_strong_tokens : ndarray or None
        Per-episode outcomes (``keep_episodes=True``), in the source's episode order.
    """

    n: int
    accuracy: float
    strong_tokens: float
    ret: float
    accuracy_se: float
    strong_tokens_se: float
    ret_se: float
    regenerate_rate: float
    regenerations: float
    lam: float
    reward: float
    seconds: float = field(default=float("nan"), compare=False)
    episode_correct: np.ndarray | None = field(default=None, compare=False, repr=False)
    episode_strong_tokens: np.ndarray | None = field(default=None, compare=False, repr=False)

    def outcomes(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-episode ``(correct, strong_tokens)``; needs ``rollout(..., keep_episodes=True)``."""
        if self.episode_correct is None or self.episode_strong_tokens is None:
            raise InvalidParameterError("per-episode outcomes need rollout(..., keep_episodes=True)")
        return self.episode_correct, self.episode_strong_tokens

    def to_dict(self) -> dict[str, float]:
        """The means, standard errors and settings as plain numbers (no per-episode arrays)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("episode_")}


class _NeverRegenerate:
    def reset_batch(self, n: int) -> None:
        pass

    def decide_batch(self, obs: BatchObservation) -> np.ndarray:
        return np.zeros(obs.n, dtype=np.int64)


class _OnePerEpisode:
    """A plain :class:`Router` as a batch router: one deep copy per episode, each reset before its episode."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.copies: list[Any] = []

    def reset_batch(self, n: int) -> None:
        self.copies = [copy.deepcopy(self.router) for _ in range(int(n))]
        for r in self.copies:
            r.reset()

    def decide_batch(self, obs: BatchObservation) -> np.ndarray:
        out = np.zeros(obs.n, dtype=np.int64)
        for i in np.flatnonzero(obs.active):
            out[i] = 1 if self.copies[i].decide(obs.row(int(i))) == "regenerate" else 0
        return out


def as_batch_router(router: Any, trim_pomdp: Any = None) -> BatchRouter:
    """What :func:`rollout` runs for ``router`` (see the module docstring); ``trim_pomdp`` serves a policy."""
    if router is None:
        return _NeverRegenerate()
    if isinstance(router, TrimPolicy):
        from trim_pomdp.routers.belief import BeliefRouter

        return BeliefRouter(router, trim_pomdp, gate=False)
    if callable(getattr(router, "reset_batch", None)) and callable(getattr(router, "decide_batch", None)):
        return router
    if callable(getattr(router, "reset", None)) and callable(getattr(router, "decide", None)):
        return _OnePerEpisode(router)
    raise InvalidParameterError(
        f"{type(router).__name__} is not a router: it needs reset_batch/decide_batch or reset/decide "
        "(or pass a TrimPolicy)"
    )


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")


def _return_settings(router: Any, model: Any, lam: float | None, reward: float | None) -> tuple[float, float]:
    """λ and R of the return: as given, else the router's λ and the model's (R = 1 without a model)."""
    params = getattr(model, "params", None)
    if lam is None:
        lam = getattr(router, "lam", None)
        if lam is None and params is not None:
            lam = params.lam
        if lam is None:
            raise InvalidParameterError("pass lam=... (the price per strong token) to compute the return")
    if reward is None:
        reward = params.reward if params is not None else 1.0
    return float(lam), float(reward)


def _run(batch: BatchRouter, source: EpisodeBatch, n: int, seed: int | None) -> tuple[int, int]:
    """Step ``n`` episodes to their end; ``(regenerations, decided steps)``."""
    H = int(source.horizon)
    regen = steps = 0
    obs = source.reset(n, seed=seed)
    batch.reset_batch(n)
    for _ in range(H + 2):
        if not obs.active.any():
            break
        actions = np.where(obs.active, np.asarray(batch.decide_batch(obs), dtype=np.int64), 0)
        regen += int(actions.sum())
        steps += int(obs.active.sum())
        obs = source.step(actions)
    if obs.active.any():
        raise RuntimeError(
            f"episodes still active after {H + 2} steps: the source does not respect its horizon"
        )
    return regen, steps


def rollout(
    router: Router | BatchRouter | TrimPolicy | None,
    source: EpisodeBatch,
    n: int = 100_000,
    *,
    lam: float | None = None,
    reward: float | None = None,
    seed: int | None = 0,
    trim_pomdp: Any = None,
    keep_episodes: bool = False,
) -> RolloutResult:
    """Run ``n`` episodes of ``source`` with ``router`` deciding every step.

    Parameters
    ----------
    router : BatchRouter, Router, TrimPolicy or None
        What decides (see the module docstring).
    source : EpisodeBatch
        E.g. :class:`~trim_pomdp.pomdp.process.ModelProcess` or
        :class:`~trim_pomdp.evaluation.simulator.Simulator`.
    n : int, default 100_000
        Episodes.
    lam : float, optional
        λ of the return. Default: the policy's or router's ``lam``, else the model's (``trim_pomdp`` or the
        source's ``trim_pomdp``).
    reward : float, optional
        R of the return. Default: the model's, else 1.
    seed : int, optional
        Seed of ``source.reset``: the same seed gives the same episodes to every router.
    trim_pomdp : TrimPOMDP, optional
        The model a :class:`TrimPolicy` is filtered with. Default: the source's ``trim_pomdp`` attribute,
        else the model stored in the policy.
    keep_episodes : bool, default False
        Also return the per-episode outcomes.

    Raises
    ------
    InvalidParameterError
        When ``n < 1``, ``router`` is not a router, or λ is unknown.
    RuntimeError
        When episodes are still running after ``source.horizon + 2`` steps (the source ignores its horizon).
    """
    if int(n) < 1:
        raise InvalidParameterError(f"n must be >= 1 episode, got {n!r}")
    n = int(n)
    start = time.perf_counter()
    model = trim_pomdp if trim_pomdp is not None else getattr(source, "trim_pomdp", None)
    batch = as_batch_router(router, model)
    lam, reward = _return_settings(router, model, lam, reward)
    regen, steps = _run(batch, source, n, seed)
    correct = np.asarray(source.correct)
    tokens = np.asarray(source.strong_tokens, dtype=float)
    c = correct.astype(float)
    ret = reward * c - lam * tokens
    return RolloutResult(
        n=n,
        accuracy=float(c.mean()),
        strong_tokens=float(tokens.mean()),
        ret=float(ret.mean()),
        accuracy_se=_se(c),
        strong_tokens_se=_se(tokens),
        ret_se=_se(ret),
        regenerate_rate=regen / max(steps, 1),
        regenerations=regen / n,
        lam=lam,
        reward=reward,
        seconds=time.perf_counter() - start,
        episode_correct=correct.copy() if keep_episodes else None,
        episode_strong_tokens=tokens.copy() if keep_episodes else None,
    )
