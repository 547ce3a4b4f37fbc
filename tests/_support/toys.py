"""A tiny self-contained EpisodeBatch used by the router tests (independent of trim_pomdp.pomdp).

Hidden classes follow the TRIM-POMDP (S0/S1/S2, continue/regenerate dynamics, final-step reward); PRM scores are
Beta draws per class, so low scores mean errors and a router that regenerates low-score steps should gain
accuracy.
"""

from __future__ import annotations

import numpy as np

from trim_pomdp.types import BatchObservation

BETA = {0: (6.0, 1.5), 1: (2.0, 3.0), 2: (1.5, 5.0)}


class ToyProcess:
    def __init__(self, horizon: int = 8, p_w: float = 0.8, p_s: float = 0.97, hazard: float = 0.2):
        self.horizon, self.p_w, self.p_s, self.hazard = horizon, p_w, p_s, hazard
        self._n = 0

    def _scores(self, z: np.ndarray) -> np.ndarray:
        a = np.select([z == 0, z == 1, z == 2], [BETA[0][0], BETA[1][0], BETA[2][0]])
        b = np.select([z == 0, z == 1, z == 2], [BETA[0][1], BETA[1][1], BETA[2][1]])
        return self.rng.beta(a, b)

    def _obs(self) -> BatchObservation:
        return BatchObservation(
            self.t.copy(), self.S.copy(), self.tok.copy(), self.fin.copy(), self.act.copy()
        )

    def reset(self, n: int, seed: int | None = None) -> BatchObservation:
        self.rng = np.random.default_rng(seed)
        self._n = n
        H = self.horizon
        self.z = np.where(self.rng.random(n) < self.p_w, 0, 2)
        self.t = np.ones(n, dtype=np.int64)
        self.S = np.full((n, H), np.nan)
        self.S[:, 0] = self._scores(self.z)
        self.tok = self.rng.integers(20, 300, size=n)
        self.fin = (self.rng.random(n) < self.hazard) | (H == 1)
        self.act = np.ones(n, dtype=bool)
        self._correct = np.zeros(n, dtype=bool)
        self._spent = np.zeros(n)
        return self._obs()

    def step(self, actions: np.ndarray) -> BatchObservation:
        a = np.asarray(actions).astype(bool) & self.act
        rows = np.flatnonzero(self.act)
        self._spent[a] += self.tok[a]
        strong_ok = self.rng.random(self._n) < self.p_s
        ok_prefix = self.z != 1
        # correctness of the step actually kept at t
        step_ok = np.where(a, ok_prefix & strong_ok, self.z == 0)
        ending = self.act & (self.fin | (self.t >= self.horizon))
        self._correct[ending] = step_ok[ending]
        self.act[ending] = False
        go = np.intersect1d(rows, np.flatnonzero(~ending))
        if go.size:
            # a regenerated step carries its own (new) score
            regen = go[a[go]]
            self.S[regen, self.t[regen] - 1] = self._scores(np.where(step_ok[regen], 0, 2))
            prev_ok = step_ok[go]
            nxt_ok = self.rng.random(go.size) < self.p_w
            self.z[go] = np.where(prev_ok, np.where(nxt_ok, 0, 2), 1)
            self.t[go] += 1
            self.S[go, self.t[go] - 1] = self._scores(self.z[go])
            self.tok[go] = self.rng.integers(20, 300, size=go.size)
            self.fin[go] = (self.rng.random(go.size) < self.hazard) | (self.t[go] >= self.horizon)
        return self._obs()

    @property
    def correct(self) -> np.ndarray:
        return self._correct.copy()

    @property
    def strong_tokens(self) -> np.ndarray:
        return self._spent.copy()


def small_obs_model(n_bins: int = 5):
    """A binned observation model with informative class-conditional Beta scores (no artifact)."""
    from scipy import stats

    from trim_pomdp.observation_models.observation import ObservationModel

    edges = np.linspace(0.0, 1.0, n_bins + 1)

    def mass(a, b):
        p = np.diff(stats.beta(a, b).cdf(edges))
        return p / p.sum()

    r_dist = {0: mass(5.0, 1.5), 1: mass(2.0, 2.5), 2: mass(1.5, 4.0)}
    m_dist = {0: mass(5.0, 1.5), 1: mass(1.5, 3.0), 2: mass(4.0, 1.5)}
    pair = np.stack([np.outer(r_dist[z], m_dist[z]) for z in range(3)])
    first = np.stack([r_dist[z] for z in range(3)])
    return ObservationModel.from_probs(pair, first, edges, card={"toy": True})


def small_trim(horizon: int = 6, n_bins: int = 5, lam: float = 5e-4, p_w: float = 0.8, p_s: float = 0.95):
    """A small TRIM-POMDP (2 token buckets) for router tests."""
    from trim_pomdp.pomdp.params import TrimParams
    from trim_pomdp.pomdp.problem import build_trim_pomdp

    params = TrimParams(
        p_w=p_w,
        p_s=p_s,
        horizon=horizon,
        bucket_edges=[100.0],
        bucket_probs=np.tile([0.5, 0.5], (horizon, 1)),
        hazard=np.full(horizon, 0.2),
        bucket_mean_tokens=[60.0, 200.0],
        lam=lam,
        discount=0.999,
    )
    return build_trim_pomdp(params, small_obs_model(n_bins))
