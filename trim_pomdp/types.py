"""Shared step-level data types: what a router sees at each step, and the batched episode protocol.

These sit in the bottom layer so that the TRIM model's own generative process, the evaluation simulator,
recorded runs and the live generation loop all speak the same language to routers.

Conventions: epochs ``t`` are 1-based (``t = 1`` is the first step); scores are PRM probabilities in [0, 1];
``tokens`` is the token count of M_w's proposed step; actions are ints (0 = continue, 1 = regenerate, see
:mod:`trim_pomdp.constants`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["BatchObservation", "EpisodeBatch", "StepObservation"]


@dataclass(frozen=True)
class StepObservation:
    """What a step-level router is given at epoch ``t`` of one query.

    Attributes
    ----------
    t : int
        1-based index of the proposed step.
    scores : tuple of float
        PRM scores ``r_1 … r_t`` of the current prefix plus the proposal (``scores[-1]`` is ``r_t``). Earlier
        entries are the scores of the steps actually accepted (a regenerated step carries its own new score).
    tokens : int
        Token count ``c_t`` of M_w's proposed step.
    final : bool
        Whether the proposal ends the solution (EOS or a boxed answer).
    """

    t: int
    scores: tuple[float, ...]
    tokens: int
    final: bool

    def __post_init__(self) -> None:
        if self.t < 1:
            raise ValueError(f"t is 1-based, got {self.t}")
        if len(self.scores) != self.t:
            raise ValueError(f"scores must hold r_1..r_t ({self.t} values), got {len(self.scores)}")

    @property
    def score(self) -> float:
        """``r_t``, the score of the newest step."""
        return float(self.scores[-1])

    @property
    def prefix_min(self) -> float | None:
        """``m_t = min(r_1 … r_{t-1})``, or ``None`` at ``t = 1``."""
        return float(min(self.scores[:-1])) if self.t > 1 else None


@dataclass
class BatchObservation:
    """The step observations of ``n`` parallel episodes (vectorised form of :class:`StepObservation`).

    Arrays have length ``n``; ``scores`` has shape ``(n, H)`` with ``r_1 … r_t`` in columns ``0 … t-1`` and NaN after.
    Rows with ``active == False`` have finished; their other fields are meaningless.
    """

    t: np.ndarray  # int (n,), 1-based
    scores: np.ndarray  # float (n, H)
    tokens: np.ndarray  # int (n,)
    final: np.ndarray  # bool (n,)
    active: np.ndarray  # bool (n,)

    @property
    def n(self) -> int:
        return int(self.t.shape[0])

    @property
    def score(self) -> np.ndarray:
        """``r_t`` per episode."""
        idx = np.clip(self.t - 1, 0, self.scores.shape[1] - 1)
        return self.scores[np.arange(self.n), idx]

    @property
    def prefix_min(self) -> np.ndarray:
        """``min(r_1 … r_{t-1})`` per episode; NaN where ``t = 1``."""
        H = self.scores.shape[1]
        cols = np.arange(H)[None, :]
        masked = np.where(cols < (self.t - 1)[:, None], self.scores, np.inf)
        out = masked.min(axis=1)
        return np.where(self.t > 1, out, np.nan)

    def row(self, i: int) -> StepObservation:
        """The :class:`StepObservation` of episode ``i``."""
        t = int(self.t[i])
        return StepObservation(
            t, tuple(float(x) for x in self.scores[i, :t]), int(self.tokens[i]), bool(self.final[i])
        )


@runtime_checkable
class EpisodeBatch(Protocol):
    """A source of episodes, stepped in lock-step for ``n`` queries at once.

    Implemented by the TRIM model's own generative process, the evaluation simulator and replays of recorded
    runs; consumed by routers' vectorised evaluation and by the RL training environment.

    ``reset`` starts ``n`` new episodes and returns their first observation. ``step`` applies one action per
    episode (ignored for inactive rows) and returns the next observation. When an episode ends, its row becomes
    inactive and ``correct`` / ``strong_tokens`` hold its outcome.
    """

    horizon: int

    def reset(self, n: int, seed: int | None = None) -> BatchObservation: ...

    def step(self, actions: np.ndarray) -> BatchObservation: ...

    @property
    def correct(self) -> np.ndarray:
        """Per-episode final correctness (bool); meaningful once the row is inactive."""
        ...

    @property
    def strong_tokens(self) -> np.ndarray:
        """Per-episode M_s output tokens spent so far (float or int)."""
        ...
