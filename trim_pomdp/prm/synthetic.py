"""A calibrated synthetic process reward model (PRM) for when no real PRM scores exist.

Scores are **simulated**. They are drawn in logit space, ``score = sigmoid(x)``, with:

- a per-episode (per-solution) bias ``b ~ N(0, item_sd²)`` shared by all steps of the episode;
- step noise that is correlated across steps: a stationary AR(1) process ``e_t = rho·e_{t-1} + sqrt(1-rho²)·ε_t``
  with unit variance, scaled per class;
- class-conditional means: ``x = mu_s0[split] + b + s0_sd·e_t`` for a correct step (S0),
  ``x = mu_s2[split] + b + s2_sd·e_t`` for the first error (S2);
- steps after an error (S1) often score *high*, as real PRMs do (Qwen2.5-Math-PRM-7B gives 0.9995, 0.1813, 0.9746,
  0.9995 on ProcessBench gsm8k-0, classes S0, S2, S1, S1): each S1 step looks like an S0 step (mean
  ``mu_s0[split] + s1_shift``) with probability ``s1_high`` and like an S2 step otherwise; with ``s1_persist`` > 0
  an S1 step keeps the look of the S1 step before it with that probability (real traces stay low once they drop),
  which leaves the share of high-looking S1 steps at ``s1_high``.

The per-split means ``mu_s0`` / ``mu_s2`` are the calibrated quantities (per-split difficulty): they were fitted so
that under the ProcessBench protocol (first step with score < 0.5 is the predicted error, -1 if none; a sample is
right iff the prediction equals the label) the simulated PRM reproduces Qwen2.5-Math-PRM-7B's published accuracies
on erroneous / correct samples per split (Zhang et al. 2025, arXiv:2501.07301, Table 7). The shape parameters
(``item_sd``, ``rho``, ``s0_sd``, ``s2_sd``, ``s1_high``, ``s1_shift``) are not identified by those 8 numbers; three of
them were picked by a grid search against the one real trace, the rest by judgement (see :data:`SHAPE_DEFAULTS`).
:func:`calibrate_synthetic_prm` re-derives the per-split means; ``benchmarks/calibrate_synthetic_prm.py`` runs both.

The stepwise API (:meth:`SyntheticPRM.new_episodes`, :meth:`SyntheticPRM.score_step`) is what simulators use;
:meth:`SyntheticPRM.score_items` is built on it, so both produce the same scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trim_pomdp.datasets.processbench import ProcessBenchItem, step_classes
from trim_pomdp.datasets.scored import ScoredItem
from trim_pomdp.exceptions import InvalidParameterError

__all__ = [
    "CALIBRATED_MU_S0",
    "CALIBRATED_MU_S2",
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "QWEN25_MATH_PRM_7B_PROCESSBENCH",
    "SHAPE_DEFAULTS",
    "SyntheticPRM",
    "SyntheticPRMState",
    "calibrate_synthetic_prm",
    "protocol_accuracy",
]

#: The floating-point formats :class:`SyntheticPRM` can round its scores to.
PRECISIONS = ("float16", None)
#: The format it rounds to by default: none (full precision), so that the shipped observation model and every
#: simulated figure stay what their commands give; the simulator calibrated to real Qwen2.5-Math-PRM-7B traces
#: (``trim_pomdp/data/simulator_qwen_traces.json``) rounds to float16, as that PRM's outputs are.
DEFAULT_PRECISION: str | None = None

#: Published ProcessBench accuracies (%) of Qwen2.5-Math-PRM-7B: split -> (error, correct).
#: Zhang et al., "The Lessons of Developing Process Reward Models in Mathematical Reasoning", arXiv:2501.07301v2,
#: Table 7.
QWEN25_MATH_PRM_7B_PROCESSBENCH: dict[str, tuple[float, float]] = {
    "gsm8k": (72.0, 96.4),
    "math": (68.0, 90.4),
    "olympiadbench": (55.7, 85.5),
    "omnimath": (55.2, 83.0),
}

#: Shape parameters (logit scale), shared by all splits:
#: ``item_sd`` per-solution bias s.d.; ``rho`` AR(1) lag-1 correlation of step noise; ``s0_sd`` / ``s2_sd`` step noise
#: s.d. of correct steps / first errors; ``s1_high`` probability that a step after an error scores like a correct
#: step; ``s1_shift`` its mean offset from ``mu_s0`` (such steps score a little lower than truly correct ones).
#: ``s0_sd``, ``s1_high`` and ``s1_shift`` are the best point of a grid search against the one real
#: Qwen2.5-Math-PRM-7B trace (``python benchmarks/calibrate_synthetic_prm.py --search-shapes``: grid s0_sd in
#: 1.5..4.0, s1_high in {0.4, 0.55, 0.7}, s1_shift in {-1, 0}; for each point the gsm8k means were calibrated and the
#: log-probability of the trace's four scores under the simulated class marginals computed). One trace identifies
#: little (the log-likelihood varies by < 0.5 nats over most of the grid); ``item_sd``, ``rho`` and ``s2_sd`` are
#: fixed by judgement (moderate per-solution bias and step correlation, first errors more spread than correct steps).
SHAPE_DEFAULTS: dict[str, float] = {
    "item_sd": 1.0,
    "rho": 0.5,
    "s0_sd": 3.0,
    "s2_sd": 2.5,
    "s1_high": 0.7,
    "s1_shift": -1.0,
}

# Calibrated per-split means (logit scale). Obtained once with
#   python benchmarks/calibrate_synthetic_prm.py --data-dir PROCESSBENCH_DIR --search-shapes
# (PROCESSBENCH_DIR: a folder with ProcessBench's <split>.json files),
# i.e. calibrate_synthetic_prm(load_processbench(data_dir=...), repeats=20, seed=0, **SHAPE_DEFAULTS):
# bisection of mu_s0 on the correct-sample accuracy, then of mu_s2 on the error-sample accuracy, per split, with
# common random numbers over 20 replicates of the split's real ProcessBench items (real step counts and labels).
#: split -> calibrated mean logit of correct (S0) steps.
CALIBRATED_MU_S0: dict[str, float] = {
    "gsm8k": 7.6456,
    "math": 6.4114,
    "olympiadbench": 6.3266,
    "omnimath": 5.7675,
}
#: split -> calibrated mean logit of first-error (S2) steps.
CALIBRATED_MU_S2: dict[str, float] = {
    "gsm8k": -1.6685,
    "math": -1.5724,
    "olympiadbench": -0.7658,
    "omnimath": -0.8180,
}


@dataclass
class SyntheticPRMState:
    """Per-episode state of :class:`SyntheticPRM`'s stepwise API (arrays of length ``n``).

    Attributes
    ----------
    bias : ndarray of float
        Per-episode logit bias.
    noise : ndarray of float
        Last AR(1) step-noise value (unit variance).
    t : ndarray of int
        Number of steps scored so far.
    mu_s0, mu_s2 : ndarray of float
        The episode's class means (from its split).
    last_s1_high : ndarray of bool, optional
        Whether the episode's last step was an S1 step that looked correct (for ``s1_persist``).
    last_s1 : ndarray of bool, optional
        Whether the episode's last step was an S1 step.
    """

    bias: np.ndarray
    noise: np.ndarray
    t: np.ndarray
    mu_s0: np.ndarray
    mu_s2: np.ndarray
    last_s1_high: np.ndarray | None = None
    last_s1: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.bias.shape[0])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class SyntheticPRM:
    """Simulated PRM calibrated to Qwen2.5-Math-PRM-7B's ProcessBench accuracies.

    Parameters
    ----------
    mu_s0, mu_s2 : mapping of str to float, optional
        Per-split mean logit of correct (S0) and first-error (S2) steps; default the calibrated values
        :data:`CALIBRATED_MU_S0` / :data:`CALIBRATED_MU_S2`.
    item_sd, rho, s0_sd, s2_sd, s1_high, s1_shift : float, optional
        Shape parameters (see the module docstring); default :data:`SHAPE_DEFAULTS`.
    default_split : str
        The split whose means the stepwise API uses when :meth:`new_episodes` is given none ("math": the
        evaluation in the TRIM paper is on MATH-500).
    precision : {"float16", None}, default None
        Round every score to this floating-point format, as a real PRM's outputs are (Qwen2.5-Math-PRM-7B's
        step probabilities come in float16: 43% of its scores on real solutions are exactly 1.0, the next value
        below being 0.99951); None keeps full precision.
    s1_persist : float, default 0
        Probability that an S1 step looks as the S1 step before it did (correct-looking or error-looking) instead
        of drawing its look afresh; 0 (independent looks) is the ProcessBench calibration's assumption.

    Notes
    -----
    All scores this class produces are simulated; :attr:`card` and every
    :class:`~trim_pomdp.datasets.scored.ScoredItem` it returns say so.
    """

    name = "synthetic-prm (simulated, calibrated to Qwen2.5-Math-PRM-7B on ProcessBench)"

    def __init__(
        self,
        *,
        mu_s0: Mapping[str, float] | None = None,
        mu_s2: Mapping[str, float] | None = None,
        item_sd: float = SHAPE_DEFAULTS["item_sd"],
        rho: float = SHAPE_DEFAULTS["rho"],
        s0_sd: float = SHAPE_DEFAULTS["s0_sd"],
        s2_sd: float = SHAPE_DEFAULTS["s2_sd"],
        s1_high: float = SHAPE_DEFAULTS["s1_high"],
        s1_shift: float = SHAPE_DEFAULTS["s1_shift"],
        default_split: str = "math",
        precision: str | None = DEFAULT_PRECISION,
        s1_persist: float = 0.0,
    ) -> None:
        self.mu_s0 = dict(CALIBRATED_MU_S0 if mu_s0 is None else mu_s0)
        self.mu_s2 = dict(CALIBRATED_MU_S2 if mu_s2 is None else mu_s2)
        self.item_sd = float(item_sd)
        self.rho = float(rho)
        self.s0_sd = float(s0_sd)
        self.s2_sd = float(s2_sd)
        self.s1_high = float(s1_high)
        self.s1_shift = float(s1_shift)
        self.default_split = default_split
        self.precision = precision
        self.s1_persist = float(s1_persist)
        self._validate()

    def _validate(self) -> None:
        if set(self.mu_s0) != set(self.mu_s2):
            raise InvalidParameterError(
                f"mu_s0 and mu_s2 must name the same splits, got {sorted(self.mu_s0)} and {sorted(self.mu_s2)}"
            )
        for name in ("item_sd", "s0_sd", "s2_sd"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise InvalidParameterError(f"{name} must be a finite number >= 0, got {v}")
        if not -1.0 < self.rho < 1.0:
            raise InvalidParameterError(f"rho must lie in (-1, 1), got {self.rho}")
        if not 0.0 <= self.s1_high <= 1.0:
            raise InvalidParameterError(f"s1_high is a probability in [0, 1], got {self.s1_high}")
        for split in self.mu_s0:
            for table in (self.mu_s0, self.mu_s2):
                if not np.isfinite(table[split]):
                    raise InvalidParameterError(
                        f"the mean logit of split {split!r} must be finite, got {table[split]}"
                    )
        if not 0.0 <= self.s1_persist < 1.0:
            raise InvalidParameterError(f"s1_persist must lie in [0, 1), got {self.s1_persist!r}")
        if self.precision not in PRECISIONS:
            raise InvalidParameterError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.default_split not in self.mu_s0:
            raise InvalidParameterError(
                f"default_split {self.default_split!r} has no calibrated means; choose from {sorted(self.mu_s0)}"
            )

    def __repr__(self) -> str:
        return (
            f"SyntheticPRM(item_sd={self.item_sd}, rho={self.rho}, s0_sd={self.s0_sd}, s2_sd={self.s2_sd}, "
            f"s1_high={self.s1_high}, s1_shift={self.s1_shift}, default_split={self.default_split!r})"
        )

    # ----------------------------------------------------------------------------------------------- parameters

    def get_params(self) -> dict:
        """All parameters as a JSON-ready dict (the constructor's keywords)."""
        return {
            "mu_s0": dict(self.mu_s0),
            "mu_s2": dict(self.mu_s2),
            "item_sd": self.item_sd,
            "rho": self.rho,
            "s0_sd": self.s0_sd,
            "s2_sd": self.s2_sd,
            "s1_high": self.s1_high,
            "s1_shift": self.s1_shift,
            "default_split": self.default_split,
            "precision": self.precision,
            "s1_persist": self.s1_persist,
        }

    @property
    def card(self) -> dict:
        """Description of the simulated PRM for artifact cards (``"simulated": True``)."""
        return {
            "prm": self.name,
            "simulated": True,
            "kind": "SyntheticPRM",
            "note": (
                "PRM scores are SIMULATED by trim_pomdp.prm.synthetic.SyntheticPRM, not produced "
                "by a real PRM. Replace them with real scores: trim-pomdp score-processbench --prm "
                "Qwen/Qwen2.5-Math-PRM-7B --out scores.jsonl (GPU recommended)."
            ),
            "calibrated_to": {
                "model": "Qwen/Qwen2.5-Math-PRM-7B",
                "benchmark": "ProcessBench (error / correct accuracy per split, %)",
                "source": "Zhang et al. 2025, arXiv:2501.07301v2, Table 7",
                "targets": {k: list(v) for k, v in QWEN25_MATH_PRM_7B_PROCESSBENCH.items()},
            },
            "params": self.get_params(),
        }

    def _split_means(self, splits: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        unknown = sorted(set(splits) - set(self.mu_s0))
        if unknown:
            raise InvalidParameterError(
                f"SyntheticPRM has no calibrated means for split(s) {unknown}; known splits: {sorted(self.mu_s0)}. "
                "Pass mu_s0/mu_s2 for them, or relabel the items with a known split."
            )
        return (
            np.array([self.mu_s0[s] for s in splits], dtype=float),
            np.array([self.mu_s2[s] for s in splits], dtype=float),
        )

    # ------------------------------------------------------------------------------------------- stepwise API

    def new_episodes(
        self,
        n: int,
        rng: np.random.Generator | int | None = None,
        split: str | Sequence[str] | None = None,
        offset: float | np.ndarray | None = None,
    ) -> SyntheticPRMState:
        """Start ``n`` episodes (draw their biases).

        Parameters
        ----------
        n : int
            Number of episodes.
        rng : numpy Generator or int seed, optional
        split : str or sequence of str, optional
            The split whose calibrated means each episode uses (one for all, or one per episode); default
            ``default_split``.
        offset : float or array of shape (n,), optional
            Extra logit added to each episode's drawn bias (e.g. to make the PRM more optimistic on some
            problems); default 0.

        Returns
        -------
        SyntheticPRMState
        """
        n = int(n)
        if n < 0:
            raise InvalidParameterError(f"n must be >= 0, got {n}")
        rng = np.random.default_rng(rng)
        if split is None:
            split = self.default_split
        splits = [split] * n if isinstance(split, str) else list(split)
        if len(splits) != n:
            raise InvalidParameterError(f"split has {len(splits)} entries for n = {n} episodes")
        mu0, mu2 = self._split_means(splits)
        extra = np.zeros(n) if offset is None else np.broadcast_to(np.asarray(offset, dtype=float), (n,))
        if not np.all(np.isfinite(extra)):
            raise InvalidParameterError("offset must be finite")
        return SyntheticPRMState(
            bias=self.item_sd * rng.standard_normal(n) + extra,
            noise=np.zeros(n),
            t=np.zeros(n, dtype=np.int64),
            mu_s0=mu0,
            mu_s2=mu2,
        )

    def score_step(
        self,
        state: SyntheticPRMState,
        classes: np.ndarray,
        rng: np.random.Generator,
        active: np.ndarray | None = None,
    ) -> np.ndarray:
        """Score the next step of every episode.

        Parameters
        ----------
        state : SyntheticPRMState
            From :meth:`new_episodes`; updated in place for active rows.
        classes : array of int, shape (n,)
            Hidden class of each episode's new step (0 = S0, 1 = S1, 2 = S2).
        rng : numpy Generator
        active : array of bool, shape (n,), optional
            Rows to score (default all). Inactive rows keep their state and get NaN. The random draws of a row
            do not depend on which other rows are active.

        Returns
        -------
        ndarray of float, shape (n,)
            P(step correct) in [0, 1] (simulated).
        """
        n = state.n
        classes = np.asarray(classes)
        if classes.shape != (n,):
            raise InvalidParameterError(f"classes must have shape ({n},), got {classes.shape}")
        act = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        if act.shape != (n,):
            raise InvalidParameterError(f"active must have shape ({n},), got {act.shape}")
        if np.any((classes[act] < 0) | (classes[act] > 2)):
            raise InvalidParameterError("classes must be 0 (S0), 1 (S1) or 2 (S2) on active rows")
        eps = rng.standard_normal(n)
        u = rng.random(n)
        first = state.t == 0
        noise = np.where(first, eps, self.rho * state.noise + np.sqrt(1.0 - self.rho**2) * eps)
        s1_high = u < self.s1_high
        if (
            self.s1_persist > 0.0
        ):  # no extra draw otherwise: s1_persist = 0 gives exactly the scores it always did
            keep = rng.random(n) < self.s1_persist
            last_high = np.zeros(n, dtype=bool) if state.last_s1_high is None else state.last_s1_high
            last_s1 = np.zeros(n, dtype=bool) if state.last_s1 is None else state.last_s1
            s1_high = np.where(last_s1 & keep, last_high, s1_high)
            is_s1 = classes == 1
            state.last_s1_high = np.where(act, is_s1 & s1_high, last_high)
            state.last_s1 = np.where(act, is_s1, last_s1)
        looks_ok = (classes == 0) | ((classes == 1) & s1_high)
        mean = np.where(looks_ok, state.mu_s0 + np.where(classes == 1, self.s1_shift, 0.0), state.mu_s2)
        sd = np.where(looks_ok, self.s0_sd, self.s2_sd)
        x = mean + state.bias + sd * noise
        state.noise = np.where(act, noise, state.noise)
        state.t = state.t + act
        score = _sigmoid(x)
        if self.precision == "float16":  # the precision a real PRM's probabilities come in (module docstring)
            score = score.astype(np.float16).astype(float)
        return np.where(act, score, np.nan)

    def score_matrix(
        self, classes: np.ndarray, lengths: np.ndarray, splits: str | Sequence[str] | None, rng
    ) -> np.ndarray:
        """Score ``n`` whole episodes given their step classes (vectorised over episodes).

        Parameters
        ----------
        classes : array of int, shape (n, H)
            Step classes, padded arbitrarily beyond each episode's length.
        lengths : array of int, shape (n,)
            Number of steps per episode.
        splits : str or sequence of str or None
            Split per episode (see :meth:`new_episodes`).
        rng : numpy Generator or int seed

        Returns
        -------
        ndarray of float, shape (n, H)
            Scores, NaN beyond each episode's length.
        """
        rng = np.random.default_rng(rng)
        classes = np.asarray(classes)
        lengths = np.asarray(lengths)
        n, horizon = classes.shape
        state = self.new_episodes(n, rng, splits)
        out = np.full((n, horizon), np.nan)
        for t in range(horizon):
            out[:, t] = self.score_step(
                state, np.where(t < lengths, classes[:, t], 0), rng, active=t < lengths
            )
        return out

    # ------------------------------------------------------------------------------------------ whole items

    def score_items(
        self, items: Sequence[ProcessBenchItem], seed: int | np.random.Generator | None = None
    ) -> list[ScoredItem]:
        """Simulate PRM scores for ProcessBench items (each item uses its own split's calibrated means).

        Parameters
        ----------
        items : sequence of ProcessBenchItem
        seed : int or numpy Generator, optional

        Returns
        -------
        list of ScoredItem
            With ``simulated=True`` and ``prm`` naming the synthetic PRM.
        """
        items = list(items)
        if not items:
            return []
        classes, lengths = _class_matrix(items)
        scores = self.score_matrix(classes, lengths, [it.split for it in items], seed)
        return [
            ScoredItem(it, scores[i, : lengths[i]].tolist(), simulated=True, prm="synthetic-prm (simulated)")
            for i, it in enumerate(items)
        ]


def _class_matrix(items: Sequence[ProcessBenchItem]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(it.steps) for it in items], dtype=np.int64)
    classes = np.zeros((len(items), int(lengths.max(initial=0))), dtype=np.int64)
    for i, it in enumerate(items):
        classes[i, : lengths[i]] = step_classes(it.label, lengths[i])
    return classes, lengths


# ------------------------------------------------------------------------------------------------- calibration


def protocol_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """ProcessBench accuracies (%) on erroneous and on correct samples from a padded score matrix.

    Parameters
    ----------
    scores : ndarray, shape (n, H)
        Step scores, NaN beyond each sample's length.
    labels : ndarray of int, shape (n,)
        First-error index, -1 for correct samples.
    threshold : float, default=0.5
        A step below it is the predicted first error.

    Returns
    -------
    error_accuracy, correct_accuracy : float
        In percent (NaN when there is no sample of that kind).
    """
    below = np.nan_to_num(scores, nan=1.0) < threshold
    pred = np.where(below.any(axis=1), below.argmax(axis=1), -1)
    right = pred == labels
    err = labels >= 0
    e = 100.0 * right[err].mean() if err.any() else float("nan")
    c = 100.0 * right[~err].mean() if (~err).any() else float("nan")
    return float(e), float(c)


def _bisect(f, lo: float, hi: float, target: float, tol: float) -> float:
    """Root of the increasing step function ``f(x) = target`` on [lo, hi] by bisection."""
    flo, fhi = f(lo), f(hi)
    if not flo <= target <= fhi:
        raise InvalidParameterError(
            f"target {target} is outside the reachable range [{flo:.2f}, {fhi:.2f}] on [{lo}, {hi}]"
        )
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def calibrate_synthetic_prm(
    items: Sequence[ProcessBenchItem],
    targets: Mapping[str, tuple[float, float]] = QWEN25_MATH_PRM_7B_PROCESSBENCH,
    *,
    repeats: int = 20,
    seed: int = 0,
    tol: float = 1e-3,
    **shape: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """Fit the per-split means ``mu_s0`` / ``mu_s2`` to ProcessBench accuracy targets.

    For each split, with common random numbers over ``repeats`` replicates of the split's items: bisect ``mu_s0``
    until the simulated accuracy on correct samples equals the target (it depends on ``mu_s0`` only), then bisect
    ``mu_s2`` (accuracy on erroneous samples decreases in it) for the error target.

    Parameters
    ----------
    items : sequence of ProcessBenchItem
        The real items (their step counts and labels drive the simulation).
    targets : mapping split -> (error %, correct %)
        Default Qwen2.5-Math-PRM-7B's published accuracies.
    repeats : int
        Replicates of each split's items per evaluation (Monte Carlo precision).
    seed : int
    tol : float
        Bisection tolerance on the logit means.
    **shape
        Shape parameters passed to :class:`SyntheticPRM` (default :data:`SHAPE_DEFAULTS`).

    Returns
    -------
    mu_s0, mu_s2 : dict of str to float
        The calibrated mean logits per split, rounded to 4 decimals.
    """
    mu_s0: dict[str, float] = {}
    mu_s2: dict[str, float] = {}
    for split, (err_target, corr_target) in targets.items():
        split_items = [it for it in items if it.split == split]
        if not split_items:
            raise InvalidParameterError(f"no items of split {split!r} to calibrate on")
        m0, m2 = _calibrate_split(split, split_items, err_target, corr_target, repeats, seed, tol, shape)
        mu_s0[split] = round(m0, 4)
        mu_s2[split] = round(m2, 4)
    return mu_s0, mu_s2


def _calibrate_split(
    split: str,
    items: Sequence[ProcessBenchItem],
    err_target: float,
    corr_target: float,
    repeats: int,
    seed: int,
    tol: float,
    shape: Mapping[str, float],
) -> tuple[float, float]:
    """``(mu_s0, mu_s2)`` of one split: the two bisections of :func:`calibrate_synthetic_prm`."""
    classes, lengths = _class_matrix(items)
    classes = np.tile(classes, (repeats, 1))
    lengths = np.tile(lengths, repeats)
    labels = np.tile(np.array([it.label for it in items]), repeats)

    def accuracies(m0: float, m2: float) -> tuple[float, float]:
        prm = SyntheticPRM(
            mu_s0={split: m0},
            mu_s2={split: m2},
            default_split=split,
            **{k: float(v) for k, v in shape.items()},  # type: ignore[arg-type]  # shape keywords are floats
        )
        return protocol_accuracy(prm.score_matrix(classes, lengths, split, seed), labels)

    m0 = _bisect(lambda v: accuracies(v, 0.0)[1], -10.0, 30.0, corr_target, tol)
    m2 = _bisect(lambda v: -accuracies(m0, v)[0], -30.0, 30.0, -err_target, tol)
    return m0, m2
