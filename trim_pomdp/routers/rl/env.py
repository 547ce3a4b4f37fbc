"""A gymnasium environment over any :class:`~trim_pomdp.types.EpisodeBatch` source, for RL-trained routers.

One environment episode is one query. Each step the agent sees the features of the current proposal
(TRIM-Agg's ``(r_t, min r_{1:t-1}, c_t, t/H)`` by default, or TRIM-Seq's padded sequence) and answers 0 =
continue or 1 = regenerate. The reward is the paper's return split over steps: ``-lam`` times the M_s tokens
the step spent, plus ``R`` when the episode ends with a correct answer. Episodes come from the source (the
TRIM model's own generative process, the evaluation simulator, recorded runs), which is reset with one row per
episode and a seed drawn from the environment's own generator, so ``env.reset(seed=s)`` makes a run
reproducible.

Requires ``gymnasium`` (``pip install 'trim-pomdp[rl]'``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.routers.rl.features import AggFeatures, SeqFeatures
from trim_pomdp.types import EpisodeBatch

gym = require("gymnasium", "rl", "the router training environment")
spaces = gym.spaces
_GymEnv: Any = gym.Env  # gymnasium is imported at run time (an optional dependency)

__all__ = ["RoutingEnv", "is_source_factory", "make_features"]

SourceLike = EpisodeBatch | Callable[[], EpisodeBatch]


def make_features(name: str, horizon: int) -> AggFeatures | SeqFeatures:
    """The feature tracker called ``name`` (``"agg"`` or ``"seq"``)."""
    if name == "agg":
        return AggFeatures(horizon)
    if name == "seq":
        return SeqFeatures(horizon)
    raise InvalidParameterError(f"features must be 'agg' or 'seq', got {name!r}")


def is_source_factory(obj: Any) -> bool:
    """Whether ``obj`` builds sources (a class or a callable without ``step``) rather than being one."""
    return callable(obj) and (isinstance(obj, type) or not hasattr(obj, "step"))


def _looks_like_source(obj: Any) -> bool:
    # not isinstance(obj, EpisodeBatch): that evaluates the properties, which a fresh source may not have yet
    return all(callable(getattr(obj, name, None)) for name in ("reset", "step")) and hasattr(obj, "horizon")


class RoutingEnv(_GymEnv):
    """Step-level routing as a gymnasium environment.

    Parameters
    ----------
    source : EpisodeBatch or callable returning one
        Where episodes come from. A callable is called once, so that each environment of a vectorised set owns
        its source.
    lam : float
        Cost per M_s output token.
    reward : float, default=1.0
        ``R`` for a correct final answer.
    features : {"agg", "seq"}, default="agg"
        Observation features (see :mod:`trim_pomdp.routers.rl.features`).
    max_steps : int, optional
        Safety cap on the steps of one episode (default: ``source.horizon + 1``); hitting it truncates the
        episode.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        source: SourceLike,
        lam: float,
        *,
        reward: float = 1.0,
        features: str = "agg",
        max_steps: int | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(lam, (int, float, np.floating)) and math.isfinite(lam) and lam >= 0):
            raise InvalidParameterError(f"lam must be a finite float >= 0, got {lam!r}")
        if not (isinstance(reward, (int, float, np.floating)) and math.isfinite(reward)):
            raise InvalidParameterError(f"reward must be a finite float, got {reward!r}")
        src: Any = source() if callable(source) and is_source_factory(source) else source
        if not _looks_like_source(src):
            raise InvalidParameterError(
                f"source must implement trim_pomdp.types.EpisodeBatch (or be a callable returning one), "
                f"got {type(src).__name__}"
            )
        self.source: EpisodeBatch = src
        self.lam = float(lam)
        self.reward = float(reward)
        self.horizon = int(src.horizon)
        self.features = make_features(features, self.horizon)
        self.max_steps = int(max_steps) if max_steps is not None else self.horizon + 1
        self.observation_space = spaces.Box(self.features.low, self.features.high, dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self._last_obs = np.zeros(self.features.shape, dtype=np.float32)
        self._spent = 0.0
        self._steps = 0
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(0, 2**31 - 1))
        obs = self.source.reset(1, seed=episode_seed)
        self.features.reset(1)
        self._last_obs = self.features(obs)[0]
        self._spent = float(np.asarray(self.source.strong_tokens, dtype=float)[0])
        self._steps = 0
        self._done = not bool(obs.active[0])
        if self._done:
            raise InvalidParameterError(
                "the episode source returned an episode that is already over at reset"
            )
        return self._last_obs.copy(), {"t": int(obs.t[0])}

    def step(self, action):
        if self._done:
            raise RuntimeError("step() called on a finished episode: call reset() first")
        a = int(action)
        if a not in (0, 1):
            raise InvalidParameterError(f"action must be 0 (continue) or 1 (regenerate), got {action!r}")
        obs = self.source.step(np.array([a], dtype=np.int64))
        self._steps += 1
        spent = float(np.asarray(self.source.strong_tokens, dtype=float)[0])
        step_cost = spent - self._spent
        self._spent = spent
        reward = -self.lam * step_cost
        terminated = not bool(obs.active[0])
        info: dict[str, Any] = {"strong_tokens": spent}
        if terminated:
            correct = bool(np.asarray(self.source.correct)[0])
            reward += self.reward * correct
            info["correct"] = correct
        else:
            self._last_obs = self.features(obs)[0]
        truncated = (not terminated) and self._steps >= self.max_steps
        self._done = terminated or truncated
        return self._last_obs.copy(), float(reward), terminated, truncated, info
