"""Many routing episodes in flight for PPO: one vectorised environment over one episode source.

stable-baselines3's :class:`~stable_baselines3.common.vec_env.DummyVecEnv` steps ``n`` single-episode
environments one after another, so a source is called ``n`` times per step with one row each. The sources here
are batched (one call steps every row: numpy for the simulator and the model's own process, one round of
concurrent requests for live generations), so :class:`EpisodeVecEnv` keeps all ``n`` episodes in **one** source
and steps them with one call. When an episode ends, its row restarts at once with a new episode:

- a source with ``reset_rows(rows, seed)`` (the live episodes of :mod:`trim_pomdp.generation.episodes`) restarts
  those rows itself;
- any other :class:`~trim_pomdp.types.EpisodeBatch` is wrapped in :class:`CohortSource`: the rows that end at
  the same step start their next episodes together as a new *cohort* (a fresh or recycled source reset with
  that many rows), and every live cohort is stepped once per step.

The reward is that of :class:`~trim_pomdp.routers.rl.env.RoutingEnv`: ``-λ`` times the M_s tokens a step
spent, plus ``R`` for a correct end. A row that a source marks ``failed`` (a live problem whose model calls
failed after their retries) ends *truncated*, without a terminal reward, so PPO bootstraps its value instead of
learning from an outcome that never happened.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.routers.rl.env import make_features
from trim_pomdp.types import BatchObservation, EpisodeBatch

__all__ = ["CohortSource", "EpisodeVecEnv", "restarts_rows"]

_vec_env = require("stable_baselines3.common.vec_env", "rl", "the vectorised training environment")
gym = require("gymnasium", "rl", "the vectorised training environment")
_VecEnv: Any = _vec_env.VecEnv


def restarts_rows(source: Any) -> bool:
    """Whether ``source`` restarts single rows itself (has a callable ``reset_rows``)."""
    return callable(getattr(source, "reset_rows", None))


@dataclass
class _Cohort:
    """Episodes started together in one source; ``rows`` are the slots they fill."""

    source: Any
    rows: np.ndarray
    ident: int


class CohortSource:
    """An :class:`~trim_pomdp.types.EpisodeBatch` factory as a source whose rows restart one by one.

    Parameters
    ----------
    factory : callable
        Returns a fresh source; called when no finished cohort's source can be reused.
    first : EpisodeBatch, optional
        A source ``factory`` already built (default: one is built here).
    """

    def __init__(self, factory: Callable[[], EpisodeBatch], first: EpisodeBatch | None = None) -> None:
        self._factory = factory
        first = first if first is not None else factory()
        self.horizon = int(first.horizon)
        #: the class name of the sources, for cards
        self.kind = type(first).__name__
        self._idle: list[Any] = [first]
        self._cohorts: list[_Cohort] = []
        self._next_id = 0
        self._alloc(0)

    def _alloc(self, n: int) -> None:
        self.n = int(n)
        self._t = np.ones(n, dtype=np.int64)
        self._scores = np.full((n, self.horizon), np.nan)
        self._tokens = np.zeros(n, dtype=np.int64)
        self._final = np.zeros(n, dtype=bool)
        self._active = np.zeros(n, dtype=bool)
        self._correct = np.zeros(n, dtype=bool)
        self._strong = np.zeros(n, dtype=float)
        self._owner = np.full(n, -1, dtype=np.int64)

    @property
    def cohorts(self) -> int:
        """Cohorts with episodes still running."""
        return len(self._cohorts)

    def reset(self, n: int, seed: int | None = None) -> BatchObservation:
        """Start ``n`` episodes in one cohort."""
        self._idle.extend(c.source for c in self._cohorts)
        self._cohorts = []
        self._alloc(n)
        self._start(np.arange(self.n), seed)
        return self._obs()

    def reset_rows(self, rows: np.ndarray, seed: int | None = None) -> BatchObservation:
        """Start new episodes in ``rows`` (one new cohort); the other rows are left as they are."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size:
            self._start(rows, seed)
        return self._obs()

    def step(self, actions: np.ndarray) -> BatchObservation:
        a = np.asarray(actions, dtype=np.int64).reshape(self.n)
        for c in list(self._cohorts):
            own = self._owner[c.rows] == c.ident
            # a row whose slot was restarted elsewhere (a truncated episode) keeps continuing to its end here
            obs = c.source.step(np.where(own, a[c.rows], 0))
            self._write(c, obs)
            if not obs.active.any():
                self._cohorts.remove(c)
                self._idle.append(c.source)
        return self._obs()

    @property
    def correct(self) -> np.ndarray:
        return self._correct.copy()

    @property
    def strong_tokens(self) -> np.ndarray:
        return self._strong.copy()

    def _start(self, rows: np.ndarray, seed: int | None) -> None:
        src = self._idle.pop() if self._idle else self._factory()
        obs = src.reset(int(rows.size), seed=seed)
        cohort = _Cohort(src, rows.copy(), self._next_id)
        self._next_id += 1
        self._owner[rows] = cohort.ident
        self._cohorts.append(cohort)
        self._write(cohort, obs)

    def _write(self, c: _Cohort, obs: BatchObservation) -> None:
        own = self._owner[c.rows] == c.ident
        slots, src_rows = c.rows[own], np.flatnonzero(own)
        width = min(obs.scores.shape[1], self.horizon)
        self._t[slots] = obs.t[src_rows]
        self._scores[slots] = np.nan
        self._scores[slots, :width] = obs.scores[src_rows, :width]
        self._tokens[slots] = obs.tokens[src_rows]
        self._final[slots] = obs.final[src_rows]
        self._active[slots] = obs.active[src_rows]
        self._correct[slots] = np.asarray(c.source.correct, dtype=bool)[src_rows]
        self._strong[slots] = np.asarray(c.source.strong_tokens, dtype=float)[src_rows]

    def _obs(self) -> BatchObservation:
        return BatchObservation(
            self._t.copy(), self._scores.copy(), self._tokens.copy(), self._final.copy(), self._active.copy()
        )


class EpisodeVecEnv(_VecEnv):
    """``n_envs`` routing episodes of one source, stepped together (a stable-baselines3 ``VecEnv``).

    Parameters
    ----------
    source : EpisodeBatch, or a callable returning one
        A source with ``reset_rows`` is used as it is (an instance, or a callable returning one). Any other
        source must be given as a callable (a class or factory), which :class:`CohortSource` calls for each
        cohort.
    n_envs : int
        Episodes in flight.
    lam, reward, features :
        As for :class:`~trim_pomdp.routers.rl.env.RoutingEnv`.
    seed : int, optional
        Seeds the episodes (one seed per reset drawn from a generator seeded with it); PPO's ``seed`` resets it.
    max_steps : int, optional
        Safety cap on the steps of one episode (default ``horizon + 1``); reaching it truncates the episode.
    """

    def __init__(
        self,
        source: Any,
        n_envs: int,
        lam: float,
        *,
        reward: float = 1.0,
        features: str = "agg",
        seed: int | None = None,
        max_steps: int | None = None,
    ) -> None:
        if not (isinstance(lam, (int, float, np.floating)) and math.isfinite(lam) and lam >= 0):
            raise InvalidParameterError(f"lam must be a finite float >= 0, got {lam!r}")
        if int(n_envs) < 1:
            raise InvalidParameterError(f"n_envs must be >= 1, got {n_envs!r}")
        self.source = _as_row_source(source)
        self.lam, self.reward = float(lam), float(reward)
        self.horizon = int(self.source.horizon)
        self.features = make_features(features, self.horizon)
        self.max_steps = int(max_steps) if max_steps is not None else self.horizon + 1
        n = int(n_envs)
        space = gym.spaces.Box(self.features.low, self.features.high, dtype=np.float32)
        super().__init__(n, space, gym.spaces.Discrete(2))
        self._rng = np.random.default_rng(seed)
        self._actions = np.zeros(n, dtype=np.int64)
        self._feat = np.zeros((n, *self.features.shape), dtype=np.float32)
        self._spent = np.zeros(n)
        self._ret = np.zeros(n)
        self._len = np.zeros(n, dtype=np.int64)
        self._t0 = time.perf_counter()
        self.episodes = 0

    # -- VecEnv -----
    def seed(self, seed: int | None = None) -> list[int | None]:
        self._rng = np.random.default_rng(seed)
        return [seed] * self.num_envs

    def _draw(self) -> int:
        return int(self._rng.integers(0, 2**31 - 1))

    def reset(self) -> np.ndarray:
        obs = self.source.reset(self.num_envs, seed=self._draw())
        if not np.asarray(obs.active, dtype=bool).all():
            raise InvalidParameterError(
                "the episode source returned an episode that is already over at reset"
            )
        self.features.reset(self.num_envs)
        self._spent = np.asarray(self.source.strong_tokens, dtype=float).copy()
        self._ret[:] = 0.0
        self._len[:] = 0
        self._feat = self.features(obs)
        return self._feat.copy()

    def step_async(self, actions: np.ndarray) -> None:
        a = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        if ((a != 0) & (a != 1)).any():
            raise InvalidParameterError(f"actions must be 0 (continue) or 1 (regenerate), got {a.tolist()}")
        self._actions = a

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs = self.source.step(self._actions)
        spent = np.asarray(self.source.strong_tokens, dtype=float)
        reward = -self.lam * (spent - self._spent)
        self._spent = spent.copy()
        self._len += 1
        ended = ~np.asarray(obs.active, dtype=bool)
        failed = ended & np.asarray(getattr(self.source, "failed", np.zeros(self.num_envs, bool)), dtype=bool)
        correct = np.asarray(self.source.correct, dtype=bool)
        terminated = ended & ~failed
        reward[terminated] += self.reward * correct[terminated]
        capped = ~ended & (self._len >= self.max_steps)
        self._ret += reward
        done = ended | capped
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        rows = np.flatnonzero(done)
        for i in rows:
            info = infos[i]
            info["terminal_observation"] = self._feat[i].copy()
            info["episode"] = {
                "r": float(self._ret[i]),
                "l": int(self._len[i]),
                "t": time.perf_counter() - self._t0,
            }
            if terminated[i]:
                info["correct"] = bool(correct[i])
            info["strong_tokens"] = float(spent[i])
            if failed[i] or capped[i]:
                info["TimeLimit.truncated"] = True
        if rows.size:
            self.episodes += int(rows.size)
            self.features.reset_rows(rows)
            obs = self.source.reset_rows(rows, seed=self._draw())
            fresh = np.asarray(self.source.strong_tokens, dtype=float)
            self._spent[rows] = fresh[rows]
            self._ret[rows] = 0.0
            self._len[rows] = 0
        self._feat = self.features(obs)
        return self._feat.copy(), reward.astype(np.float32), done, infos

    def close(self) -> None:
        """Nothing to release: the source belongs to the caller (a live source is closed by whoever opened it)."""

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        value = None if attr_name == "render_mode" else getattr(self, attr_name)
        return [value] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
    ) -> list[Any]:
        raise NotImplementedError("EpisodeVecEnv has no per-environment methods")

    def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [int(indices)] if isinstance(indices, (int, np.integer)) else list(indices)


def _as_row_source(source: Any) -> Any:
    """The source whose rows restart one by one: ``source`` (or what it builds) or a :class:`CohortSource`."""
    from trim_pomdp.routers.rl.env import is_source_factory

    if restarts_rows(source):
        return source
    if not is_source_factory(source):
        raise InvalidParameterError(
            "pass a callable that builds a fresh episode source (e.g. lambda: ModelProcess(model)), not a "
            "single source instance: the vectorised environment starts a source per cohort of episodes"
        )
    first = source()
    return first if restarts_rows(first) else CohortSource(source, first)
