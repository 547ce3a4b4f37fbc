"""TRIM-Thr: the myopic threshold router (paper §4.1, eq. 4.1).

Regenerate the proposed step with the strong model iff its PRM score is below a threshold ``k``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trim_pomdp.constants import ACTIONS, CONTINUE, REGENERATE
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.types import BatchObservation, StepObservation

__all__ = ["ThresholdRouter"]


class ThresholdRouter:
    """Regenerate iff ``r_t < k`` (TRIM-Thr).

    Parameters
    ----------
    k : float
        Threshold on the PRM score of the newest step. ``k = 0`` never regenerates; any ``k > 1`` always does.
        Sweeping ``k`` over ``[0, 1]`` traces the router's cost–accuracy curve.

    Attributes
    ----------
    last_decision : dict
        ``{"t", "score", "k", "action"}`` of the last :meth:`decide` call.

    Examples
    --------
    >>> from trim_pomdp.types import StepObservation
    >>> router = ThresholdRouter(0.5)
    >>> router.reset()
    >>> router.decide(StepObservation(1, (0.3,), 120, False))
    'regenerate'
    """

    def __init__(self, k: float) -> None:
        try:
            k = float(k)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(
                f"ThresholdRouter's 'k' must be a float in [0, 1], got {k!r}"
            ) from exc
        if not math.isfinite(k):
            raise InvalidParameterError(f"ThresholdRouter's 'k' must be a finite float in [0, 1], got {k!r}")
        self.k = k
        self._last: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"ThresholdRouter(k={self.k!r})"

    # -- Router -----
    def reset(self) -> None:
        """Start a new query (the router is stateless; this only clears :attr:`last_decision`)."""
        self._last = {}

    def decide(self, obs: StepObservation) -> str:
        """``"regenerate"`` if ``obs.score < k`` else ``"continue"``."""
        score = obs.score
        action = REGENERATE if score < self.k else CONTINUE
        self._last = {"t": obs.t, "score": score, "k": self.k, "action": ACTIONS[action]}
        return ACTIONS[action]

    @property
    def last_decision(self) -> dict[str, Any]:
        return dict(self._last)

    # -- BatchRouter -----
    def reset_batch(self, n: int) -> None:
        """Start ``n`` parallel queries (stateless: nothing to do)."""

    def decide_batch(self, obs: BatchObservation) -> np.ndarray:
        """Actions (0 = continue, 1 = regenerate) for every row; inactive rows get 0."""
        score = obs.score
        with np.errstate(invalid="ignore"):
            regen = (score < self.k) & obs.active
        return regen.astype(np.int64)
