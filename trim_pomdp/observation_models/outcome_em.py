"""Outcome supervision: the observation function and ``p_w`` fitted from final-answer correctness alone.

Without step labels, the class of each step is hidden, but a solution's classes follow the TRIM-POMDP's own chain
(S0 → S2 → S1 with next-step accuracy ``p_w``; :mod:`~trim_pomdp.observation_models.chain`), and the final
answer says whether an error happened: a wrong answer had one, and a right answer had none, except with
probability ``rho`` (a right answer after an erroneous step). Expectation–maximisation over each solution's
first-error position fits everything at once:

- **E-step**: the exact posterior over the ``T + 1`` class paths of every solution given its binned
  observations and its outcome (:func:`~trim_pomdp.observation_models.chain.path_posterior`), hence each step's
  class probabilities;
- **M-step**: the same reflected-KDE densities as step supervision, refitted with those probabilities as sample
  weights (every step counts in every class with its weight), their exact bin masses, ``p_w = E[#S0] / (E[#S0] +
  E[#S2])`` (the TRIM estimator on expected counts) and, unless fixed, ``rho = E[#right answers with an error] /
  E[#answers with an error]``.

**What is maximised, and why it never decreases.** The log-likelihood is that of the binned observations and
the outcomes, ``sum_i log P(o_1 … o_T, y)`` — the model the planner and the belief filter use. A KDE refitted
with posterior weights is a smoothed M-step (EMS; Silverman et al. 1990), not the exact maximiser of the EM
objective, so on its own it could lower the likelihood. Each step is therefore checked: when the new parameters
score lower than the current ones, the step is halved (class weights, ``p_w`` and ``rho`` moved part of the way)
up to 10 times; when no part of it helps, the iteration stops there (``stop_reason``: ``"no ascent"``). The
reported likelihood therefore never decreases. The kernel bandwidths are fixed per class at the start (the
bandwidth rule on the initial class weights), so every iterate is an ordinary weighted KDE of the same family,
and the per-point bin masses are computed once.

**Choices.** ``rho`` is estimated by default: a right answer after an erroneous step is common (23% of
ProcessBench's erroneous solutions end right), and fixing it at 0 makes every low score of a right solution a
false alarm of S0. Pass ``rho`` to fix it (e.g. from labelled data of a similar generator). Restarts begin from
different guesses of the first-error positions of the wrong solutions (the first from the scores: a step's
chance is proportional to ``1 - r``; the others random), and the best final likelihood wins. Convergence: the
mean log-likelihood per step improves by less than ``tol``; ``max_iter`` and ``time_limit`` stop a run that has
not converged, with a warning, the best iterate kept and ``converged: false`` in the card.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from trim_pomdp.constants import HIDDEN_CLASSES
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.observation_models.binning import (
    DEFAULT_BINS,
    DEFAULT_DENSITY_SCALE,
    DEFAULT_LOGIT_EPS,
    DEFAULT_SCALE_EPS,
    make_edges,
    to_density_scale,
)
from trim_pomdp.observation_models.chain import PROB_FLOOR, Trajectories, path_posterior
from trim_pomdp.observation_models.fitting import MIN_FIRST_STEPS, check_bandwidth, scale_eps_for
from trim_pomdp.observation_models.kde import ReflectedKDE
from trim_pomdp.observation_models.tables import StepArrays

__all__ = ["EMResult", "fit_outcome_em"]

S0, S1, S2 = 0, 1, 2
#: Halvings of a step that lowered the likelihood before the iteration stops.
MAX_HALVINGS = 10


@dataclass
class EMResult:
    """What :func:`fit_outcome_em` returns: the model and how the fit went.

    Attributes
    ----------
    model : ObservationModel
        An ordinary observation model (its card records the supervision, ``p_w``, ``rho`` and the run).
    p_w, rho : float
    log_likelihood : float
        Final ``sum_i log P(o, y)`` of the best restart (nats).
    history : list of float
        Mean log-likelihood per step after each iteration of the best restart (never decreasing).
    converged : bool
    stop_reason : str
    restarts : list of dict
        Per restart: ``log_likelihood``, ``iterations``, ``converged``, ``stop_reason``, ``seconds``.
    seconds : float
    """

    model: Any
    p_w: float
    rho: float
    log_likelihood: float
    history: list[float]
    converged: bool
    stop_reason: str
    restarts: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def seconds_per_iteration(self) -> float:
        """Mean wall time of one iteration over all restarts."""
        its = sum(r["iterations"] for r in self.restarts)
        return self.seconds / its if its else float("nan")


@dataclass
class _Steps:
    """The flat steps of the trajectories and their fixed bins."""

    r: np.ndarray
    m: np.ndarray
    t: np.ndarray
    item: np.ndarray
    col: np.ndarray
    idx: np.ndarray  # bin index: r-bin at t = 1, r-bin * n + m-bin after
    u_r: np.ndarray = field(default_factory=lambda: np.zeros(0))  # r and m in the densities' coordinate
    u_m: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def table(self) -> StepArrays:
        return StepArrays(self.r, self.m, np.zeros(self.r.size, dtype=np.int64), self.t, self.item)


def _steps(traj: Trajectories, r_edges: np.ndarray, m_edges: np.ndarray, scale: tuple[str, float]) -> _Steps:
    live = traj.valid
    item, col = np.nonzero(live)
    r, m = traj.r[live], traj.m[live]
    n = r_edges.size - 1
    ir = np.clip(np.searchsorted(r_edges, r, side="right") - 1, 0, n - 1)
    im = np.clip(np.searchsorted(m_edges, np.nan_to_num(m), side="right") - 1, 0, n - 1)
    first = col == 0
    u_r, u_m = to_density_scale(r, *scale), to_density_scale(m, *scale)
    return _Steps(r, m, col + 1, item, col, np.where(first, ir, ir * n + im), u_r, u_m)


@dataclass
class _Density:
    """One class's density of one kind on fixed points: per-point bin masses for any weights."""

    rows: np.ndarray  # which steps are its points
    left: np.ndarray  # (N, n) masses along r
    right: np.ndarray | None  # (N, n) masses along m (None: 1-D)
    box: np.ndarray  # (N,) box masses
    bandwidth: np.ndarray

    def bins(self, w: np.ndarray) -> np.ndarray:
        wp = w[self.rows]
        norm = float(wp @ self.box)
        if self.right is None:
            return (wp @ self.left) / norm
        return (self.left.T @ (self.right * wp[:, None])) / norm


def _density(
    steps: _Steps,
    rows: np.ndarray,
    w: np.ndarray,
    bandwidth: Any,
    pair: bool,
    edges: tuple[np.ndarray, np.ndarray],
) -> _Density:
    X = np.column_stack([steps.u_r[rows], steps.u_m[rows]]) if pair else steps.u_r[rows][:, None]
    keep = w[rows] > 0
    if keep.sum() < 2:
        keep[:] = True  # a class with no weight yet: the rule's spread over all its candidate points
    h = ReflectedKDE(bandwidth=bandwidth).fit(X[keep], sample_weight=w[rows][keep]).bandwidth_
    kde = ReflectedKDE(bandwidth=h.tolist()).fit(X)
    left = kde.point_interval_masses(0, edges[0])  # edges in the densities' coordinate
    right = kde.point_interval_masses(1, edges[1]) if pair else None
    return _Density(rows, left, right, kde.point_masses_, h)


class _Model:
    """The densities of one restart (fixed bandwidths) and the bin probabilities of given class weights."""

    def __init__(
        self, steps: _Steps, W: np.ndarray, settings: dict[str, Any], edges: tuple[np.ndarray, np.ndarray]
    ):
        n = edges[0].size - 1
        edges = (
            to_density_scale(edges[0], *settings["scale"]),
            to_density_scale(edges[1], *settings["scale"]),
        )
        self.n = n
        self.r_only = settings["r_only"]
        later = np.flatnonzero(steps.t >= 2)
        first = np.flatnonzero(steps.t == 1)
        every = np.arange(steps.r.size)
        self.first_sources: dict[str, str] = {}
        self.pair: list[_Density] = []
        self.first: list[_Density] = []
        for c, name in enumerate(HIDDEN_CLASSES):
            use_first = c != S1 and W[first, c].sum() >= max(settings["min_first_steps"], 2)
            self.first_sources[name] = "first" if use_first else "all"
            bw = settings["bandwidth"]
            self.pair.append(_density(steps, later, W[:, c], bw, not self.r_only, edges))
            self.first.append(_density(steps, first if use_first else every, W[:, c], bw, False, edges))

    def probs(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.n
        pair = np.empty((3, n, n))
        first = np.empty((3, n))
        for c in range(3):
            mass = self.pair[c].bins(W[:, c])
            if self.r_only:
                mass = np.repeat((mass / mass.sum())[:, None], n, axis=1) / n
            pair[c] = mass / mass.sum()
            fm = self.first[c].bins(W[:, c])
            first[c] = fm / fm.sum()
        return pair, first

    def bandwidths(self) -> dict[str, dict[str, list[float]]]:
        return {
            name: {"pair": self.pair[c].bandwidth.tolist(), "first": self.first[c].bandwidth.tolist()}
            for c, name in enumerate(HIDDEN_CLASSES)
        }


def _log_emissions(steps: _Steps, pair: np.ndarray, first: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    logL = np.zeros((*shape, 3))
    is_first = steps.t == 1
    lik = np.where(
        is_first[:, None],
        first[:, np.where(is_first, steps.idx, 0)].T,
        pair.reshape(3, -1)[:, np.where(is_first, 0, steps.idx)].T,
    )
    logL[steps.item, steps.col] = np.log(np.maximum(lik, PROB_FLOOR))
    return logL


def _initial_paths(traj: Trajectories, rng: np.random.Generator | None, rho0: float) -> np.ndarray:
    """``(n, H + 1)`` initial path probabilities: first error at each step, then "no error"."""
    n, H = traj.r.shape
    live = traj.valid
    guess = np.where(live, 1.0 - np.nan_to_num(traj.r) + 1e-3, 0.0)
    if rng is not None:  # a random guess of the first-error position
        guess = np.where(live, rng.dirichlet(np.ones(H), size=n), 0.0)
    guess /= guess.sum(axis=1, keepdims=True)
    wrong = traj.outcome == 0
    share = np.where(wrong, 1.0, rho0)[:, None]
    return np.concatenate([guess * share, (1.0 - share)], axis=1)


def _class_weights(paths: np.ndarray, steps: _Steps) -> np.ndarray:
    p_at = paths[:, :-1]
    before = np.cumsum(p_at, axis=1) - p_at
    W = np.stack([1.0 - before - p_at, before, p_at], axis=2)[steps.item, steps.col]
    W = np.clip(W, 0.0, 1.0)
    return W / W.sum(axis=1, keepdims=True)


def _chain_update(
    W: np.ndarray, post: Any, traj: Trajectories, fixed_rho: float | None
) -> tuple[float, float]:
    p_w = float(W[:, S0].sum() / (W[:, S0].sum() + W[:, S2].sum()))
    if fixed_rho is not None:
        return p_w, fixed_rho
    p_err = 1.0 - post.p_no_error
    rho = float(p_err[traj.outcome == 1].sum() / p_err.sum())
    return p_w, min(max(rho, 0.0), 0.999)


@dataclass
class _Run:
    W: np.ndarray
    p_w: float
    rho: float
    loglik: float
    history: list[float]
    iterations: int
    converged: bool
    stop_reason: str
    seconds: float
    model: _Model


def _evaluate(model: _Model, W: np.ndarray, p_w: float, rho: float, steps: _Steps, traj: Trajectories) -> Any:
    pair, first = model.probs(W)
    logL = _log_emissions(steps, pair, first, traj.r.shape)
    return path_posterior(logL, traj.lengths, min(max(p_w, 1e-9), 1 - 1e-9), rho, traj.outcome)


def _run_em(
    traj: Trajectories,
    steps: _Steps,
    edges: tuple[np.ndarray, np.ndarray],
    settings: dict[str, Any],
    rng: np.random.Generator | None,
    deadline: float,
    report: Any,
) -> _Run:
    start = time.perf_counter()
    fixed = settings["rho"]
    rho = 0.1 if fixed is None else fixed
    W = _class_weights(_initial_paths(traj, rng, rho), steps)
    model = _Model(steps, W, settings, edges)
    p_w = float(W[:, S0].sum() / (W[:, S0].sum() + W[:, S2].sum()))
    post = _evaluate(model, W, p_w, rho, steps, traj)
    loglik = float(post.log_likelihood.sum())
    n_steps = steps.r.size
    history = [loglik / n_steps]
    converged, reason, it = False, "max_iter", 0
    for it in range(1, settings["max_iter"] + 1):
        W_new = _class_weights(np.concatenate([post.p_error_at, post.p_no_error[:, None]], axis=1), steps)
        p_new, rho_new = _chain_update(W_new, post, traj, fixed)
        accepted = None
        for k in range(MAX_HALVINGS + 1):
            a = 0.5**k
            cand = (W + a * (W_new - W), p_w + a * (p_new - p_w), rho + a * (rho_new - rho))
            cand_post = _evaluate(model, *cand, steps, traj)
            cand_ll = float(cand_post.log_likelihood.sum())
            if cand_ll >= loglik:
                accepted = (cand, cand_post, cand_ll)
                break
        if accepted is None:
            converged, reason = True, "no ascent"
            break
        (W, p_w, rho), post, new_ll = accepted
        gain = (new_ll - loglik) / n_steps
        loglik = new_ll
        history.append(loglik / n_steps)
        report(it, history[-1])
        if gain < settings["tol"]:
            converged, reason = True, "tolerance"
            break
        if time.perf_counter() > deadline:
            reason = "time_limit"
            break
    return _Run(W, p_w, rho, loglik, history, it, converged, reason, time.perf_counter() - start, model)


def _check_data(traj: Trajectories) -> None:
    if np.isnan(traj.outcome).any():
        bad = int(np.flatnonzero(np.isnan(traj.outcome))[0])
        raise InvalidParameterError(
            f"outcome supervision needs every final answer graded; item {traj.ids[bad]!r} has no known verdict"
        )
    if not np.any(traj.outcome == 0):
        raise InvalidParameterError(
            "outcome supervision needs wrong final answers: every solution here is right, so nothing shows what "
            "an erroneous step scores like (add solutions with wrong answers, or fit on step labels)"
        )
    vals = traj.r[traj.valid]
    if np.ptp(vals) == 0:
        raise InvalidParameterError(
            f"every step score is {vals[0]!r}: identical scores cannot tell right steps from wrong ones"
        )


def fit_outcome_em(
    items: Sequence[Any] | Trajectories,
    *,
    n_bins: int = 20,
    bins: str = DEFAULT_BINS,
    logit_eps: float = DEFAULT_LOGIT_EPS,
    bandwidth: str | float = "scott",
    r_only: bool = False,
    density_scale: str = DEFAULT_DENSITY_SCALE,
    scale_eps: float = DEFAULT_SCALE_EPS,
    rho: float | None = None,
    restarts: int = 3,
    seed: int = 0,
    tol: float = 1e-6,
    max_iter: int = 500,
    time_limit: float = 60.0,
    min_first_steps: int = MIN_FIRST_STEPS,
    card: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> EMResult:
    """Fit an observation model and ``p_w`` from scores and final-answer correctness (module docstring).

    Parameters
    ----------
    items : sequence of ScoredItem, or Trajectories
        Scored solutions with known verdicts (step labels, if any, are ignored).
    n_bins, bins, logit_eps, bandwidth, r_only, density_scale, scale_eps, min_first_steps
        As for :meth:`~trim_pomdp.observation_models.observation.ObservationModel.fit` (``bandwidth="cv"`` is
        not available here).
    rho : float, optional
        Fix ``P(right answer | an error)``; default: estimated.
    restarts : int, default=3
        Runs from different initial guesses; the best likelihood wins.
    seed : int, default=0
        Seed of the random initial guesses.
    tol : float, default=1e-6
        Convergence: gain in mean log-likelihood per step (nats) below this.
    max_iter : int, default=500
        Iterations per restart.
    time_limit : float, default=60
        Seconds for all restarts together; a run still going then stops (not converged).
    card : mapping, optional
        Extra card entries (PRM, data, command ...).
    progress : bool, default=False
        Report the iterations (log-likelihood per step) through :class:`~trim_pomdp._internal.progress.Progress`.

    Raises
    ------
    InvalidParameterError
        Ungraded items, no wrong answer, identical scores, ``bandwidth="cv"``, or bad settings.
    """
    # One BLAS/OpenMP thread: the products here are small (steps x bins), and threaded BLAS on a busy machine made
    # the ProcessBench-scale fit 3-7x slower in wall time (benchmarks/em.py).
    with threadpool_limits(limits=1):
        from trim_pomdp.observation_models.observation import ObservationModel

        traj = items if isinstance(items, Trajectories) else Trajectories.from_scored(list(items))
        _check_data(traj)
        bandwidth = _check_settings(bandwidth, rho, restarts, max_iter, tol, time_limit)
        r_all = traj.r[traj.valid]
        r_edges = make_edges(bins, n_bins, r_all, eps=logit_eps)
        m_edges = (
            make_edges(bins, n_bins, traj.m[~np.isnan(traj.m)], eps=logit_eps)
            if bins == "quantile"
            else r_edges
        )
        if density_scale != "score":
            scale_eps = scale_eps_for([r_edges, m_edges], scale_eps)
        scale = (density_scale, float(scale_eps))
        steps = _steps(traj, r_edges, m_edges, scale)
        settings = {
            "scale": scale,
            "rho": rho,
            "bandwidth": bandwidth,
            "r_only": bool(r_only),
            "min_first_steps": int(min_first_steps),
            "tol": float(tol),
            "max_iter": int(max_iter),
        }
        start = time.perf_counter()
        runs = _restarts(
            traj, steps, (r_edges, m_edges), settings, restarts, seed, start + float(time_limit), progress
        )
        best = max(runs, key=lambda run: run.loglik)
        seconds = time.perf_counter() - start
        if not best.converged:
            warnings.warn(
                f"outcome EM stopped before converging ({best.stop_reason} after {best.iterations} iterations); the "
                "best iterate is kept and the card says converged: false (raise --em-max-iter or --time-limit)",
                stacklevel=2,  # the caller of fit_outcome_em
            )
        table = steps.table()
        restart_rows = [_restart_row(r) for r in runs]
        settings_card = {"seed": seed, "tol": tol, "max_iter": max_iter, "time_limit": time_limit}
        info = _em_card(traj, best, restart_rows, settings_card, seconds, rho_fixed=rho is not None)
        info.update(dict(card or {}))
        model = ObservationModel.fit(
            table,
            n_bins=n_bins,
            bandwidth=bandwidth,
            r_only=r_only,
            card=info,
            bins=bins,
            logit_eps=logit_eps,
            min_first_steps=min_first_steps,
            random_state=seed,
            class_weights=best.W,
            bandwidths=best.model.bandwidths(),
            first_sources=best.model.first_sources,
            density_scale=density_scale,
            scale_eps=scale_eps,
        )
        model.card["counts_are"] = "expected counts under the final posterior"
        return EMResult(
            model,
            best.p_w,
            best.rho,
            best.loglik,
            best.history,
            best.converged,
            best.stop_reason,
            restart_rows,
            seconds,
        )


def _check_settings(
    bandwidth: str | float, rho: float | None, restarts: int, max_iter: int, tol: float, time_limit: float
) -> str | float:
    """The checked bandwidth; one-line errors for settings outcome EM cannot run with."""
    if bandwidth == "cv":
        raise InvalidParameterError(
            "bandwidth='cv' is not available with outcome supervision; use scott or a number"
        )
    checked = check_bandwidth(bandwidth)
    if rho is not None and not 0.0 <= rho < 1.0:
        raise InvalidParameterError(f"rho must lie in [0, 1), got {rho!r}")
    for name, v in (("restarts", restarts), ("max_iter", max_iter)):
        if not (isinstance(v, int) and v >= 1):
            raise InvalidParameterError(f"{name} must be an int >= 1, got {v!r}")
    if not (tol > 0 and time_limit > 0):
        raise InvalidParameterError("tol and time_limit must be > 0")
    return checked


def _restart_row(r: _Run) -> dict[str, Any]:
    """One restart's summary in the card."""
    return {
        "log_likelihood": r.loglik,
        "iterations": r.iterations,
        "converged": r.converged,
        "stop_reason": r.stop_reason,
        "seconds": r.seconds,
    }


def _em_card(
    traj: Trajectories,
    best: _Run,
    restart_rows: list[dict[str, Any]],
    settings: dict[str, Any],
    seconds: float,
    *,
    rho_fixed: bool,
) -> dict[str, Any]:
    """What the observation model's card records about an outcome-supervised fit."""
    return {
        "supervision": "outcome",
        "p_w": best.p_w,
        "rho": best.rho,
        "rho_source": "fixed" if rho_fixed else "estimated by EM",
        "em": {
            "log_likelihood": best.loglik,
            "log_likelihood_per_step": best.history,
            "iterations": best.iterations,
            "converged": best.converged,
            "stop_reason": best.stop_reason,
            "restarts": restart_rows,
            **settings,
            "seconds": seconds,
            "likelihood": "binned observations and outcomes, sum_i log P(o_1..o_T, y)",
        },
        "n_items": len(traj),
        "n_right": int(np.sum(traj.outcome == 1)),
    }


def _restarts(
    traj: Trajectories,
    steps: Any,
    edges: tuple[np.ndarray, np.ndarray],
    settings: dict[str, Any],
    restarts: int,
    seed: int,
    deadline: float,
    progress: bool,
) -> list[_Run]:
    """EM from ``restarts`` starts (the first deterministic, the others seeded), until the deadline."""
    from trim_pomdp._internal.progress import Progress

    runs: list[_Run] = []
    with Progress(None, "EM (outcome supervision)", enabled=progress, unit="iterations") as bar:
        for k in range(restarts):
            rng = None if k == 0 else np.random.default_rng([seed, k])

            def report(it: int, ll: float, k: int = k) -> None:
                bar.advance(1, note=f"restart {k + 1}/{restarts}, iteration {it}: {ll:.5f} nats/step")

            runs.append(_run_em(traj, steps, edges, settings, rng, deadline, report))
            if time.perf_counter() > deadline:
                break
    return runs
