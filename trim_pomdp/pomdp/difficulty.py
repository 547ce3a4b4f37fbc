"""Latent difficulty classes (``π``, ``p_w(d)``, ``p_s(d)``) from per-problem data, ``D`` by held-out likelihood.

One pooled next-step accuracy per model treats every query alike; real data is far more spread out (easy
problems nearly always right, hard ones nearly always wrong). This module fits a finite mixture: a problem's
class ``d`` is drawn from ``π`` and fixed, and given ``d`` every step of M_w after a correct prefix is right with
probability ``p_w(d)`` and every step of M_s with ``p_s(d)``. The evidence a problem contributes
(:class:`ProblemEvidence`) is any mix of

* **step labels**: per model, the steps right (S0) and wrong (S2) after a correct prefix — likelihood
  ``p^{n0} (1 − p)^{n2}``, the estimator of :mod:`~trim_pomdp.pomdp.estimation` per problem;
* **final outcomes** without step labels (records of runs, graded samples): a solution of ``L`` steps is right
  with probability ``p^L`` under the model (an error is never recovered), so a graded sample contributes
  ``p^L`` or ``1 − p^L``.

The marginal likelihood ``Σ_q log Σ_d π_d L_q(d)`` is maximised over logits of all parameters (L-BFGS, several
seeded starts; classes sorted by ``p_w``). ``D`` is chosen by K-fold cross-validated log-likelihood per problem
(:func:`select_classes`); asking for more classes than the held-out likelihood supports warns and says so.
When no problem has evidence about M_s, ``p_s(d)`` is not identified and every class gets the pooled value
given by the caller (the card says so).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logsumexp
from threadpoolctl import threadpool_limits

from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.pomdp.params import DifficultyClasses, TrimParams

__all__ = [
    "DifficultyWarning",
    "ProblemEvidence",
    "estimate_difficulty",
    "evidence_from_items",
    "evidence_from_records",
    "evidence_from_simulator",
    "fit_classes",
    "load_evidence",
    "select_classes",
    "with_difficulty",
]

#: Fewest problems per class a fit accepts.
MIN_PROBLEMS_PER_CLASS = 5


class DifficultyWarning(UserWarning):
    """More difficulty classes were asked for than the held-out likelihood supports."""


@dataclass
class ProblemEvidence:
    """Per-problem evidence about the two models' next-step accuracies (arrays over problems or outcomes).

    Attributes
    ----------
    steps : ndarray of int, shape (n, 4)
        Per problem: M_w's right and wrong steps after a correct prefix, then M_s's (``#S0_w, #S2_w, #S0_s,
        #S2_s``); zeros where a model has no step-labelled solution of the problem.
    outcome_problem, outcome_role, outcome_correct, outcome_steps : ndarray
        One entry per graded solution without step labels: its problem (index), the model (0 M_w, 1 M_s),
        whether the final answer was right, and its number of steps.
    problem_ids : list of str
        A name per problem (the problem text's hash, a query id).
    card : dict
        Where the evidence came from.
    """

    steps: np.ndarray
    outcome_problem: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    outcome_role: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    outcome_correct: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    outcome_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    problem_ids: list[str] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.steps = np.asarray(self.steps, dtype=np.int64).reshape(-1, 4)
        self.outcome_problem = np.asarray(self.outcome_problem, dtype=np.int64).reshape(-1)
        self.outcome_role = np.asarray(self.outcome_role, dtype=np.int64).reshape(-1)
        self.outcome_correct = np.asarray(self.outcome_correct, dtype=bool).reshape(-1)
        self.outcome_steps = np.asarray(self.outcome_steps, dtype=np.int64).reshape(-1)
        n_out = self.outcome_problem.size
        if {self.outcome_role.size, self.outcome_correct.size, self.outcome_steps.size} != {n_out}:
            raise InvalidParameterError("the outcome arrays of ProblemEvidence must have the same length")
        if np.any(self.steps < 0) or (
            n_out and (self.outcome_steps.min() < 1 or self.outcome_problem.max() >= self.n)
        ):
            raise InvalidParameterError("step counts must be >= 0, outcome steps >= 1 and problems in range")
        if not self.problem_ids:
            self.problem_ids = [f"problem-{i}" for i in range(self.n)]

    @property
    def n(self) -> int:
        """Number of problems."""
        return int(self.steps.shape[0])

    @property
    def has_strong(self) -> bool:
        """Whether any problem says something about M_s."""
        return bool(self.steps[:, 2:].sum() > 0 or np.any(self.outcome_role == 1))

    def subset(self, idx: np.ndarray) -> ProblemEvidence:
        """The evidence of the problems ``idx`` (renumbered)."""
        idx = np.asarray(idx, dtype=np.int64)
        new = -np.ones(self.n, dtype=np.int64)
        new[idx] = np.arange(idx.size)
        keep = new[self.outcome_problem] >= 0
        return ProblemEvidence(
            self.steps[idx],
            new[self.outcome_problem[keep]],
            self.outcome_role[keep],
            self.outcome_correct[keep],
            self.outcome_steps[keep],
            [self.problem_ids[i] for i in idx],
            dict(self.card),
        )

    def summary(self) -> dict[str, Any]:
        """Counts for cards: problems, labelled steps and graded outcomes per model."""
        return {
            "problems": self.n,
            "weak_steps": {"S0": int(self.steps[:, 0].sum()), "S2": int(self.steps[:, 1].sum())},
            "strong_steps": {"S0": int(self.steps[:, 2].sum()), "S2": int(self.steps[:, 3].sum())},
            "weak_outcomes": int(np.sum(self.outcome_role == 0)),
            "strong_outcomes": int(np.sum(self.outcome_role == 1)),
        }


# ---------------------------------------------------------------------- likelihood and fit
def _class_loglik(
    ev: ProblemEvidence, pw: np.ndarray, ps: np.ndarray, grad: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``log L_q(d)`` of every problem and class ``(n, D)``, and with ``grad`` its derivatives with respect to
    ``logit p_w(d)`` and ``logit p_s(d)`` (same shape)."""
    lw, l1w = np.log(pw), np.log1p(-pw)
    ls, l1s = np.log(ps), np.log1p(-ps)
    S = ev.steps.astype(float)
    out = S[:, :1] * lw + S[:, 1:2] * l1w + S[:, 2:3] * ls + S[:, 3:4] * l1s
    gw = gs = None
    if grad:  # d/d logit p of n0 log p + n2 log(1 - p) is n0 (1 - p) - n2 p
        gw = S[:, :1] * (1 - pw) - S[:, 1:2] * pw
        gs = S[:, 2:3] * (1 - ps) - S[:, 3:4] * ps
    if ev.outcome_problem.size:
        weak = ev.outcome_role[:, None] == 0
        p = np.where(weak, pw[None, :], ps[None, :])
        L = ev.outcome_steps[:, None].astype(float)
        logp = L * np.log(p)  # log p^L
        log_wrong = np.log(-np.expm1(np.minimum(logp, -1e-300)))
        right = ev.outcome_correct[:, None]
        _scatter_add(out, ev.outcome_problem, np.where(right, logp, log_wrong))
        if grad and gw is not None and gs is not None:
            # d/d logit p: L (1 - p) if right, else -L (1 - p) p^L / (1 - p^L)
            d = L * (1 - p) * np.where(right, 1.0, -np.exp(logp - log_wrong))
            _scatter_add(gw, ev.outcome_problem, np.where(weak, d, 0.0))
            _scatter_add(gs, ev.outcome_problem, np.where(weak, 0.0, d))
    return out, gw, gs


def _scatter_add(target: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``target[rows] += values`` with repeated rows summed (one bincount per class: far faster than add.at)."""
    for j in range(target.shape[1]):
        target[:, j] += np.bincount(rows, weights=values[:, j], minlength=target.shape[0])


def _unpack(
    theta: np.ndarray, D: int, ps_fixed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    logits = np.r_[0.0, theta[: D - 1]]
    prior = np.exp(logits - logsumexp(logits))
    pw = expit(theta[D - 1 : 2 * D - 1])
    ps = ps_fixed if ps_fixed is not None else expit(theta[2 * D - 1 : 3 * D - 1])
    return prior, pw, ps


def _loglik(ev: ProblemEvidence, prior: np.ndarray, pw: np.ndarray, ps: np.ndarray) -> np.ndarray:
    """Marginal log-likelihood of every problem, shape (n,)."""
    ll, _, _ = _class_loglik(ev, pw, ps)
    return logsumexp(ll + np.log(np.maximum(prior, 1e-300))[None, :], axis=1)


def _objective(
    theta: np.ndarray, ev: ProblemEvidence, weight: np.ndarray, D: int, ps_fixed: np.ndarray | None
) -> tuple[float, np.ndarray]:
    """Minus the (weighted) marginal log-likelihood and its gradient in the logits."""
    prior, pw, ps = _unpack(theta, D, ps_fixed)
    ll, gw, gs = _class_loglik(ev, pw, ps, grad=True)
    joint = ll + np.log(np.maximum(prior, 1e-300))[None, :]
    tot = logsumexp(joint, axis=1)
    r = np.exp(joint - tot[:, None]) * weight[:, None]  # weighted responsibilities (n, D)
    assert gw is not None and gs is not None
    g = [(r.sum(axis=0) - weight.sum() * prior)[1:], (r * gw).sum(axis=0)]
    if ps_fixed is None:
        g.append((r * gs).sum(axis=0))
    return -float(weight @ tot), -np.concatenate(g)


def _compress(ev: ProblemEvidence) -> tuple[ProblemEvidence, np.ndarray]:
    """Problems with the same step counts and no graded outcomes merged into one row with a weight (the
    likelihood is unchanged; simulated and labelled data have few distinct count patterns)."""
    if ev.outcome_problem.size:
        return ev, np.ones(ev.n)
    rows, counts = np.unique(ev.steps, axis=0, return_counts=True)
    return ProblemEvidence(rows, problem_ids=[f"pattern-{i}" for i in range(rows.shape[0])]), counts.astype(
        float
    )


@dataclass
class ClassFit:
    """A fitted mixture: the classes and the (training) log-likelihood per problem."""

    prior: np.ndarray
    p_w: np.ndarray
    p_s: np.ndarray
    loglik: float
    n_problems: int

    def classes(self, card: dict[str, Any] | None = None) -> DifficultyClasses:
        """The fit as :class:`~trim_pomdp.pomdp.params.DifficultyClasses` with ``card``."""
        return DifficultyClasses(self.prior, self.p_w, self.p_s, card=card or {})


def fit_classes(
    ev: ProblemEvidence, n_classes: int, *, pooled_p_s: float | None = None, restarts: int = 4, seed: int = 0
) -> ClassFit:
    """Maximum-likelihood mixture of ``n_classes`` classes on ``ev`` (classes sorted by ``p_w``, easiest first).

    ``pooled_p_s`` is every class's ``p_s`` when ``ev`` says nothing about M_s (required then).
    """
    D = int(n_classes)
    if D < 1:
        raise InvalidParameterError(f"the number of difficulty classes must be >= 1, got {D}")
    if ev.n < MIN_PROBLEMS_PER_CLASS * D:
        raise InvalidParameterError(
            f"{D} difficulty classes need at least {MIN_PROBLEMS_PER_CLASS * D} problems of per-problem data "
            f"({MIN_PROBLEMS_PER_CLASS} per class), got {ev.n}: use fewer classes or more data"
        )
    ps_fixed = None
    if not ev.has_strong:
        if pooled_p_s is None:
            raise InvalidParameterError("the data says nothing about the strong model: pass pooled_p_s")
        ps_fixed = np.full(D, float(pooled_p_s))
    rng = np.random.default_rng(seed)
    w = ev.steps[:, 0].sum() / max(1, ev.steps[:, :2].sum()) if ev.steps[:, :2].sum() else 0.8
    s = ev.steps[:, 2].sum() / max(1, ev.steps[:, 2:].sum()) if ev.steps[:, 2:].sum() else 0.9
    packed, weight = _compress(ev)
    best: Any = None
    with threadpool_limits(limits=1, user_api="blas"):  # tiny products: BLAS threads only oversubscribe
        best = _best_start(packed, weight, D, ps_fixed, w, s, restarts, rng)
    prior, pw, ps = _unpack(best.x, D, ps_fixed)
    order = np.argsort(-pw, kind="stable")
    return ClassFit(prior[order], pw[order], np.asarray(ps)[order], -float(best.fun), ev.n)


def _best_start(
    packed: ProblemEvidence,
    weight: np.ndarray,
    D: int,
    ps_fixed: np.ndarray | None,
    w: float,
    s: float,
    restarts: int,
    rng: np.random.Generator,
) -> Any:
    """The best of ``restarts`` L-BFGS runs from spread starting points around the pooled accuracies."""
    best: Any = None
    for r in range(max(1, int(restarts))):
        spread = np.linspace(1.5, -1.5, D) if D > 1 else np.zeros(1)
        jitter = 0.0 if r == 0 else rng.normal(0, 0.7, D)
        pw0 = np.log(w / (1 - w + 1e-9) + 1e-9) + spread + jitter
        theta0 = np.r_[np.zeros(D - 1), pw0]
        if ps_fixed is None:
            theta0 = np.r_[theta0, np.log(s / (1 - s + 1e-9) + 1e-9) + 0.5 * spread]
        res = minimize(
            _objective,
            theta0,
            args=(packed, weight, D, ps_fixed),
            jac=True,
            method="L-BFGS-B",
            bounds=[(-12, 12)] * theta0.size,
        )
        if best is None or res.fun < best.fun:
            best = res
    return best


def select_classes(
    ev: ProblemEvidence,
    max_classes: int = 4,
    *,
    folds: int = 5,
    pooled_p_s: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Held-out log-likelihood per problem of ``D = 1 … max_classes`` (``folds``-fold cross-validation).

    Returns ``{"folds", "per_problem": {D: mean}, "se": {D: standard error}, "gain_se": {D: standard error of
    the paired difference to the best D}, "top": D, "best": D}``: ``top`` has the highest mean held-out
    log-likelihood per problem, ``best`` is the smallest ``D`` within one paired standard error of it (the
    one-standard-error rule: more classes only when the data clearly supports them). Class counts the data cannot
    fit (too few problems per class) are left out.
    """
    folds = int(folds)
    if folds < 2 or ev.n < folds:
        raise InvalidParameterError(
            f"cross-validation needs folds >= 2 and at least that many problems (got {ev.n})"
        )
    perm = np.random.default_rng(seed).permutation(ev.n)
    parts = np.array_split(perm, folds)
    mean: dict[int, float] = {}
    se: dict[int, float] = {}
    per: dict[int, np.ndarray] = {}
    for D in range(1, int(max_classes) + 1):
        held = np.empty(ev.n)
        try:
            for k in range(folds):
                test = parts[k]
                train = np.concatenate([parts[j] for j in range(folds) if j != k])
                fit = fit_classes(ev.subset(train), D, pooled_p_s=pooled_p_s, seed=seed)
                held[test] = _loglik(ev.subset(test), fit.prior, fit.p_w, fit.p_s)
        except InvalidParameterError:
            break
        per[D] = held
        mean[D] = float(held.mean())
        se[D] = float(held.std(ddof=1) / math.sqrt(held.size)) if held.size > 1 else float("nan")
    if not mean:
        raise InvalidParameterError(f"{ev.n} problems are too few to fit even one class in cross-validation")
    top = max(mean, key=lambda d: mean[d])
    diff_se = {d: float((per[d] - per[top]).std(ddof=1) / math.sqrt(ev.n)) if ev.n > 1 else 0.0 for d in per}
    best = min(d for d in mean if mean[d] >= mean[top] - diff_se[d])
    return {"folds": folds, "per_problem": mean, "se": se, "gain_se": diff_se, "top": top, "best": best}


def estimate_difficulty(
    ev: ProblemEvidence,
    n_classes: int | str = "auto",
    *,
    max_classes: int = 4,
    folds: int = 5,
    pooled_p_s: float | None = None,
    seed: int = 0,
) -> DifficultyClasses:
    """Difficulty classes from per-problem evidence; ``n_classes="auto"`` picks ``D`` by held-out likelihood.

    The card records the data summary, the held-out log-likelihood per problem of every ``D`` tried, the ``D``
    chosen and the training log-likelihood.

    Warns
    -----
    DifficultyWarning
        When an explicit ``n_classes`` has a lower held-out log-likelihood than a smaller ``D`` (the data does not
        support that many classes); the message names both likelihoods.

    Raises
    ------
    InvalidParameterError
        ``n_classes < 1``, or fewer than 5 problems per class.
    """
    auto = n_classes == "auto"
    if not auto:
        try:
            D = int(n_classes)
        except (TypeError, ValueError):
            raise InvalidParameterError(
                f"difficulty classes must be an integer >= 1 or 'auto', got {n_classes!r}"
            ) from None
        if D < 1:
            raise InvalidParameterError(f"difficulty classes must be >= 1, got {D}")
        if ev.n < MIN_PROBLEMS_PER_CLASS * D:
            raise InvalidParameterError(
                f"{D} difficulty classes need at least {MIN_PROBLEMS_PER_CLASS * D} problems of per-problem data "
                f"({MIN_PROBLEMS_PER_CLASS} per class), got {ev.n}: use fewer classes or more data"
            )
    upto = int(max_classes) if auto else max(int(max_classes), D)
    sel = select_classes(ev, upto, folds=folds, pooled_p_s=pooled_p_s, seed=seed)
    chosen = sel["best"] if auto else D
    held = sel["per_problem"]
    if not auto and chosen > sel["best"]:
        d0 = sel["best"]
        where = f"{held[chosen]:.4f}" if chosen in held else "not computable (too few problems per class)"
        warnings.warn(
            f"{chosen} difficulty classes are more than the data supports: held-out log-likelihood per problem "
            f"{where} at D = {chosen} against {held[d0]:.4f} at D = {d0}, the fewest classes within one standard "
            f"error of the best ({sel['folds']}-fold cross-validation over {ev.n} problems); consider "
            f"--difficulty-classes {d0} (or auto)",
            DifficultyWarning,
            stacklevel=2,
        )
    fit = fit_classes(ev, chosen, pooled_p_s=pooled_p_s, seed=seed)
    card = {
        "estimated_from": ev.card,
        "data": ev.summary(),
        "n_classes": chosen,
        "selection": "fewest classes within one paired standard error of the best held-out log-likelihood per "
        "problem"
        if auto
        else "asked for",
        "heldout_best_mean": sel["top"],
        "heldout_choice": sel["best"],
        "heldout_loglik_per_problem": {str(k): v for k, v in held.items()},
        "heldout_loglik_se": {str(k): v for k, v in sel["se"].items()},
        "folds": sel["folds"],
        "train_loglik": fit.loglik,
        "p_s": "estimated" if ev.has_strong else "not identified by the data: the pooled p_s for every class",
        "model": "class d ~ prior; steps after a correct prefix right w.p. p_w(d) (M_w), p_s(d) (M_s); "
        "an ungraded-steps solution of L steps right w.p. p^L",
    }
    return fit.classes(card)


# ---------------------------------------------------------------------- evidence builders
def evidence_from_items(
    items: Iterable[Any],
    weak_generator: str | None = None,
    strong_generator: str | None = None,
    *,
    supervision: str = "auto",
    source: str = "items",
) -> ProblemEvidence:
    """Per-problem evidence from ProcessBench items or scored items (grouped by problem text).

    Parameters
    ----------
    items : iterable
        :class:`~trim_pomdp.datasets.processbench.ProcessBenchItem` or
        :class:`~trim_pomdp.datasets.scored.ScoredItem` objects.
    weak_generator, strong_generator : str, optional
        Generator names of M_w and M_s. Default: the only generator present is M_w (none is M_s).
    supervision : {"auto", "steps", "outcome"}
        ``steps``: step labels (``label``, the first erroneous step); ``outcome``: final-answer correctness and
        step counts; ``auto``: per item, step labels unless the record says ``step_labels_known: false``.
    source : str
        What the items are, for the card.
    """
    from trim_pomdp.datasets.processbench import step_classes

    if supervision not in ("auto", "steps", "outcome"):
        raise InvalidParameterError(f"supervision must be 'auto', 'steps' or 'outcome', got {supervision!r}")
    rows = [(getattr(it, "item", it), getattr(it, "extra", {}) or {}) for it in items]
    gens = sorted({r.generator for r, _ in rows})
    if weak_generator is None:
        if len(gens) != 1:
            raise InvalidParameterError(
                f"the items come from several generators {gens}: name the weak (and strong) one"
            )
        weak_generator = gens[0]
    for name in (weak_generator, strong_generator):
        if name is not None and name not in gens:
            raise InvalidParameterError(f"no items from generator {name!r}; available: {gens}")
    problems: dict[str, int] = {}
    steps: list[list[int]] = []
    out: list[tuple[int, int, bool, int]] = []
    for it, extra in rows:
        role = 0 if it.generator == weak_generator else 1 if it.generator == strong_generator else None
        if role is None or not it.steps:
            continue
        q = problems.setdefault(it.problem, len(problems))
        if q == len(steps):
            steps.append([0, 0, 0, 0])
        use_steps = supervision == "steps" or (
            supervision == "auto" and extra.get("step_labels_known", True) is not False
        )
        if use_steps:
            z = step_classes(int(it.label), len(it.steps))
            steps[q][2 * role] += int(np.sum(z == 0))
            steps[q][2 * role + 1] += int(np.sum(z == 2))
        else:
            if extra.get("final_answer_correct_known", True) is False:
                raise DataFormatError(
                    f"item {it.id!r} has neither step labels nor a graded final answer: it says nothing about "
                    "difficulty"
                )
            out.append((q, role, bool(it.final_answer_correct), len(it.steps)))
    if not problems:
        raise InvalidParameterError(
            "no items of the weak or strong generator to estimate difficulty classes from"
        )
    o = np.array(out, dtype=object).reshape(-1, 4)
    return ProblemEvidence(
        np.array(steps),
        o[:, 0].astype(np.int64),
        o[:, 1].astype(np.int64),
        o[:, 2].astype(bool),
        o[:, 3].astype(np.int64),
        [f"problem-{i}" for i in range(len(problems))],
        {
            "source": source,
            "weak_generator": weak_generator,
            "strong_generator": strong_generator,
            "supervision": supervision,
        },
    )


def evidence_from_records(
    records: Any,
    steps: int | Mapping[str, int],
    *,
    source: str = "records",
) -> ProblemEvidence:
    """Per-query evidence from outcome records: the reserved policies ``weak`` (M_w alone) and ``strong`` (M_s
    alone), each graded row a final outcome.

    Records say whether a query was answered right but not how many steps its solution took, so ``steps``
    supplies ``L``: one number for every query, or a mapping from query id to its step count (a query missing
    from the mapping is an error). Several rows of one query (repeated runs) are several graded solutions.

    Parameters
    ----------
    records : Records
        As read by :func:`trim_pomdp.evaluation.records.read_records`.
    steps : int or mapping of str to int
        Steps per solution (``>= 1``).
    source : str
        What the records are, for the card.
    """
    mask = np.isin(records.policy, ("weak", "strong"))
    if not mask.any():
        raise InvalidParameterError(
            "the records have no rows of the reserved policies 'weak' (M_w alone) or 'strong' (M_s alone): "
            "difficulty classes are estimated from how each model alone does on every query"
        )
    qids = [str(q) for q in records.query_id[mask]]
    index: dict[str, int] = {}
    problem = np.array([index.setdefault(q, len(index)) for q in qids], dtype=np.int64)
    if isinstance(steps, Mapping):
        missing = sorted({q for q in qids if q not in steps})
        if missing:
            raise InvalidParameterError(
                f"no step count for {len(missing)} queries of the records (first {missing[:3]}): give every "
                "query's number of steps, or one number for all"
            )
        L = np.array([int(steps[q]) for q in qids], dtype=np.int64)
    else:
        L = np.full(len(qids), int(steps), dtype=np.int64)
    if L.size and L.min() < 1:
        raise InvalidParameterError(f"step counts must be >= 1, got {int(L.min())}")
    return ProblemEvidence(
        np.zeros((len(index), 4), dtype=np.int64),
        problem,
        (records.policy[mask] == "strong").astype(np.int64),
        records.correct[mask].astype(bool),
        L,
        list(index),
        {
            "source": source,
            "supervision": "outcome",
            "steps": steps if isinstance(steps, int) else "per query",
        },
    )


def evidence_from_simulator(sim: Any, n: int, seed: int | None = None) -> ProblemEvidence:
    """Per-query step labels of ``n`` simulated training queries: M_w's and M_s's own solutions of each.

    The same draws as :meth:`~trim_pomdp.evaluation.simulator.Simulator.labelled_statistics` (which pools them);
    everything is SIMULATED.
    """
    sim.labelled_statistics(n, seed)  # draws the queries (M_w alone) and keeps their step outcomes
    H = sim.horizon
    cols = np.arange(H)[None, :]
    live = cols < sim.n_steps[:, None]

    def counts(ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first_bad = np.where((~ok & live).any(axis=1), np.argmax(~ok & live, axis=1), H)
        at_risk = live & (cols <= first_bad[:, None])
        return (at_risk & ok).sum(axis=1), (at_risk & ~ok).sum(axis=1)

    w0, w2 = counts(sim.u_weak < sim.p_w[:, None])
    s0, s2 = counts(sim.u_strong < sim.p_s[:, None])
    return ProblemEvidence(
        np.stack([w0, w2, s0, s2], axis=1),
        problem_ids=sim.query_ids(n, seed),
        card={"source": "simulated training queries (SIMULATED)", "queries": int(n), "seed": seed},
    )


def pooled_accuracies(ev: ProblemEvidence) -> tuple[float | None, float | None]:
    """The pooled ``#S0 / (#S0 + #S2)`` of each model over the step labels (``None`` without any)."""
    S = ev.steps.sum(axis=0)
    w = S[0] / (S[0] + S[1]) if S[0] + S[1] else None
    s = S[2] / (S[2] + S[3]) if S[2] + S[3] else None
    return w, s


def load_evidence(
    source: str | os.PathLike[str] | None,
    *,
    weak_generator: str | None = None,
    strong_generator: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    queries: int = 2000,
    seed: int = 0,
    simulator: Callable[[], Any] | None = None,
) -> ProblemEvidence:
    """The per-problem evidence a command line names.

    Parameters
    ----------
    source : str or path, optional
        ``"simulator"``: ``queries`` training queries of the default simulator (SIMULATED); a scored-items JSONL
        file (:func:`~trim_pomdp.datasets.scored.load_scored_items`; step labels where known, else graded
        outcomes); ``"processbench"``: ProcessBench's labelled items of ``weak_generator`` and
        ``strong_generator`` (from ``data_dir``, default the hub). ``None``: ``processbench`` when both
        generators are given, else ``simulator``.
    weak_generator, strong_generator : str, optional
        Generators of M_w and M_s in the items.
    data_dir : path, optional
        ProcessBench folder for ``processbench``.
    queries, seed : int
        Simulated training queries and their seed.
    simulator : callable, optional
        Makes the simulator for ``"simulator"`` (e.g. :class:`~trim_pomdp.evaluation.simulator.Simulator`; this
        layer does not import the evaluation layer, so the caller hands it over).
    """
    if source is None:
        source = "processbench" if weak_generator and strong_generator else "simulator"
    if str(source) == "simulator":
        if simulator is None:
            raise InvalidParameterError("difficulty data 'simulator' needs simulator= (a simulator factory)")
        if int(queries) < MIN_PROBLEMS_PER_CLASS:
            raise InvalidParameterError(f"simulated training queries must be >= {MIN_PROBLEMS_PER_CLASS}")
        return evidence_from_simulator(simulator(), int(queries), seed)
    if str(source) == "processbench":
        from trim_pomdp.pomdp.estimation import processbench_items

        if not (weak_generator and strong_generator):
            raise InvalidParameterError(
                "difficulty from ProcessBench needs --weak-generator and --strong-generator"
            )
        return evidence_from_items(
            processbench_items(data_dir), weak_generator, strong_generator, source="ProcessBench"
        )
    path = Path(source)
    if not path.is_file():
        raise DataFormatError(
            f"difficulty data {str(source)!r} is neither 'simulator', 'processbench' nor a scored-items file"
        )
    from trim_pomdp.datasets.scored import load_scored_items

    return evidence_from_items(load_scored_items(path), weak_generator, strong_generator, source=str(path))


def with_difficulty(
    params: TrimParams,
    ev: ProblemEvidence,
    n_classes: int | str,
    *,
    max_classes: int = 4,
    seed: int = 0,
) -> tuple[TrimParams, list[str]]:
    """``params`` with difficulty classes estimated from ``ev`` (``params.p_s`` for every class where the data
    says nothing about M_s), and the texts of the :class:`DifficultyWarning` raised on the way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DifficultyWarning)
        dc = estimate_difficulty(ev, n_classes, max_classes=max_classes, pooled_p_s=params.p_s, seed=seed)
    texts = [str(w.message) for w in caught if issubclass(w.category, DifficultyWarning)]
    for w in caught:
        if not issubclass(w.category, DifficultyWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return params.replace(difficulty=dc), texts
