"""Estimate :class:`TrimParams` from ProcessBench for a chosen weak and strong generator.

* ``p`` of a generator = ``#S0 / (#S0 + #S2)`` over its steps (steps before the labelled first error are S0,
the
  labelled step S2; steps after it, S1, say nothing about next-step accuracy given a correct prefix).
* ``q(t)`` (termination hazard) from the weak generator's solution lengths ``n``:
  ``q(t) = (#{n = t} + a q̄) / (#{n ≥ t} + a)`` with ``q̄ = 1 / mean length`` (shrinkage of strength ``a``
  towards a geometric length distribution, so that sparse tails stay sensible); ``q(H) = 1``.
* token buckets: the ``K − 1`` interior edges are the ``k/K`` quantiles of the weak generator's step token
counts
  (duplicate edges are dropped, giving fewer buckets); ``P(c | t)`` counts the weak steps at step index ``t``
  per bucket, shrunk with strength ``a`` towards the pooled bucket distribution; ``bucket_mean_tokens`` are
  the mean counts per bucket.
* ``strong_weak_ratio`` = mean step tokens of the strong generator / mean step tokens of the weak generator.

Token counts come from ``tokenizer`` when given (anything with ``encode(text)`` or a callable returning the
tokens), else from the proxy ``ceil(len(text) / 4)`` (≈ 4 characters per BPE token for English/LaTeX text).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from trim_pomdp.datasets.processbench import step_classes
from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.pomdp.params import TrimParams

__all__ = ["TOKEN_PROXY", "count_tokens", "estimate_params", "generator_accuracy"]

#: Description of the token-count proxy used without a tokenizer.
TOKEN_PROXY = "ceil(len(text) / 4) characters-per-token proxy"


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
    if int(horizon) < 1:
        raise InvalidParameterError(f"horizon H must be >= 1, got {horizon}")
    if int(n_buckets) < 1:
        raise InvalidParameterError(f"n_buckets must be >= 1, got {n_buckets}")
    if smoothing < 0:
        raise InvalidParameterError(f"smoothing must be >= 0, got {smoothing}")
    H, K, a = int(horizon), int(n_buckets), float(smoothing)
    p_w, w0, w2 = generator_accuracy(items, weak_generator)
    p_s, s0, s2 = generator_accuracy(items, strong_generator)
    weak = _items_of(items, weak_generator)
    strong = _items_of(items, strong_generator)
    w_tokens = [[count_tokens(s, tokenizer) for s in it.steps] for it in weak]
    s_tokens = [count_tokens(s, tokenizer) for it in strong for s in it.steps]
    flat = np.array([c for row in w_tokens for c in row], dtype=float)
    if flat.size == 0:
        raise InvalidParameterError(f"generator {weak_generator!r} has no steps")
    # hazard
    lengths = np.array([len(it.steps) for it in weak])
    qbar = len(lengths) / max(1, lengths.sum())
    hazard = np.empty(H)
    for t in range(1, H + 1):
        at_risk = np.sum(lengths >= t)
        ends = np.sum(lengths == t)
        hazard[t - 1] = (ends + a * qbar) / (at_risk + a) if at_risk + a > 0 else 1.0
    hazard[-1] = 1.0
    hazard = np.clip(hazard, 0.0, 1.0)
    # buckets
    if K > 1:
        edges = np.unique(np.quantile(flat, np.arange(1, K) / K))
        edges = edges[(edges > flat.min()) | (edges.size == 1)]
    else:
        edges = np.zeros(0)
    Kb = edges.size + 1
    bucket = lambda x: np.searchsorted(edges, np.asarray(x, dtype=float), side="right")  # noqa: E731
    pooled = np.bincount(bucket(flat), minlength=Kb).astype(float)
    pooled /= pooled.sum()
    probs = np.empty((H, Kb))
    for t in range(1, H + 1):
        at_t = [row[t - 1] for row in w_tokens if len(row) >= t]
        counts = np.bincount(bucket(at_t), minlength=Kb).astype(float) if at_t else np.zeros(Kb)
        tot = counts.sum() + a
        probs[t - 1] = (counts + a * pooled) / tot if tot > 0 else pooled
    means = np.array(
        [flat[bucket(flat) == c].mean() if np.any(bucket(flat) == c) else 0.0 for c in range(Kb)]
    )
    ratio = float(np.mean(s_tokens) / flat.mean()) if s_tokens else 1.0
    splits = sorted({getattr(it, "split", "?") for it in list(weak) + list(strong)})
    tok_name = (
        TOKEN_PROXY if tokenizer is None else getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    )
    card = {
        "estimated_from": "ProcessBench",
        "splits": splits,
        "weak_generator": weak_generator,
        "strong_generator": strong_generator,
        "weak": {
            "items": len(weak),
            "steps": int(flat.size),
            "S0": w0,
            "S2": w2,
            "mean_steps": float(lengths.mean()),
            "mean_step_tokens": float(flat.mean()),
        },
        "strong": {"items": len(strong), "S0": s0, "S2": s2, "mean_step_tokens": float(np.mean(s_tokens))},
        "token_counter": tok_name,
        "smoothing": a,
        "estimators": (
            "p = S0/(S0+S2); hazard q(t) = (#n=t + a/mean_len)/(#n>=t + a); P(c|t) shrunk to pooled; "
            "bucket edges = weak step-token quantiles"
        ),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return TrimParams(
        p_w=p_w,
        p_s=p_s,
        horizon=H,
        bucket_edges=edges,
        bucket_probs=probs,
        hazard=hazard,
        bucket_mean_tokens=means,
        strong_weak_ratio=ratio,
        reward=reward,
        lam=lam,
        discount=discount,
        card=card,
    )


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - thin wrapper, exercised by hand
    """``python -m trim_pomdp.pomdp.estimation --data-dir DIR --out params.json`` (regenerates the
    defaults).
    """
    from trim_pomdp.datasets.processbench import SPLITS, load_processbench

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="folder with ProcessBench <split>.json files")
    ap.add_argument("--weak-generator", default="Qwen2.5-7B-Instruct")
    ap.add_argument("--strong-generator", default="Qwen2.5-72B-Instruct")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    from pathlib import Path

    splits = [s for s in SPLITS if (Path(args.data_dir) / f"{s}.json").exists()]
    items = load_processbench(splits, data_dir=args.data_dir)
    params = estimate_params(items, args.weak_generator, args.strong_generator)
    params.card["command"] = (
        f"python -m trim_pomdp.pomdp.estimation --data-dir <processbench> --weak-generator "
        f"{args.weak_generator} --strong-generator {args.strong_generator} --out {args.out}"
    )
    params.to_json(args.out)
    print(
        f"wrote {args.out}: p_w={params.p_w:.4f} p_s={params.p_s:.4f} K={params.n_buckets} "
        f"ratio={params.strong_weak_ratio:.3f} splits={splits}"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
