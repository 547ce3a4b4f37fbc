"""The TRIM-POMDP's own generative process, vectorised over episodes (implements ``EpisodeBatch``).

Each episode samples exactly the model: ``z_1 ~ b0`` (with difficulty classes, the hidden state carries the
query's class, drawn once); per epoch the context (token bucket, ``final``) from
``P(c | t)`` and ``q(t)``, the observation bin from ``P(o | z)``, then the router's action, the reward and the
transition. Scores: ``r_t`` is drawn uniformly inside its sampled bin and so is ``m_t``.

Caveat (a simplification of the TRIM-POMDP, see "The TRIM-POMDP" in ``docs/design.md``): the model draws the
``(r_t, m_t)`` bin given ``z_t`` alone, so the sampled ``m_t`` is in general not the minimum of the earlier
sampled ``r``. The observations returned here therefore carry the model's ``m_t``
(:attr:`ModelObservation.prefix_min`, and :meth:`ModelObservation.row` encodes it as a score history whose
minimum is ``m_t``) and the sampled bin (:attr:`ModelObservation.obs_index`) so that filters see exactly the
model's observation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.pomdp.problem import TrimPOMDP
from trim_pomdp.types import BatchObservation, StepObservation

__all__ = ["ModelObservation", "ModelProcess"]


@dataclass
class ModelObservation(BatchObservation):
    """A :class:`~trim_pomdp.types.BatchObservation` that also carries the model's sampled observation.

    Attributes
    ----------
    m : ndarray (n,)
        The model's ``m_t`` (NaN at ``t = 1``); returned by :attr:`prefix_min`.
    obs_index : ndarray of int (n,)
        The sampled observation bin (first-step bins at ``t = 1``, pair bins after).
    bucket : ndarray of int (n,)
        The sampled token bucket.
    """

    m: np.ndarray = None  # type: ignore[assignment]
    obs_index: np.ndarray = None  # type: ignore[assignment]
    bucket: np.ndarray = None  # type: ignore[assignment]

    @property
    def prefix_min(self) -> np.ndarray:
        return self.m

    def row(self, i: int) -> StepObservation:
        t = int(self.t[i])
        r = float(self.score[i])
        hist = (float(self.m[i]),) * (t - 1) if t > 1 else ()
        return StepObservation(t, (*hist, r), int(self.tokens[i]), bool(self.final[i]))


class ModelProcess:
    """Episodes of the TRIM-POMDP itself, stepped in lock-step.

    Parameters
    ----------
    trim_pomdp : TrimPOMDP

    Attributes
    ----------
    z : ndarray of int (n,)
        Current hidden state of each episode (an index of ``trim_pomdp.hidden_names``; for tests and
        diagnostics, routers must not read it).
    """

    def __init__(self, trim_pomdp: TrimPOMDP):
        self.trim_pomdp = trim_pomdp
        p = trim_pomdp.params
        self.horizon = p.horizon
        self._T = trim_pomdp.transition
        self._cum_first = np.cumsum(trim_pomdp.observation_probs(1), axis=1)
        self._cum_pair = np.cumsum(trim_pomdp.observation_probs(2), axis=1)
        self._cum_bucket = np.cumsum(p.bucket_probs, axis=1)
        self._hazard = p.hazard
        self._strong = p.strong_tokens
        self._z_class = trim_pomdp.z_class
        self._p_s_of = trim_pomdp.p_s_of_state
        self._tokens = self._bucket_tokens()
        obs = trim_pomdp.obs_model
        n = int(obs.n_bins)
        # -- bin edges of r and m (per-axis when the model has them)
        edges = getattr(obs, "edges", None)
        r_edges, m_edges = getattr(obs, "r_edges", edges), getattr(obs, "m_edges", edges)
        self._edges = np.linspace(0, 1, n + 1) if r_edges is None else np.asarray(r_edges, dtype=float)
        self._m_edges = self._edges if m_edges is None else np.asarray(m_edges, dtype=float)
        # -- end of the bin edges
        self._n = n
        self._pair_is_2d = trim_pomdp.observation_probs(2).shape[1] == n * n
        self._rng = np.random.default_rng()
        self._n_ep = 0
        self._correct = np.zeros(0, dtype=bool)
        self._strong_tokens = np.zeros(0)

    def _bucket_tokens(self) -> np.ndarray:
        """An integer token count inside each bucket (nearest to the bucket's mean)."""
        p = self.trim_pomdp.params
        edges = p.bucket_edges
        out = np.empty(p.n_buckets, dtype=np.int64)
        for c in range(p.n_buckets):
            # side="right": a count equal to an edge is above it
            lo = 1 if c == 0 else int(np.ceil(edges[c - 1]))
            hi = int(np.ceil(edges[c]) - 1) if c < edges.size else 10**9
            want = round(float(p.bucket_mean_tokens[c]))
            v = min(max(want, lo), hi)
            if self.trim_pomdp.bucket_of(v) != c:
                raise InvalidParameterError(
                    f"token bucket {c} contains no integer token count (edges {edges.tolist()})"
                )
            out[c] = v
        return out

    @staticmethod
    def _draw(cum_rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.random((cum_rows.shape[0], 1))
        idx = (cum_rows < u).sum(axis=1)
        return np.minimum(idx, cum_rows.shape[1] - 1)

    def _uniform_in_bin(self, b: np.ndarray, edges: np.ndarray | None = None) -> np.ndarray:
        edges = self._edges if edges is None else edges
        lo, hi = edges[b], edges[b + 1]
        return lo + (hi - lo) * self._rng.random(b.shape[0])

    def _new_epoch(self, rows: np.ndarray) -> None:
        """Sample context and observation of the current epoch for ``rows``."""
        rng = self._rng
        t = self.t[rows]
        self.bucket[rows] = self._draw(self._cum_bucket[t - 1], rng)
        self.final[rows] = (rng.random(rows.size) < self._hazard[t - 1]) | (t >= self.horizon)
        first = t == 1
        z = self.z[rows]
        idx = np.empty(rows.size, dtype=np.int64)
        for is_first, cum in ((True, self._cum_first), (False, self._cum_pair)):
            for zz in range(cum.shape[0]):
                sel = np.flatnonzero((first == is_first) & (z == zz))
                if sel.size:
                    u = rng.random(sel.size) * cum[zz, -1]
                    idx[sel] = np.minimum(np.searchsorted(cum[zz], u, side="right"), cum.shape[1] - 1)
        self.obs_index[rows] = idx
        n = self._n
        if self._pair_is_2d:
            ir = np.where(first, idx, idx // n)
            im = np.where(first, 0, idx % n)
        else:
            ir, im = idx, np.zeros_like(idx)
        r = self._uniform_in_bin(ir)
        m = np.where(first, np.nan, self._uniform_in_bin(im, self._m_edges) if self._pair_is_2d else np.nan)
        self.m[rows] = m
        self.scores[rows, t - 1] = r

    def _observation(self) -> ModelObservation:
        return ModelObservation(
            t=self.t.copy(),
            scores=self.scores.copy(),
            tokens=self._tokens[self.bucket],
            final=self.final.copy(),
            active=self.active.copy(),
            m=self.m.copy(),
            obs_index=self.obs_index.copy(),
            bucket=self.bucket.copy(),
        )

    # -- EpisodeBatch ----------------------------------------------------------------------------------------
    def reset(self, n: int, seed: int | None = None) -> ModelObservation:
        """Start ``n`` episodes; returns the epoch-1 observations."""
        if int(n) < 1:
            raise InvalidParameterError(f"n must be >= 1, got {n}")
        n = int(n)
        self._rng = np.random.default_rng(seed)
        self._n_ep = n
        b0 = self.trim_pomdp.b0
        self.z = self._draw(np.broadcast_to(np.cumsum(b0), (n, b0.size)), self._rng)
        self.t = np.ones(n, dtype=np.int64)
        self.bucket = np.zeros(n, dtype=np.int64)
        self.final = np.zeros(n, dtype=bool)
        self.active = np.ones(n, dtype=bool)
        self.scores = np.full((n, self.horizon), np.nan)
        self.m = np.full(n, np.nan)
        self.obs_index = np.zeros(n, dtype=np.int64)
        self._correct = np.zeros(n, dtype=bool)
        self._strong_tokens = np.zeros(n)
        self.regenerations = np.zeros(n, dtype=np.int64)
        self._new_epoch(np.arange(n))
        return self._observation()

    def step(self, actions) -> ModelObservation:
        """Apply one action per episode (ignored for inactive rows); returns the next observations."""
        a = np.asarray(actions, dtype=np.int64).reshape(-1)
        if a.shape != (self._n_ep,):
            raise InvalidParameterError(f"need one action per episode ({self._n_ep}), got shape {a.shape}")
        act = self.active
        if np.any((a[act] < 0) | (a[act] > 1)):
            raise InvalidParameterError("actions must be 0 (continue) or 1 (regenerate)")
        rng = self._rng
        regen = act & (a == 1)
        self._strong_tokens[regen] += self._strong[self.bucket[regen]]
        self.regenerations[regen] += 1
        ending = act & self.final
        if ending.any():
            z = self.z[ending]
            aa = a[ending]
            zc = self._z_class[z]
            ok_cont = (aa == 0) & (zc == 0)
            ok_regen = (aa == 1) & (zc != 1) & (rng.random(z.size) < self._p_s_of[z])
            self._correct[ending] = ok_cont | ok_regen
            self.active[ending] = False
        going = np.flatnonzero(act & ~self.final)
        if going.size:
            rows_T = self._T[a[going], self.z[going]]  # (k, n_hidden)
            self.z[going] = self._draw(np.cumsum(rows_T, axis=1), rng)
            self.t[going] += 1
            self._new_epoch(going)
        return self._observation()

    @property
    def correct(self) -> np.ndarray:
        return self._correct.copy()

    @property
    def strong_tokens(self) -> np.ndarray:
        return self._strong_tokens.copy()
