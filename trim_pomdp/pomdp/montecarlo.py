"""Vectorised Monte Carlo evaluation of a policy or batch router on any ``EpisodeBatch``."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.pomdp.belief import BeliefFilter
from trim_pomdp.pomdp.policy import TrimPolicy

__all__ = ["MCResult", "PolicyBatchRouter", "monte_carlo"]


@dataclass
class MCResult:
    """Monte Carlo estimates with standard errors (``*_se``).

    ``accuracy`` is the fraction of episodes ending correct, ``strong_tokens`` the mean M_s tokens per
    episode, ``ret`` the mean return ``R · correct − λ · strong_tokens``; ``regenerations`` the mean number
    per episode.
    """

    accuracy: float
    accuracy_se: float
    strong_tokens: float
    strong_tokens_se: float
    ret: float
    ret_se: float
    regenerations: float
    n: int
    lam: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PolicyBatchRouter:
    """A :class:`TrimPolicy` plus a :class:`BeliefFilter` as a ``BatchRouter`` (belief tracking per episode).

    Uses the observation's ``obs_index`` (exact model bins from :class:`ModelProcess`) when present, else bins
    the raw scores with the observation model.
    """

    def __init__(self, policy: TrimPolicy, trim_pomdp: Any, floor: float | None = None):
        self.policy = policy
        self.trim_pomdp = trim_pomdp
        self.filter = BeliefFilter(trim_pomdp, floor=floor)

    def reset_batch(self, n: int) -> None:
        self.pred = np.broadcast_to(self.filter.prior(), (n, 3)).copy()
        self.post = self.pred.copy()

    def decide_batch(self, obs) -> np.ndarray:
        act = np.asarray(obs.active, dtype=bool)
        rows = np.flatnonzero(act)
        out = np.zeros(obs.n, dtype=np.int64)
        if rows.size == 0:
            return out
        t = np.asarray(obs.t)[rows]
        idx = getattr(obs, "obs_index", None)
        if idx is not None:
            post = self.filter.update_index_batch(self.pred[rows], t, np.asarray(idx)[rows])
        else:
            post = self.filter.update_batch(self.pred[rows], t, obs.score[rows], obs.prefix_min[rows])
        bucket = getattr(obs, "bucket", None)
        bucket = (
            np.asarray(bucket)[rows]
            if bucket is not None
            else self.trim_pomdp.bucket_of(np.asarray(obs.tokens)[rows])
        )
        a = self.policy.action_batch(t, bucket, np.asarray(obs.final)[rows], post)
        out[rows] = a
        self.post[rows] = post
        self.pred[rows] = self.filter.predict_batch(post, a)
        return out


def monte_carlo(
    policy_or_router: Any,
    episode_source: Any,
    n: int = 100_000,
    seed: int | None = 0,
    lam: float | None = None,
    reward: float | None = None,
    trim_pomdp: Any = None,
) -> MCResult:
    """Estimate accuracy, strong tokens and return of a policy or batch router by simulation.

    Parameters
    ----------
    policy_or_router : TrimPolicy or BatchRouter
        A :class:`TrimPolicy` is run with a :class:`BeliefFilter` on ``trim_pomdp`` (default: the episode
        source's ``trim_pomdp`` attribute, else the policy's own model).
    episode_source : EpisodeBatch
        E.g. :class:`~trim_pomdp.pomdp.process.ModelProcess` (the model's own process) or a simulator.
    n : int
        Number of episodes.
    seed : int, optional
    lam, reward : float, optional
        λ and R of the return; default from the policy / the source's model parameters.
    """
    if int(n) < 2:
        raise InvalidParameterError(f"n must be >= 2 episodes to estimate standard errors, got {n}")
    start = time.perf_counter()
    model = trim_pomdp or getattr(episode_source, "trim_pomdp", None)
    if isinstance(policy_or_router, TrimPolicy):
        if model is None:
            model = policy_or_router.trim_pomdp()
        router = PolicyBatchRouter(policy_or_router, model)
        lam = policy_or_router.lam if lam is None else lam
    else:
        router = policy_or_router
        for meth in ("reset_batch", "decide_batch"):
            if not hasattr(router, meth):
                raise InvalidParameterError(
                    f"{type(router).__name__} is neither a TrimPolicy nor a BatchRouter ({meth})"
                )
    params = getattr(model, "params", None)
    if lam is None:
        lam = getattr(router, "lam", None)
        if lam is None and params is not None:
            lam = params.lam
        if lam is None:
            raise InvalidParameterError("pass lam=... (the price per strong token) to compute the return")
    if reward is None:
        reward = params.reward if params is not None else 1.0
    n = int(n)
    obs = episode_source.reset(n, seed=seed)
    router.reset_batch(n)
    for _ in range(episode_source.horizon + 1):
        if not np.any(obs.active):
            break
        a = router.decide_batch(obs)
        obs = episode_source.step(a)
    if np.any(obs.active):
        raise InvalidParameterError("episodes did not finish within the horizon")
    correct = np.asarray(episode_source.correct, dtype=float)
    tokens = np.asarray(episode_source.strong_tokens, dtype=float)
    ret = reward * correct - float(lam) * tokens
    regen = getattr(episode_source, "regenerations", None)

    def se(x):
        return float(x.std(ddof=1) / math.sqrt(len(x)))

    return MCResult(
        accuracy=float(correct.mean()),
        accuracy_se=se(correct),
        strong_tokens=float(tokens.mean()),
        strong_tokens_se=se(tokens),
        ret=float(ret.mean()),
        ret_se=se(ret),
        regenerations=float(np.mean(regen)) if regen is not None else float("nan"),
        n=n,
        lam=float(lam),
        seconds=time.perf_counter() - start,
    )
