"""Fit :class:`~trim_pomdp.evaluation.simulator.SimulatorParams` from ProcessBench statistics.

Each number comes from the solutions of one generator in ProcessBench (human first-error labels):

- next-step accuracies: the means of ``p_w`` (weak generator) and ``p_s`` (strong generator) are set so that
  the simulated pooled ``S0 / (S0 + S2)`` — the estimator the TRIM model uses for its single p — equals the
  generator's pooled value on ProcessBench (easy problems survive more steps, so the pooled value exceeds the
  mean per-problem accuracy); the spread across problems (one Beta concentration κ for both) is chosen so
  that the simulated correlation of "the solution has an error" between the weak and the strong solution of
  one problem equals ProcessBench's correlation between two solutions (by different generators) of the same
  problem. (A per-generator beta-geometric likelihood does not identify κ here: ProcessBench's balanced
  sampling of erroneous and correct solutions removes the spread.)
- recovery: among the weak generator's erroneous solutions with ``m ≥ 1`` steps after the error, the final
  answer is still right with probability ``1 − (1 − ρ)^m``; ``ρ`` by maximum likelihood (solutions whose error
  is the last step cannot recover and are left out);
- step counts: the weak generator's histogram, solutions longer than H folded into H;
- step token counts: a tokenizer's counts when given, else the proxy :func:`approx_token_count`; the
  quantiles of the weak generator's step lengths, the intra-solution correlation of their normal scores, and
  the strong / weak ratio of mean step lengths; the strong length spread is the strong generator's
  within-solution log-s.d.

Caveat (in the card too): ProcessBench over-samples erroneous solutions, so its per-step accuracies are lower
than the generators' natural ones; the simulator inherits that (it is a hard-ish benchmark, not a model of a
deployment). The copula correlations of ``p_w`` and ``p_s`` across problems and of the two models' step
outcomes at the same step are not identified by ProcessBench (steps are not aligned across generators) and are
set by judgement (0.5 each).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import optimize, special

from trim_pomdp.datasets.processbench import SPLITS, ProcessBenchItem
from trim_pomdp.evaluation.simulator import SimulatorParams
from trim_pomdp.exceptions import InvalidParameterError

__all__ = [
    "DEFAULT_SPLIT",
    "DEFAULT_STRONG_GENERATOR",
    "DEFAULT_WEAK_GENERATOR",
    "approx_token_count",
    "default_simulator_document",
    "estimate_simulator_params",
    "fit_concentration",
    "fit_mean_for_pooled",
    "fit_recovery",
    "pooled_step_accuracy",
    "same_problem_error_corr",
]

#: The default pair: the weakest generator present in every ProcessBench split, and the strongest math model.
DEFAULT_WEAK_GENERATOR = "Llama-3.1-8B-Instruct"
DEFAULT_STRONG_GENERATOR = "Qwen2.5-Math-72B-Instruct"
#: The default split (the paper's main evaluation is MATH-500).
DEFAULT_SPLIT = "math"
#: Judgement value of the p_w / p_s copula correlation (not identified by ProcessBench).
DEFAULT_DIFFICULTY_CORR = 0.5
#: Judgement value of the per-step weak/strong correctness copula correlation (not identified by ProcessBench).
DEFAULT_STEP_CORR = 0.5

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def approx_token_count(text: str) -> int:
    """Proxy token count without a tokenizer: words plus single non-space symbols (≥ 1).

    On LaTeX-heavy math text this tracks BPE tokenizers to within roughly ±25% (each ``\\``, brace, operator
    is about one token, as is each short word).
    """
    return max(1, len(_TOKEN_RE.findall(text)))


def _token_counter(tokenizer: Any | None) -> Callable[[str], int]:
    if tokenizer is None:
        return approx_token_count
    return lambda s: max(1, len(tokenizer.encode(s, add_special_tokens=False)))


def fit_recovery(steps_after: np.ndarray, final_correct: np.ndarray) -> float:
    """Per-step recovery probability ρ from erroneous solutions: ``P(final right) = 1 − (1 − ρ)^m``.

    Parameters
    ----------
    steps_after : array of int
        Steps after the first error (solutions with 0 are ignored: they cannot recover).
    final_correct : array of bool
        Whether the final answer is right anyway.
    """
    m = np.asarray(steps_after, dtype=float)
    y = np.asarray(final_correct, dtype=bool)
    keep = m >= 1
    m, y = m[keep], y[keep]
    if m.size == 0 or not y.any():
        return 0.0

    def nll(r: float) -> float:
        surv = m * math.log1p(-r)
        return float(-(np.where(y, np.log(-np.expm1(surv)), surv)).sum())

    res = optimize.minimize_scalar(nll, bounds=(1e-6, 0.999), method="bounded", options={"xatol": 1e-7})
    return float(res.x)


def pooled_step_accuracy(items: Sequence[ProcessBenchItem]) -> float:
    """``S0 / (S0 + S2)`` over the steps of ``items``: right steps after a correct prefix over all such."""
    k, f = _survival(items)
    total = k.sum() + f.sum()
    if total == 0:
        raise InvalidParameterError("no steps to estimate a step accuracy from")
    return float(k.sum() / total)


def same_problem_error_corr(items: Sequence[ProcessBenchItem]) -> float:
    """Correlation of "the solution has an error" between two ProcessBench solutions of the same problem.

    Over all pairs of solutions (any generators) that share a problem statement; the between-problem spread of
    difficulty is what makes it positive.
    """
    by_problem: dict[str, list[bool]] = {}
    for it in items:
        by_problem.setdefault(it.problem, []).append(it.label >= 0)
    a, b = [], []
    for errs in by_problem.values():
        for i in range(len(errs)):
            for j in range(i + 1, len(errs)):
                a.append(errs[i])
                b.append(errs[j])
    if len(a) < 10:
        raise InvalidParameterError(f"only {len(a)} pairs of solutions share a problem; need >= 10")
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def fit_concentration(
    target_corr: float,
    p_w_mean: float,
    p_s_mean: float,
    difficulty_corr: float,
    step_count_probs: np.ndarray,
    *,
    n: int = 20000,
    seed: int = 0,
) -> float:
    """Beta concentration κ (shared by ``p_w`` and ``p_s``) matching a same-problem error correlation.

    Simulates ``n`` problems (copula-coupled ``p_w``, ``p_s`` with the given means and κ; independent solution
    lengths from ``step_count_probs``) and bisects ``log κ`` on [log 0.5, log 1e4] until the correlation
    between "the weak solution has an error" and "the strong solution has an error" equals ``target_corr``
    (common random numbers, so the curve is smooth). Returns the end of the range when the target is outside
    it.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    zs = difficulty_corr * z[:, 0] + math.sqrt(max(0.0, 1 - difficulty_corr**2)) * z[:, 1]
    uw, us = special.ndtr(z[:, 0]), special.ndtr(zs)
    probs = np.asarray(step_count_probs, float)
    lw = rng.choice(np.arange(1, probs.size + 1), size=n, p=probs / probs.sum())
    ls = rng.choice(np.arange(1, probs.size + 1), size=n, p=probs / probs.sum())
    ew, es = rng.random(n), rng.random(n)

    def corr(log_k: float) -> float:
        k = math.exp(log_k)
        pw = special.betaincinv(p_w_mean * k, (1 - p_w_mean) * k, uw)
        ps = special.betaincinv(p_s_mean * k, (1 - p_s_mean) * k, us)
        x = (ew > pw**lw).astype(float)
        y = (es > ps**ls).astype(float)
        if x.std() == 0 or y.std() == 0:
            return 0.0
        return float(np.corrcoef(x, y)[0, 1])

    lo, hi = math.log(0.5), math.log(1e4)
    if corr(lo) <= target_corr:
        return 0.5
    if corr(hi) >= target_corr:
        return 1e4
    while hi - lo > 1e-3:  # κ to 0.1%
        mid = 0.5 * (lo + hi)
        if corr(mid) > target_corr:
            lo = mid
        else:
            hi = mid
    return float(round(math.exp(0.5 * (lo + hi)), 4))


def fit_mean_for_pooled(
    target_pooled: float,
    concentration: float,
    step_count_probs: np.ndarray,
    *,
    n: int = 20000,
    seed: int = 0,
) -> float:
    """Beta mean whose simulated pooled step accuracy ``S0 / (S0 + S2)`` equals ``target_pooled``.

    With problems of varying difficulty the pooled estimator over-weights easy problems (they survive more
    steps), so it exceeds the mean per-problem accuracy; this inverts that bias by simulation (common random
    numbers, bisection on the mean).
    """
    rng = np.random.default_rng(seed)
    probs = np.asarray(step_count_probs, float)
    H = probs.size
    u = rng.random(n)
    lengths = rng.choice(np.arange(1, H + 1), size=n, p=probs / probs.sum())
    steps = rng.random((n, H))
    cols = np.arange(H)[None, :]
    live = cols < lengths[:, None]

    def pooled(m: float) -> float:
        p = special.betaincinv(m * concentration, (1 - m) * concentration, u)
        fail = (steps >= p[:, None]) & live
        failed = fail.any(axis=1)
        survived = np.where(failed, np.argmax(fail, axis=1), lengths)
        return float(survived.sum() / (survived.sum() + failed.sum()))

    lo, hi = 1e-3, 1 - 1e-6
    if pooled(hi) <= target_pooled:
        return hi
    if pooled(lo) >= target_pooled:
        return lo
    while hi - lo > 1e-4:
        mid = 0.5 * (lo + hi)
        if pooled(mid) < target_pooled:
            lo = mid
        else:
            hi = mid
    return float(round(0.5 * (lo + hi), 4))


def _survival(items: Sequence[ProcessBenchItem]) -> tuple[np.ndarray, np.ndarray]:
    k = np.array([len(it.steps) if it.label < 0 else it.label for it in items])
    f = np.array([it.label >= 0 for it in items])
    return k, f


def _log_lengths(items: Sequence[ProcessBenchItem], count: Callable[[str], int]) -> list[np.ndarray]:
    return [np.log([count(s) for s in it.steps]) for it in items if it.steps]


def _within_sd(logs: list[np.ndarray]) -> float:
    dev = np.concatenate([x - x.mean() for x in logs if x.size > 1])
    dof = sum(x.size - 1 for x in logs if x.size > 1)
    return float(math.sqrt((dev**2).sum() / max(dof, 1)))


def _intra_corr(logs: list[np.ndarray], all_logs: np.ndarray) -> float:
    """Intra-solution correlation of step-length normal scores (one-way ANOVA), clipped to [0, 0.9]."""
    ranks = (np.argsort(np.argsort(all_logs, kind="stable"), kind="stable") + 0.5) / all_logs.size
    z = special.ndtri(ranks)
    groups, i = [], 0
    for x in logs:
        groups.append(z[i : i + x.size])
        i += x.size
    groups = [g for g in groups if g.size > 1]
    k = len(groups)
    n = sum(g.size for g in groups)
    grand = np.concatenate(groups).mean()
    ssb = sum(g.size * (g.mean() - grand) ** 2 for g in groups)
    ssw = sum(((g - g.mean()) ** 2).sum() for g in groups)
    msb, msw = ssb / max(k - 1, 1), ssw / max(n - k, 1)
    n0 = (n - sum(g.size**2 for g in groups) / n) / max(k - 1, 1)
    icc = (msb - msw) / (msb + (n0 - 1) * msw)
    return float(np.clip(icc, 0.0, 0.9))


def estimate_simulator_params(
    items: Sequence[ProcessBenchItem],
    weak_generator: str = DEFAULT_WEAK_GENERATOR,
    strong_generator: str = DEFAULT_STRONG_GENERATOR,
    *,
    split: str | None = DEFAULT_SPLIT,
    horizon: int = 30,
    tokenizer: Any | None = None,
    n_quantiles: int = 101,
    difficulty_corr: float = DEFAULT_DIFFICULTY_CORR,
    step_corr: float = DEFAULT_STEP_CORR,
) -> SimulatorParams:
    """Simulator parameters from ProcessBench items of a weak and a strong generator.

    Parameters
    ----------
    items : sequence of ProcessBenchItem
        E.g. ``load_processbench()``.
    weak_generator, strong_generator : str
        ProcessBench ``generator`` names.
    split : str or None
        Use only this split's items (``None``: all splits pooled; the PRM then uses ``math``'s calibration).
    horizon : int
    tokenizer : object with ``encode(text, add_special_tokens=False)``, optional
        Token counts for step lengths; default :func:`approx_token_count`.
    n_quantiles : int
        Number of step-length quantiles stored.
    difficulty_corr : float
        Copula correlation of ``p_w`` and ``p_s`` (not identified by the data).
    step_corr : float
        Copula correlation of M_w's and M_s's correctness at the same step (not identified by the data).
    """
    pool = [it for it in items if split is None or it.split == split]
    weak = [it for it in pool if it.generator == weak_generator]
    strong = [it for it in pool if it.generator == strong_generator]
    gens = sorted({it.generator for it in pool})
    for name, sel in ((weak_generator, weak), (strong_generator, strong)):
        if len(sel) < 10:
            raise InvalidParameterError(
                f"only {len(sel)} ProcessBench solutions of generator {name!r} in split {split!r}; need >= 10. "
                f"Generators there: {gens}"
            )
    count = _token_counter(tokenizer)
    n_steps = np.minimum([len(it.steps) for it in weak], horizon)
    hist = np.bincount(n_steps, minlength=horizon + 1)[1:].astype(float)
    difficulty = _fit_difficulty(items, weak, strong, hist / hist.sum(), difficulty_corr)
    err = [it for it in weak if it.label >= 0]
    rec = fit_recovery(
        np.array([len(it.steps) - it.label - 1 for it in err]),
        np.array([it.final_answer_correct for it in err]),
    )
    weak_logs = _log_lengths(weak, count)
    strong_logs = _log_lengths(strong, count)
    all_weak = np.concatenate(weak_logs)
    weak_tokens = np.exp(all_weak)
    strong_tokens = np.exp(np.concatenate(strong_logs))
    quantiles = np.quantile(weak_tokens, np.linspace(0, 1, n_quantiles))
    card = _card(weak, strong, split, tokenizer, difficulty, difficulty_corr, step_corr)
    card["observed"]["weak_mean_step_tokens"] = float(weak_tokens.mean())
    card["observed"]["strong_mean_step_tokens"] = float(strong_tokens.mean())
    return SimulatorParams(
        weak_generator=weak_generator,
        strong_generator=strong_generator,
        split=split if split is not None else DEFAULT_SPLIT,
        p_w_mean=difficulty["p_w_mean"],
        p_w_concentration=difficulty["concentration"],
        p_s_mean=difficulty["p_s_mean"],
        p_s_concentration=difficulty["concentration"],
        recovery=rec,
        step_count_probs=(hist / hist.sum()).tolist(),
        token_quantiles=[round(float(x), 3) for x in quantiles],
        strong_ratio=float(strong_tokens.mean() / weak_tokens.mean()),
        strong_length_sd=_within_sd(strong_logs),
        token_item_corr=_intra_corr(weak_logs, all_weak),
        difficulty_corr=difficulty_corr,
        step_corr=step_corr,
        horizon=horizon,
        prm={},
        card=card,
    )


def _fit_difficulty(
    items: Sequence[ProcessBenchItem],
    weak: Sequence[ProcessBenchItem],
    strong: Sequence[ProcessBenchItem],
    step_probs: np.ndarray,
    difficulty_corr: float,
) -> dict[str, float]:
    """Beta means and shared concentration of ``p_w``, ``p_s`` (see the module docstring), and their targets.

    Alternates: means that reproduce the pooled accuracies given the spread, then the spread that reproduces
    the same-problem error correlation given the means (two rounds settle to ~1e-3).
    """
    pooled_w = pooled_step_accuracy(weak)
    pooled_s = pooled_step_accuracy(strong)
    target_corr = same_problem_error_corr(items)
    pw_mean, ps_mean, conc = pooled_w, pooled_s, 0.0
    for _ in range(2):
        conc = fit_concentration(target_corr, pw_mean, ps_mean, difficulty_corr, step_probs)
        pw_mean = fit_mean_for_pooled(pooled_w, conc, step_probs)
        ps_mean = fit_mean_for_pooled(pooled_s, conc, step_probs)
    return {
        "p_w_mean": pw_mean,
        "p_s_mean": ps_mean,
        "concentration": conc,
        "pooled_w": pooled_w,
        "pooled_s": pooled_s,
        "target_corr": target_corr,
    }


def _card(
    weak: Sequence[ProcessBenchItem],
    strong: Sequence[ProcessBenchItem],
    split: str | None,
    tokenizer: Any,
    fit: dict[str, float],
    difficulty_corr: float,
    step_corr: float,
) -> dict[str, Any]:
    """How each simulator parameter was obtained, for the parameters' card."""
    return {
        "simulated": True,
        "source": "ProcessBench (Zheng et al. 2024; hub Qwen/ProcessBench), human first-error labels",
        "weak_items": len(weak),
        "strong_items": len(strong),
        "split": split or "all",
        "token_counts": "tokenizer"
        if tokenizer is not None
        else "proxy: approx_token_count (words + symbols)",
        "estimated_by": "trim_pomdp.evaluation.simulator_estimation.estimate_simulator_params",
        "methods": {
            "p_w_mean, p_s_mean": (
                "Beta means whose simulated pooled S0 / (S0 + S2) equals the generator's pooled S0 / (S0 + S2) on "
                f"ProcessBench (weak {fit['pooled_w']:.4f}, strong {fit['pooled_s']:.4f}), alternating with "
                "the concentration fit"
            ),
            "concentration": (
                "shared Beta concentration chosen so that the simulated correlation of 'has an error' between the "
                "weak and the strong solution of one problem equals ProcessBench's correlation between two "
                f"solutions of the same problem ({fit['target_corr']:.3f}, all splits)"
            ),
            "recovery": "ML of P(final answer right | error, m later steps) = 1 - (1 - rho)^m",
            "step_count_probs": "weak generator's step-count histogram, > H folded into H",
            "token_quantiles": "weak generator's step lengths",
            "token_item_corr": "one-way ANOVA intra-solution correlation of normal scores of step lengths",
            "strong_ratio": "mean strong step length / mean weak step length",
            "strong_length_sd": "strong generator's within-solution s.d. of log step length",
            "difficulty_corr": f"judgement ({difficulty_corr}); not identified by ProcessBench",
            "step_corr": f"judgement ({step_corr}); not identified by ProcessBench (steps are not aligned across "
            "generators)",
        },
        "caveat": (
            "ProcessBench over-samples erroneous solutions, so these per-step accuracies are lower than the "
            "generators' natural ones."
        ),
        "observed": {
            "weak_final_answer_correct": float(np.mean([it.final_answer_correct for it in weak])),
            "strong_final_answer_correct": float(np.mean([it.final_answer_correct for it in strong])),
            "weak_mean_steps": float(np.mean([len(it.steps) for it in weak])),
        },
    }


def default_simulator_document(
    items: Sequence[ProcessBenchItem],
    weak_generator: str = DEFAULT_WEAK_GENERATOR,
    strong_generator: str = DEFAULT_STRONG_GENERATOR,
    splits: Sequence[str] = SPLITS,
    **kw: Any,
) -> dict[str, Any]:
    """The shipped multi-split parameters document (``trim_pomdp/data/simulator_default.json``)."""
    per_split = {
        s: estimate_simulator_params(items, weak_generator, strong_generator, split=s, **kw).to_dict()
        for s in splits
    }
    return {
        "card": {
            "simulated": True,
            "what": "Parameters of trim_pomdp.evaluation.Simulator, one set per ProcessBench split.",
            "weak_generator": weak_generator,
            "strong_generator": strong_generator,
            "regenerate": (
                "python -m trim_pomdp.evaluation.simulator_estimation --data-dir <processbench dir> "
                "--out trim_pomdp/data/simulator_default.json"
            ),
            "prm": "SyntheticPRM with its calibrated defaults for the split (simulated scores)",
        },
        "default_split": DEFAULT_SPLIT,
        "splits": per_split,
    }


def _main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - exercised by regenerating the file
    import argparse
    import json

    from trim_pomdp.datasets.processbench import load_processbench

    ap = argparse.ArgumentParser(description="Regenerate the shipped simulator parameters from ProcessBench.")
    ap.add_argument("--data-dir", default=None, help="folder with <split>.json (default: the hub dataset)")
    ap.add_argument("--weak", default=DEFAULT_WEAK_GENERATOR)
    ap.add_argument("--strong", default=DEFAULT_STRONG_GENERATOR)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    doc = default_simulator_document(load_processbench(data_dir=args.data_dir), args.weak, args.strong)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":  # pragma: no cover
    _main()
