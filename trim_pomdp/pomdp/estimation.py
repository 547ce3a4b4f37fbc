"""Estimate :class:`TrimParams` from labelled steps: ProcessBench, or a simulator's labelled training queries.

:func:`estimate_from_steps` is the one estimator; :func:`estimate_params` feeds it ProcessBench items of a
chosen weak and strong generator (and :func:`trim_pomdp.evaluation.sweep.estimate_trim_params` the labelled
statistics of simulated training queries).

* ``p`` of a generator = ``#S0 / (#S0 + #S2)`` over its steps (steps before the labelled first error are S0,
  the labelled step S2; steps after it, S1, say nothing about next-step accuracy given a correct prefix).
* ``q(t)`` (termination hazard) from the weak generator's solution lengths ``n``:
  ``q(t) = (#{n = t} + a q̄) / (#{n ≥ t} + a)`` with ``q̄ = 1 / mean length`` (shrinkage of strength ``a``
  towards a geometric length distribution, so that sparse tails stay sensible); ``q(H) = 1``.
* token buckets: the ``K − 1`` interior edges are the ``k/K`` quantiles of the weak generator's step token
  counts (duplicate edges, and an edge at the shortest step, are dropped, giving fewer buckets); ``P(c | t)``
  counts the weak steps at step index ``t`` per bucket, shrunk with strength ``a`` towards the pooled bucket
  distribution; ``bucket_mean_tokens`` are the mean counts per bucket.
* ``strong_weak_ratio`` = mean step tokens of the strong generator / mean step tokens of the weak generator.

Token counts come from ``tokenizer`` when given (anything with ``encode(text)`` or a callable returning the
tokens), else from the proxy ``ceil(len(text) / 4)`` (≈ 4 characters per BPE token for English/LaTeX text).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp.datasets.processbench import step_classes
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.pomdp.params import TrimParams

__all__ = [
    "ESTIMATORS",
    "TOKEN_PROXY",
    "count_tokens",
    "estimate_from_steps",
    "estimate_params",
    "generator_accuracy",
    "load_tokenizer",
    "processbench_items",
]

#: Description of the token-count proxy used without a tokenizer.
TOKEN_PROXY = "ceil(len(text) / 4) characters-per-token proxy"

#: The estimators of :func:`estimate_from_steps`, in one line for parameter cards.
ESTIMATORS = (
    "p = S0/(S0+S2); hazard q(t) = (#n=t + a/mean_len)/(#n>=t + a); P(c|t) shrunk to pooled; "
    "bucket edges = weak step-token quantiles"
)


def count_tokens(text: str, tokenizer: Any = None) -> int:
    """Token count of ``text``: with ``tokenizer`` (``.encode`` or callable) or the ``ceil(len/4)`` proxy."""
    if tokenizer is None:
        return max(1, math.ceil(len(text) / 4))
    if hasattr(tokenizer, "encode"):
        try:
            ids = tokenizer.encode(text, add_special_tokens=False)
        except TypeError:
            ids = tokenizer.encode(text)
        return max(1, len(ids))
    if callable(tokenizer):
        out = tokenizer(text)
        if isinstance(out, (int, np.integer)):
            return max(1, int(out))
        if isinstance(out, dict) and "input_ids" in out:
            out = out["input_ids"]
        return max(1, len(out))
    raise InvalidParameterError(
        f"tokenizer must have .encode(text) or be callable, got {type(tokenizer).__name__}"
    )


def _items_of(items: Sequence[Any], generator: str) -> list[Any]:
    sel = [it for it in items if it.generator == generator]
    if not sel:
        names = sorted({it.generator for it in items})
        raise InvalidParameterError(f"no ProcessBench items from generator {generator!r}; available: {names}")
    return sel


def generator_accuracy(items: Sequence[Any], generator: str) -> tuple[float, int, int]:
    """``(p, #S0, #S2)``: next-step accuracy given a correct prefix, over the generator's steps."""
    n0 = n2 = 0
    for it in _items_of(items, generator):
        z = step_classes(int(it.label), len(it.steps))
        n0 += int(np.sum(z == 0))
        n2 += int(np.sum(z == 2))
    if n0 + n2 == 0:
        raise InvalidParameterError(f"generator {generator!r} has no labelled steps")
    return n0 / (n0 + n2), n0, n2


def estimate_from_steps(
    weak_counts: tuple[int, int],
    strong_counts: tuple[int, int],
    weak_tokens: Sequence[Sequence[float]],
    strong_tokens: Sequence[float],
    *,
    horizon: int = 30,
    n_buckets: int = 5,
    smoothing: float = 2.0,
) -> dict[str, Any]:
    """The TRIM parameters that labelled steps determine (the estimators of the module docstring).

    Parameters
    ----------
    weak_counts, strong_counts : (int, int)
        ``(#S0, #S2)`` of each generator: right and wrong steps after a correct prefix.
    weak_tokens : sequence of sequences of float
        Token counts of the weak generator's steps, one sequence per solution (its length is the solution's
        number of steps).
    strong_tokens : sequence of float
        Token counts of the strong generator's steps (pooled).
    horizon, n_buckets : int
    smoothing : float
        Shrinkage strength ``a`` (pseudo-counts) of the hazard and ``P(c | t)``.

    Returns
    -------
    dict
        ``p_w``, ``p_s``, ``hazard``, ``bucket_edges``, ``bucket_probs``, ``bucket_mean_tokens`` and
        ``strong_weak_ratio``: keyword arguments of :class:`TrimParams` (or of ``TrimParams.replace``).
    """
    if int(horizon) < 1:
        raise InvalidParameterError(f"horizon H must be >= 1, got {horizon}")
    if int(n_buckets) < 1:
        raise InvalidParameterError(f"n_buckets must be >= 1, got {n_buckets}")
    if smoothing < 0:
        raise InvalidParameterError(f"smoothing must be >= 0, got {smoothing}")
    H, a = int(horizon), float(smoothing)
    rows = [np.asarray(r, dtype=float) for r in weak_tokens]
    flat = np.concatenate(rows) if rows else np.zeros(0)
    if flat.size == 0:
        raise InvalidParameterError("the weak generator has no steps to estimate token buckets from")
    strong = np.asarray(strong_tokens, dtype=float)
    edges = _bucket_edges(flat, int(n_buckets))
    return {
        "p_w": _accuracy(*weak_counts, "weak"),
        "p_s": _accuracy(*strong_counts, "strong"),
        "hazard": _hazard(np.array([r.size for r in rows]), H, a),
        "bucket_edges": edges,
        "bucket_probs": _bucket_probs(rows, flat, edges, H, a),
        "bucket_mean_tokens": _bucket_means(flat, edges),
        "strong_weak_ratio": float(strong.mean() / flat.mean()) if strong.size else 1.0,
    }


def _accuracy(n0: int, n2: int, which: str) -> float:
    if n0 + n2 <= 0:
        raise InvalidParameterError(f"the {which} generator has no labelled steps after a correct prefix")
    return n0 / (n0 + n2)


def _hazard(lengths: np.ndarray, H: int, a: float) -> np.ndarray:
    """``q(t) = (#{n = t} + a q̄) / (#{n ≥ t} + a)``, ``q̄ = 1 / mean length``; ``q(H) = 1``."""
    qbar = len(lengths) / max(1, lengths.sum())
    hazard = np.empty(H)
    for t in range(1, H + 1):
        at_risk, ends = np.sum(lengths >= t), np.sum(lengths == t)
        hazard[t - 1] = (ends + a * qbar) / (at_risk + a) if at_risk + a > 0 else 1.0
    hazard[-1] = 1.0
    return np.clip(hazard, 0.0, 1.0)


def _bucket_edges(flat: np.ndarray, K: int) -> np.ndarray:
    """The ``k/K`` quantiles of the step lengths, without duplicates and without an edge at the minimum.

    A step of ``c`` tokens falls in bucket ``searchsorted(edges, c, side="right")``, so an edge at the
    shortest step would leave bucket 0 empty.
    """
    if K <= 1:
        return np.zeros(0)
    edges = np.unique(np.quantile(flat, np.arange(1, K) / K))
    return edges[edges > flat.min()]


def _bucket_probs(
    rows: list[np.ndarray], flat: np.ndarray, edges: np.ndarray, H: int, a: float
) -> np.ndarray:
    """``P(c | t)``: bucket counts of the steps at index ``t``, shrunk towards the pooled distribution."""
    K = edges.size + 1
    pooled = np.bincount(np.searchsorted(edges, flat, side="right"), minlength=K).astype(float)
    pooled /= pooled.sum()
    probs = np.empty((H, K))
    for t in range(1, H + 1):
        at_t = np.array([r[t - 1] for r in rows if r.size >= t], dtype=float)
        counts = np.bincount(np.searchsorted(edges, at_t, side="right"), minlength=K).astype(float)
        tot = counts.sum() + a
        probs[t - 1] = (counts + a * pooled) / tot if tot > 0 else pooled
    return probs


def _bucket_means(flat: np.ndarray, edges: np.ndarray) -> np.ndarray:
    b = np.searchsorted(edges, flat, side="right")
    return np.array([flat[b == c].mean() if np.any(b == c) else 0.0 for c in range(edges.size + 1)])


def estimate_params(
    items: Sequence[Any],
    weak_generator: str,
    strong_generator: str,
    tokenizer: Any = None,
    *,
    horizon: int = 30,
    n_buckets: int = 5,
    smoothing: float = 2.0,
    lam: float = 5e-4,
    reward: float = 1.0,
    discount: float = 0.999,
) -> TrimParams:
    """Estimate :class:`TrimParams` from ProcessBench items (see the module docstring for the estimators).

    Parameters
    ----------
    items : sequence of ProcessBenchItem
        Anything with ``generator``, ``steps`` and ``label`` (and optionally ``split``).
    weak_generator, strong_generator : str
        Generator names as in ProcessBench (e.g. ``"Qwen2.5-7B-Instruct"``, ``"Qwen2.5-72B-Instruct"``).
    tokenizer : optional
        Token counter for step lengths (else the ``ceil(len/4)`` proxy).
    horizon, n_buckets : int
    smoothing : float
        Shrinkage strength ``a`` (pseudo-counts) of the hazard and ``P(c | t)``.
    lam, reward, discount : float
        Copied into the parameters.
    """
    _, w0, w2 = generator_accuracy(items, weak_generator)
    _, s0, s2 = generator_accuracy(items, strong_generator)
    weak = _items_of(items, weak_generator)
    strong = _items_of(items, strong_generator)
    w_tokens = [[count_tokens(s, tokenizer) for s in it.steps] for it in weak]
    s_tokens = [count_tokens(s, tokenizer) for it in strong for s in it.steps]
    if not any(w_tokens):
        raise InvalidParameterError(f"generator {weak_generator!r} has no steps")
    fields = estimate_from_steps(
        (w0, w2), (s0, s2), w_tokens, s_tokens, horizon=horizon, n_buckets=n_buckets, smoothing=smoothing
    )
    flat = np.array([c for row in w_tokens for c in row], dtype=float)
    tok_name = (
        TOKEN_PROXY if tokenizer is None else getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    )
    card = {
        "estimated_from": "ProcessBench",
        "splits": sorted({getattr(it, "split", "?") for it in list(weak) + list(strong)}),
        "weak_generator": weak_generator,
        "strong_generator": strong_generator,
        "weak": {
            "items": len(weak),
            "steps": int(flat.size),
            "S0": w0,
            "S2": w2,
            "mean_steps": float(np.mean([len(it.steps) for it in weak])),
            "mean_step_tokens": float(flat.mean()),
        },
        "strong": {"items": len(strong), "S0": s0, "S2": s2, "mean_step_tokens": float(np.mean(s_tokens))},
        "token_counter": tok_name,
        "smoothing": float(smoothing),
        "estimators": ESTIMATORS,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return TrimParams(horizon=int(horizon), reward=reward, lam=lam, discount=discount, card=card, **fields)


def load_tokenizer(name: str) -> Any:
    """A Hugging Face tokenizer by name or path, for :func:`count_tokens` (needs ``transformers``)."""
    from trim_pomdp._internal.optional import require

    return require("transformers", "hf", "a tokenizer for step lengths").AutoTokenizer.from_pretrained(name)


def processbench_items(data_dir: str | os.PathLike[str] | None = None) -> list[Any]:
    """ProcessBench items of every split present in ``data_dir`` (default: the Hugging Face hub)."""
    from trim_pomdp.datasets.processbench import SPLITS, load_processbench

    if data_dir is None:
        return list(load_processbench(SPLITS))
    root = Path(data_dir)
    splits = [s for s in SPLITS if (root / f"{s}.json").exists() or (root / f"{s}.jsonl").exists()]
    if not splits:
        raise DataFormatError(
            f"no ProcessBench <split>.json files in {root} (expected some of {', '.join(SPLITS)})"
        )
    return list(load_processbench(splits, data_dir=root))


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - thin wrapper, exercised by hand
    """``python -m trim_pomdp.pomdp.estimation --data-dir DIR --out params.json`` (regenerates the defaults)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="folder with ProcessBench <split>.json files")
    ap.add_argument("--weak-generator", default="Qwen2.5-7B-Instruct")
    ap.add_argument("--strong-generator", default="Qwen2.5-72B-Instruct")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    items = processbench_items(args.data_dir)
    params = estimate_params(items, args.weak_generator, args.strong_generator)
    params.card["command"] = (
        f"python -m trim_pomdp.pomdp.estimation --data-dir <processbench dir> --weak-generator "
        f"{args.weak_generator} --strong-generator {args.strong_generator} --out {args.out}"
    )
    params.to_json(args.out)
    print(
        f"wrote {args.out}: p_w={params.p_w:.4f} p_s={params.p_s:.4f} K={params.n_buckets} "
        f"ratio={params.strong_weak_ratio:.3f} splits={params.card['splits']}"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
