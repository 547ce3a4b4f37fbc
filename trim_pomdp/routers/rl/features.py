"""Feature maps from step observations to the vectors the learned routers (TRIM-Agg, TRIM-Seq) look at.

Both are *trackers*: ``reset(n)`` per batch of queries, then one call per step with the
:class:`~trim_pomdp.types.BatchObservation`. TRIM-Agg's features depend on the current observation only;
TRIM-Seq's need the token counts of earlier steps, which a step observation does not repeat, so the tracker
remembers them.
"""

from __future__ import annotations

import math

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.types import BatchObservation

__all__ = ["TOKEN_FEATURE_MAX", "TOKEN_SCALE", "AggFeatures", "SeqFeatures", "token_feature"]

#: token counts are encoded as ``log1p(tokens) / log1p(TOKEN_SCALE)`` clipped to ``[0, TOKEN_FEATURE_MAX]``
TOKEN_SCALE = 1000.0
TOKEN_FEATURE_MAX = 2.0


def token_feature(tokens: np.ndarray | float) -> np.ndarray:
    """``log1p(c) / log1p(1000)`` clipped to [0, 2]: 0 for an empty step, 1 for a 1000-token step."""
    c = np.maximum(np.asarray(tokens, dtype=np.float64), 0.0)
    return np.minimum(np.log1p(c) / math.log1p(TOKEN_SCALE), TOKEN_FEATURE_MAX)


class AggFeatures:
    """TRIM-Agg's features ``(r_t, min r_{1:t-1}, c_t, t/H)`` as float32, in [0, 1] except ``c`` (≤ 2).

    At ``t = 1`` there is no earlier step; ``min r_{1:0}`` is taken as 1.0 (the minimum over an empty set,
    with scores bounded by 1: no evidence of an earlier error). ``t/H`` is clipped to 1.

    Parameters
    ----------
    horizon : int
        ``H``, the episode cap (30 in the paper).
    """

    name = "agg"
    dim = 4

    def __init__(self, horizon: int) -> None:
        if int(horizon) < 1:
            raise InvalidParameterError(f"horizon must be an int >= 1, got {horizon!r}")
        self.horizon = int(horizon)
        self.low = np.zeros(4, dtype=np.float32)
        self.high = np.array([1.0, 1.0, TOKEN_FEATURE_MAX, 1.0], dtype=np.float32)
        self.shape: tuple[int, ...] = (4,)

    def reset(self, n: int) -> None:
        """Stateless; present for the tracker interface."""

    def reset_rows(self, rows: np.ndarray) -> None:
        """Stateless; present for the tracker interface."""

    def __call__(self, obs: BatchObservation) -> np.ndarray:
        r = np.nan_to_num(obs.score, nan=0.0)
        m = np.nan_to_num(obs.prefix_min, nan=1.0)
        out = np.empty((obs.n, 4), dtype=np.float32)
        out[:, 0] = np.clip(r, 0.0, 1.0)
        out[:, 1] = np.clip(m, 0.0, 1.0)
        out[:, 2] = token_feature(obs.tokens)
        out[:, 3] = np.clip(obs.t / self.horizon, 0.0, 1.0)
        return out

    def card(self) -> dict:
        return {
            "name": self.name,
            "columns": [
                "r_t",
                "min_r_1_to_t_minus_1 (1.0 at t=1)",
                "log1p(c_t)/log1p(1000) clipped to [0,2]",
                "t/H",
            ],
            "horizon": self.horizon,
        }


class SeqFeatures:
    """TRIM-Seq's padded sequence ``((r_1, c_1), …, (r_t, c_t))`` as a float32 array of shape ``(H, 3)``.

    Row ``i`` holds ``(r_{i+1}, token_feature(c_{i+1}), 1)`` for ``i < t`` and zeros after (the third column
    is the validity mask). ``c_i`` for an earlier step is the token count of M_w's proposal at that step (the
    count the router was shown), also where M_s regenerated it.
    """

    name = "seq"

    def __init__(self, horizon: int) -> None:
        if int(horizon) < 1:
            raise InvalidParameterError(f"horizon must be an int >= 1, got {horizon!r}")
        self.horizon = int(horizon)
        self.shape = (self.horizon, 3)
        self.low = np.zeros(self.shape, dtype=np.float32)
        self.high = np.broadcast_to(
            np.array([1.0, TOKEN_FEATURE_MAX, 1.0], dtype=np.float32), self.shape
        ).copy()
        self._tok = np.zeros((0, self.horizon), dtype=np.float32)

    def reset(self, n: int) -> None:
        """Start ``n`` new episodes (forget every earlier token count)."""
        self._tok = np.zeros((int(n), self.horizon), dtype=np.float32)

    def reset_rows(self, rows: np.ndarray) -> None:
        """Start new episodes in ``rows`` only (a vectorised environment restarting finished episodes)."""
        self._tok[np.asarray(rows, dtype=np.int64)] = 0.0

    def __call__(self, obs: BatchObservation) -> np.ndarray:
        n, H = obs.n, self.horizon
        if self._tok.shape[0] != n:
            raise InvalidParameterError(
                f"SeqFeatures was reset for {self._tok.shape[0]} rows, got {n}: call reset(n)"
            )
        t = np.clip(obs.t, 1, H)
        rows = np.arange(n)
        self._tok[rows, t - 1] = np.where(obs.active, token_feature(obs.tokens), self._tok[rows, t - 1])
        cols = np.arange(H)[None, :]
        valid = cols < t[:, None]
        scores = obs.scores[:, :H]
        if scores.shape[1] < H:
            scores = np.pad(scores, ((0, 0), (0, H - scores.shape[1])), constant_values=np.nan)
        out = np.zeros((n, H, 3), dtype=np.float32)
        out[:, :, 0] = np.where(valid, np.clip(np.nan_to_num(scores, nan=0.0), 0.0, 1.0), 0.0)
        out[:, :, 1] = np.where(valid, self._tok, 0.0)
        out[:, :, 2] = valid
        return out

    def card(self) -> dict:
        return {
            "name": self.name,
            "columns": ["r_i", "log1p(c_i)/log1p(1000) clipped to [0,2]", "valid"],
            "horizon": self.horizon,
        }
