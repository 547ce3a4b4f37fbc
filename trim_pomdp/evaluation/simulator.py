"""An offline simulator of stepwise routing — deliberately *not* the TRIM-POMDP.

Every output of this module is **simulated**: correctness, PRM scores and token counts come from random draws
calibrated to ProcessBench statistics, not from models. The simulator is richer than the POMDP the router
plans with (per-query difficulty, correlated steps, recovery after errors, a realistic PRM), so evaluating on
it tests the POMDP's simplifications too (``docs/design.md``, "Evaluation").

What it simulates, per query (problem) ``q``:

- **Difficulty**: its own next-step accuracies ``p_w(q)``, ``p_s(q)`` from Beta distributions (means and
  concentrations fitted on the weak / strong generator's ProcessBench solutions), coupled by a Gaussian
  copula with correlation ``difficulty_corr`` (hard for one model → hard for the other).
- **Step difficulty**: at each step, M_w's and M_s's chances of getting it right are coupled (Gaussian copula,
  ``step_corr``): the steps M_w gets wrong are more often ones M_s gets wrong too, so a regeneration is not an
  independent second try.
- **Length**: the number of steps ``L(q)`` of M_w's solution from the weak generator's ProcessBench
  step-count histogram (longer ones folded into the horizon ``H``); step ``t = L(q)`` is the final one.
- **Step tokens**: M_w's step lengths from the empirical quantiles of ProcessBench step lengths, with a
  per-query style effect (Gaussian copula with intra-query correlation ``token_item_corr``).
- **Strong steps**: a regeneration of step ``t`` costs ``ratio · c_t · ε`` tokens, ``ε`` lognormal with mean
  1 and log-s.d. ``strong_length_sd`` — not a fixed ratio. M_s solving alone writes the same number of steps,
  so its cost ``C_s(q)`` is the sum of the strong step lengths (an always-regenerate router pays exactly
  ``C_s``).
- **Errors**: from a correct prefix, M_w's step is right w.p. ``p_w(q)``, a regenerated step w.p. ``p_s(q)``.
  After an error the trajectory is wrong (class S1) but each later step recovers it w.p. ``recovery`` (fitted
  on ProcessBench solutions whose final answer is right despite an erroneous step). Once an error happened,
  the PRM keeps seeing an erroneous prefix (class S1) even after a recovery, as ProcessBench labels it.
- **PRM scores**: the calibrated :class:`~trim_pomdp.prm.synthetic.SyntheticPRM` (per-query bias,
  AR(1)-correlated step noise, high scores after errors), given each step's true class.

Common random numbers: :meth:`Simulator.reset` with the same seed gives the same problems, lengths, step
outcomes and noise streams to every router, so routers are compared on identical queries. Run a router on it
with :func:`trim_pomdp.routers.rollout.rollout`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from trim_pomdp.constants import HIDDEN_CLASSES
from trim_pomdp.datasets.scored import StepTable
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.prm.synthetic import SyntheticPRM
from trim_pomdp.registry import did_you_mean
from trim_pomdp.routers.rollout import rollout
from trim_pomdp.types import BatchObservation

__all__ = [
    "SIMULATED_NOTE",
    "QueryBatch",
    "Simulator",
    "SimulatorParams",
    "default_simulator_file",
    "load_default_simulator_params",
]

S0, S1, S2 = (HIDDEN_CLASSES.index(n) for n in ("S0", "S1", "S2"))

#: The sentence every output of the simulator carries.
SIMULATED_NOTE = (
    "SIMULATED: correctness, PRM scores and token counts come from trim-pomdp's offline simulator "
    "(calibrated to ProcessBench statistics and to Qwen2.5-Math-PRM-7B's published ProcessBench accuracies), "
    "not from real models."
)


@dataclass
class SimulatorParams:
    """Parameters of :class:`Simulator` (JSON-serialisable; see :meth:`to_json`).

    Attributes
    ----------
    weak_generator, strong_generator : str
        Names of the generator pair the statistics come from (ProcessBench generators by default).
    split : str
        ProcessBench split the statistics come from; also the synthetic PRM's calibrated split.
    horizon : int
        H, the step cap (longer solutions end at step H).
    p_w_mean, p_w_concentration, p_s_mean, p_s_concentration : float
        Beta distributions of the per-query next-step accuracies: ``Beta(m κ, (1 − m) κ)``.
    difficulty_corr : float
        Gaussian-copula correlation between a query's ``p_w`` and ``p_s`` (in [−1, 1]).
    step_corr : float
        Gaussian-copula correlation, at the same step, between M_w's and M_s's chance of getting it right (in
        [0, 1)): a step M_w gets wrong is more often one M_s gets wrong too.
    recovery : float
        Per-step probability that a trajectory with an error becomes correct again.
    step_count_probs : list of float, length H
        ``P(L = k)`` for ``k = 1 … H``.
    token_quantiles : list of float
        Quantiles of M_w's step token counts at equally spaced probabilities 0 … 1 (≥ 2 values,
        non-decreasing).
    token_item_corr : float
        Correlation, within a query, of its steps' (Gaussian-copula) length scores, in [0, 1).
    strong_ratio : float
        Mean M_s step length over mean M_w step length.
    strong_length_sd : float
        Log-s.d. of the lognormal factor around ``strong_ratio · c_t``.
    prm : dict
        Keyword arguments of :class:`SyntheticPRM` (empty: its calibrated defaults).
    card : dict
        Provenance: data, how each number was obtained, ``"simulated": true``.
    """

    weak_generator: str
    strong_generator: str
    split: str
    p_w_mean: float
    p_w_concentration: float
    p_s_mean: float
    p_s_concentration: float
    recovery: float
    step_count_probs: list[float]
    token_quantiles: list[float]
    strong_ratio: float = 1.0
    strong_length_sd: float = 0.5
    token_item_corr: float = 0.3
    difficulty_corr: float = 0.5
    step_corr: float = 0.5
    horizon: int = 30
    prm: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.step_count_probs = [float(x) for x in self.step_count_probs]
        self.token_quantiles = [float(x) for x in self.token_quantiles]
        self.validate()

    def validate(self) -> SimulatorParams:
        """Raise :class:`InvalidParameterError` naming the first bad field."""

        def bad(name: str, why: str) -> InvalidParameterError:
            return InvalidParameterError(f"SimulatorParams.{name} {why}, got {getattr(self, name)!r}")

        if not (isinstance(self.horizon, (int, np.integer)) and self.horizon >= 1):
            raise bad("horizon", "must be an int >= 1")
        for name in ("p_w_mean", "p_s_mean"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise bad(name, "must lie in (0, 1)")
        for name in ("p_w_concentration", "p_s_concentration", "strong_ratio"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise bad(name, "must be finite and > 0")
        if not (math.isfinite(self.strong_length_sd) and self.strong_length_sd >= 0):
            raise bad("strong_length_sd", "must be finite and >= 0")
        if not 0.0 <= self.recovery < 1.0:
            raise bad("recovery", "is a probability in [0, 1)")
        if not -1.0 <= self.difficulty_corr <= 1.0:
            raise bad("difficulty_corr", "must lie in [-1, 1]")
        if not 0.0 <= self.step_corr < 1.0:
            raise bad("step_corr", "must lie in [0, 1)")
        if not 0.0 <= self.token_item_corr < 1.0:
            raise bad("token_item_corr", "must lie in [0, 1)")
        p = np.asarray(self.step_count_probs)
        if p.shape != (self.horizon,) or (p < 0).any() or not math.isclose(p.sum(), 1.0, abs_tol=1e-6):
            raise InvalidParameterError(
                f"SimulatorParams.step_count_probs must hold P(L = 1..H) for H = {self.horizon} (non-negative, "
                f"summing to 1), got {p.shape[0]} values summing to {p.sum():.6g}"
            )
        q = np.asarray(self.token_quantiles)
        if q.shape[0] < 2 or (np.diff(q) < 0).any() or q[0] < 0:
            raise InvalidParameterError(
                "SimulatorParams.token_quantiles must hold >= 2 non-decreasing, non-negative token counts"
            )
        return self

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (field names as keys)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimulatorParams:
        """Build from :meth:`to_dict`'s output; unknown keys are an error (typos must not pass silently)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            hint = "; ".join(f"{u!r}{did_you_mean(u, names)}" for u in unknown)
            raise DataFormatError(f"unknown simulator parameter(s): {hint}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise DataFormatError(f"simulator parameters incomplete: {exc}") from None

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The parameters as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike, split: str | None = None) -> SimulatorParams:
        """Read a parameters file: one parameter object, or a multi-split file like the shipped default.

        Parameters
        ----------
        source : path
            JSON file.
        split : str, optional
            For a multi-split file (``{"splits": {name: params}, "default_split": ...}``): which split;
            default the file's ``default_split``.
        """
        path = Path(source)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataFormatError(f"simulator parameters file {str(path)!r} does not exist") from None
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls._from_loaded(d, split, str(path))

    @classmethod
    def _from_loaded(cls, d: Any, split: str | None, where: str) -> SimulatorParams:
        if not isinstance(d, dict):
            raise DataFormatError(f"{where}: simulator parameters must be a JSON object")
        if "splits" in d:
            name = split or d.get("default_split")
            if name not in d["splits"]:
                raise InvalidParameterError(
                    f"{where} has no simulator parameters for split {name!r}; "
                    f"available: {sorted(d['splits'])}"
                )
            params = dict(d["splits"][name])
            card = dict(d.get("card", {}))
            card.update(params.get("card", {}))
            params["card"] = card
            return cls.from_dict(params)
        if split is not None and d.get("split") != split:
            raise InvalidParameterError(
                f"{where} holds parameters of split {d.get('split')!r}, not {split!r}"
            )
        return cls.from_dict(d)

    @property
    def simulated(self) -> bool:
        """Always true: the simulator's outputs are simulated."""
        return True


def default_simulator_file() -> Path:
    """Path of the shipped ``trim_pomdp/data/simulator_default.json``."""
    return Path(str(resources.files("trim_pomdp") / "data" / "simulator_default.json"))


def load_default_simulator_params(split: str | None = None) -> SimulatorParams:
    """The shipped simulator parameters (ProcessBench statistics of the default generator pair).

    Parameters
    ----------
    split : str, optional
        ProcessBench split (``gsm8k``, ``math``, ``olympiadbench``, ``omnimath``); default ``math``.
    """
    return SimulatorParams.from_json(default_simulator_file(), split=split)


@dataclass
class QueryBatch:
    """Per-query facts of a simulated query set, for query-level routers and the reserved policies.

    All arrays have length ``n``; ``weak_scores`` is ``(n, H)`` with NaN after each solution's last step.
    ``simulated`` is always true.
    """

    query_ids: list[str]
    weak_correct: np.ndarray
    strong_correct: np.ndarray
    strong_tokens: np.ndarray
    weak_scores: np.ndarray
    n_steps: np.ndarray
    p_w: np.ndarray
    p_s: np.ndarray
    simulated: bool = True

    def __len__(self) -> int:
        return len(self.query_ids)

    def outcomes(self) -> list[Any]:
        """The queries as :class:`trim_pomdp.routers.query_level.QueryOutcome` objects."""
        from trim_pomdp.routers.query_level import QueryOutcome

        return [
            QueryOutcome(
                query_id=qid,
                weak_correct=bool(self.weak_correct[i]),
                strong_correct=bool(self.strong_correct[i]),
                strong_tokens=float(self.strong_tokens[i]),
                weak_scores=tuple(self.weak_scores[i, : self.n_steps[i]].tolist()),
            )
            for i, qid in enumerate(self.query_ids)
        ]


def _beta_ab(mean: float, conc: float) -> tuple[float, float]:
    return mean * conc, (1.0 - mean) * conc


class Simulator:
    """Vectorised simulator of stepwise routing episodes; implements :class:`trim_pomdp.types.EpisodeBatch`.

    Parameters
    ----------
    params : SimulatorParams, optional
        Default :func:`load_default_simulator_params`.
    prm : SyntheticPRM, optional
        Default ``SyntheticPRM(**params.prm, default_split=params.split)``.

    Examples
    --------
    >>> sim = Simulator()
    >>> obs = sim.reset(1000, seed=0)
    >>> while obs.active.any():
    ...     obs = sim.step(np.zeros(obs.n, dtype=int))   # never regenerate: M_w alone
    >>> sim.correct.mean()  # doctest: +SKIP
    """

    def __init__(self, params: SimulatorParams | None = None, prm: SyntheticPRM | None = None) -> None:
        self.params = (params or load_default_simulator_params()).validate()
        if prm is None:
            kw = dict(self.params.prm)
            kw.setdefault("default_split", self.params.split)
            prm = SyntheticPRM(**kw)
        self.prm = prm
        self.horizon = int(self.params.horizon)
        self._n = 0
        self._correct = np.zeros(0, dtype=bool)
        self._tokens = np.zeros(0)
        self._regens = np.zeros(0, dtype=np.int64)

    def __repr__(self) -> str:
        p = self.params
        pair = f"{p.weak_generator} -> {p.strong_generator}"
        return f"Simulator({pair}, split={p.split!r}, H={p.horizon}; simulated)"

    @property
    def card(self) -> dict[str, Any]:
        """What this simulator is, for output files (``"simulated": true``)."""
        return {
            "simulated": True,
            "note": SIMULATED_NOTE,
            "params": self.params.to_dict(),
            "prm": self.prm.card,
        }

    # ------------------------------------------------------------------ problem draws
    def _draw_problems(self, n: int, rng: np.random.Generator) -> None:
        p, H = self.params, self.horizon
        z = rng.standard_normal((n, 2))
        rho = p.difficulty_corr
        zs = rho * z[:, 0] + math.sqrt(max(0.0, 1.0 - rho * rho)) * z[:, 1]
        uw, us = special.ndtr(z[:, 0]), special.ndtr(zs)
        self.p_w = special.betaincinv(*_beta_ab(p.p_w_mean, p.p_w_concentration), uw)
        self.p_s = special.betaincinv(*_beta_ab(p.p_s_mean, p.p_s_concentration), us)
        probs = np.asarray(p.step_count_probs)
        self.n_steps = rng.choice(np.arange(1, H + 1), size=n, p=probs / probs.sum())
        # step token counts: Gaussian copula (query effect + step noise) through the empirical quantile function
        r = p.token_item_corr
        g = math.sqrt(r) * rng.standard_normal((n, 1)) + math.sqrt(1.0 - r) * rng.standard_normal((n, H))
        q = np.asarray(p.token_quantiles)
        levels = np.linspace(0.0, 1.0, q.shape[0])
        self.weak_len = np.maximum(1, np.rint(np.interp(special.ndtr(g), levels, q))).astype(np.int64)
        sd = p.strong_length_sd
        factor = np.exp(sd * rng.standard_normal((n, H)) - 0.5 * sd * sd)
        self.strong_len = np.maximum(1, np.rint(p.strong_ratio * self.weak_len * factor))
        cols = np.arange(H)[None, :]
        self.strong_len = np.where(cols < self.n_steps[:, None], self.strong_len, 0.0)
        # step outcomes: a step that is hard for M_w tends to be hard for M_s too (Gaussian copula, step_corr)
        zw = rng.standard_normal((n, H))
        zs = p.step_corr * zw + math.sqrt(1.0 - p.step_corr**2) * rng.standard_normal((n, H))
        self.u_weak = special.ndtr(zw)
        self.u_strong = special.ndtr(zs)
        self.u_recover = rng.random((n, H))

    def _strong_alone(self) -> tuple[np.ndarray, np.ndarray]:
        """M_s solving alone (same draws as regenerations): correctness and ``C_s``."""
        n, H = self.p_w.shape[0], self.horizon
        err = np.zeros(n, dtype=bool)
        for t in range(H):
            live = t < self.n_steps
            ok = self.u_strong[:, t] < self.p_s
            rec = self.u_recover[:, t] < self.params.recovery
            err = np.where(live, np.where(err, ~rec, ~ok), err)
        return ~err, self.strong_len.sum(axis=1)

    # ------------------------------------------------------------------ EpisodeBatch
    def reset(self, n: int, seed: int | None = None) -> BatchObservation:
        """Start ``n`` simulated queries; the same seed gives the same queries (common random numbers)."""
        n = int(n)
        if n < 1:
            raise InvalidParameterError(f"n must be >= 1, got {n}")
        ss = np.random.SeedSequence(seed)
        problem_ss, prm_ss = ss.spawn(2)
        rng = np.random.default_rng(problem_ss)
        self._prm_rng = np.random.default_rng(prm_ss)
        self._n = n
        self._draw_problems(n, rng)
        self._prm_state = self.prm.new_episodes(n, self._prm_rng)
        H = self.horizon
        self._t = 1
        self._err = np.zeros(n, dtype=bool)  # an unrecovered error in the accepted prefix
        self._ever = np.zeros(n, dtype=bool)  # any error ever accepted (the PRM then sees class S1)
        self._active = np.ones(n, dtype=bool)
        self._correct = np.zeros(n, dtype=bool)
        self._tokens = np.zeros(n)
        self._regens = np.zeros(n, dtype=np.int64)
        self._scores = np.full((n, H), np.nan)
        self._propose()
        return self._observation()

    def _propose(self) -> None:
        """M_w proposes step t for every active query; the PRM scores it."""
        j = self._t - 1
        ok = self.u_weak[:, j] < self.p_w
        self._proposal_ok = ok
        cls = np.where(self._ever, S1, np.where(ok, S0, S2))
        self._proposal_class = cls
        score = self.prm.score_step(self._prm_state, cls, self._prm_rng, active=self._active)
        self._scores[:, j] = np.where(self._active, score, np.nan)

    def _observation(self) -> BatchObservation:
        n = self._n
        j = self._t - 1
        return BatchObservation(
            t=np.full(n, self._t, dtype=np.int64),
            scores=self._scores.copy(),
            tokens=self.weak_len[:, j].copy(),
            final=self.n_steps == self._t,
            active=self._active.copy(),
        )

    def step(self, actions: np.ndarray) -> BatchObservation:
        """Apply one action per query (0 continue, 1 regenerate; ignored on finished rows)."""
        if self._n == 0:
            raise InvalidParameterError("call reset(n, seed) before step(actions)")
        a = np.asarray(actions).reshape(-1)
        if a.shape != (self._n,):
            raise InvalidParameterError(f"actions must have shape ({self._n},), got {a.shape}")
        act = self._active
        if not act.any():
            raise InvalidParameterError("every episode has ended; call reset(n, seed) to start new ones")
        if np.any((a[act] != 0) & (a[act] != 1)):
            raise InvalidParameterError("actions must be 0 (continue) or 1 (regenerate)")
        j = self._t - 1
        regen = act & (a == 1)
        strong_ok = self.u_strong[:, j] < self.p_s
        recovers = self.u_recover[:, j] < self.params.recovery
        # the regenerated step's class and its PRM score (the call is made every step so that the PRM's random
        # streams stay aligned across routers: common random numbers)
        regen_cls = np.where(self._ever, S1, np.where(strong_ok, S0, S2))
        regen_score = self.prm.score_step(self._prm_state, regen_cls, self._prm_rng, active=regen)
        self._scores[:, j] = np.where(regen, regen_score, self._scores[:, j])
        self._tokens = self._tokens + np.where(regen, self.strong_len[:, j], 0.0)
        self._regens += regen
        step_ok = np.where(regen, strong_ok, self._proposal_ok)
        new_err = np.where(self._err, ~recovers, ~step_ok)
        self._ever = np.where(act, self._ever | (~self._err & ~step_ok), self._ever)
        self._err = np.where(act, new_err, self._err)
        done = act & (self.n_steps == self._t)
        self._correct = np.where(done, ~self._err, self._correct)
        self._active = act & ~done
        if self._active.any():
            self._t += 1
            self._propose()
        return self._observation() if self._active.any() else self._final_observation()

    def _final_observation(self) -> BatchObservation:
        n = self._n
        return BatchObservation(
            t=np.full(n, self._t, dtype=np.int64),
            scores=self._scores.copy(),
            tokens=np.zeros(n, dtype=np.int64),
            final=np.ones(n, dtype=bool),
            active=np.zeros(n, dtype=bool),
        )

    @property
    def correct(self) -> np.ndarray:
        """Per-query final correctness (bool; simulated)."""
        return self._correct.copy()

    @property
    def strong_tokens(self) -> np.ndarray:
        """Per-query M_s tokens spent so far (simulated)."""
        return self._tokens.copy()

    @property
    def regenerations(self) -> np.ndarray:
        """Per-query number of regenerated steps."""
        return self._regens.copy()

    # ------------------------------------------------------------------ whole runs
    def query_ids(self, n: int, seed: int | None) -> list[str]:
        """Ids of the queries :meth:`reset` (n, seed) creates."""
        return [f"sim-{seed}-{i:06d}" for i in range(int(n))]

    def labelled_statistics(self, n: int, seed: int | None = None) -> dict[str, Any]:
        """What a user could measure on ``n`` labelled training queries (as ProcessBench labels steps).

        Returns a dict with ``weak_s0`` / ``weak_s2`` (M_w steps right / wrong after a correct prefix, along
        M_w's own solutions), ``strong_s0`` / ``strong_s2`` (the same for M_s solving alone), ``n_steps``
        (n,), ``weak_tokens`` (list of per-query arrays of step lengths), ``strong_tokens`` (flat array) and
        ``weak_step_scores`` (the PRM scores of M_w's steps).
        """
        rollout(None, self, n, seed=seed, lam=0.0)  # M_w alone
        H = self.horizon
        cols = np.arange(H)[None, :]
        live = cols < self.n_steps[:, None]
        ok_w = self.u_weak < self.p_w[:, None]
        ok_s = self.u_strong < self.p_s[:, None]

        def counts(ok: np.ndarray) -> tuple[int, int]:
            # steps taken with a correct prefix: every step up to and including the first error
            first_bad = np.where((~ok & live).any(axis=1), np.argmax(~ok & live, axis=1), H)
            at_risk = live & (cols <= first_bad[:, None])
            return int((at_risk & ok).sum()), int((at_risk & ~ok).sum())

        w0, w2 = counts(ok_w)
        s0, s2 = counts(ok_s)
        return {
            "weak_s0": w0,
            "weak_s2": w2,
            "strong_s0": s0,
            "strong_s2": s2,
            "n_steps": self.n_steps.copy(),
            "weak_tokens": [self.weak_len[i, : self.n_steps[i]].copy() for i in range(self.n_steps.shape[0])],
            "strong_tokens": self.strong_len[live].copy(),
            "weak_step_scores": self._scores[live].copy(),
        }

    def step_table(self, n: int, seed: int | None = None) -> StepTable:
        """Labelled step table of M_w's own solutions of ``n`` queries (what observation models fit on).

        The same :class:`~trim_pomdp.datasets.scored.StepTable` that scored items give (its ``split`` is the
        simulator's); the scores are simulated.
        """

        obs = self.reset(n, seed)
        r, m, z, t, item = [], [], [], [], []
        while obs.active.any():
            rows = np.flatnonzero(obs.active)
            r.append(obs.score[rows])
            m.append(obs.prefix_min[rows])
            z.append(self._proposal_class[rows])
            t.append(obs.t[rows])
            item.append(rows)
            obs = self.step(np.zeros(n, dtype=np.int64))
        steps = np.concatenate(r)
        return StepTable(
            r=steps,
            m=np.concatenate(m),
            z=np.concatenate(z),
            t=np.concatenate(t),
            item_index=np.concatenate(item),
            split=np.full(steps.size, self.params.split),
        )

    def queries(self, n: int, seed: int | None = None) -> QueryBatch:
        """The query-level facts of the ``n`` queries of ``reset(n, seed)``.

        M_w alone is the never-regenerate episode (its step scores are what AutoMix sees); M_s alone uses the
        same draws as regenerations; ``strong_tokens`` is ``C_s``.
        """
        weak_correct, _ = rollout(None, self, n, seed=seed, lam=0.0, keep_episodes=True).outcomes()
        weak_scores = self._scores.copy()
        strong_correct, cs = self._strong_alone()
        return QueryBatch(
            query_ids=self.query_ids(n, seed),
            weak_correct=weak_correct,
            strong_correct=strong_correct,
            strong_tokens=cs.astype(float),
            weak_scores=weak_scores,
            n_steps=self.n_steps.copy(),
            p_w=self.p_w.copy(),
            p_s=self.p_s.copy(),
        )
