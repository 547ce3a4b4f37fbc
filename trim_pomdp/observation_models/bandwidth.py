"""Rule-of-thumb bandwidths of a Gaussian kernel density estimate, scaled by the spread of the data.

:class:`~trim_pomdp.observation_models.kde.ReflectedKDE` uses these for ``bandwidth="scott"`` and
``bandwidth="silverman"``, and as the base that ``bandwidth="cv"`` multiplies by the cross-validated factor.
"""

from __future__ import annotations

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError

__all__ = ["RULES", "rule_of_thumb_bandwidth"]

#: The bandwidth rules of :func:`rule_of_thumb_bandwidth`.
RULES = ("scott", "silverman")


def _weighted_quantiles(x: np.ndarray, w: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles of a weighted sample (linear interpolation of the weighted empirical CDF at mid-weights)."""
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[order]
    cdf = (np.cumsum(ws) - 0.5 * ws) / ws.sum()
    return np.interp(q, cdf, xs)


def _spread(x: np.ndarray, robust: bool, w: np.ndarray | None = None) -> float:
    """Spread of a 1-D sample: the standard deviation, or Silverman's robust ``min(std, IQR / 1.349)``.

    When the robust choice is asked for and one of the two is 0, the other is used. With weights, the
    standard deviation is the weighted one with the reliability-weights correction and the IQR that of the
    weighted empirical distribution.
    """
    if x.size < 2:
        return 0.0
    if w is None:
        std = float(np.std(x, ddof=1))
    else:
        v1, v2 = w.sum(), (w**2).sum()
        mean = float(w @ x / v1)
        denom = v1 - v2 / v1
        std = float(np.sqrt(max(w @ (x - mean) ** 2 / denom, 0.0))) if denom > 0 else 0.0
    if not robust:
        return std
    if w is None:
        q75, q25 = np.percentile(x, [75.0, 25.0])
    else:
        q25, q75 = _weighted_quantiles(x, w, np.array([0.25, 0.75]))
    iqr = float(q75 - q25) / 1.349
    positive = [s for s in (std, iqr) if s > 0]
    return min(positive) if positive else 0.0


def rule_of_thumb_bandwidth(
    X: np.ndarray, rule: str = "scott", bounds: np.ndarray | None = None, weights: np.ndarray | None = None
) -> np.ndarray:
    """Per-dimension Scott or Silverman bandwidth, scaled by each dimension's spread.

    Scott (1992): ``h_j = N^(-1/(d+4)) * std_j``. Silverman (1986): ``h_j = (N (d + 2) / 4)^(-1/(d+4)) *
    min(std_j, IQR_j / 1.349)`` (the robust spread). Unlike scikit-learn's ``"scott"`` (the bare factor, i.e.
    unit spread assumed), both adapt to data concentrated in a small part of the box. The robust spread of
    Silverman's rule follows the bulk of skewed data (PRM scores of correct steps pile up near 1) and so
    undersmooths their tails; Scott's standard deviation smooths the tails more, which gave the better
    held-out class posteriors on ProcessBench (``benchmarks/observation_models.py``), hence the default. A
    dimension with zero spread (all values equal) uses a spread of ``1e-3 * (b_j - a_j)``, and every bandwidth is
    floored at ``1e-4 * (b_j - a_j)``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    rule : {"scott", "silverman"}
    bounds : ndarray of shape (n_features, 2), optional
        Only used for the zero-spread floor; default unit box.
    weights : ndarray of shape (n_samples,), optional
        Sample weights: the spreads are weighted and ``N`` is the effective sample size ``(sum w)^2 / sum w^2``.

    Returns
    -------
    ndarray of shape (n_features,)
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    n, d = X.shape
    w = None if weights is None else np.asarray(weights, dtype=float).ravel()
    if w is not None:
        n = float(w.sum() ** 2 / (w**2).sum())
    if rule == "scott":
        factor = n ** (-1.0 / (d + 4))
    elif rule == "silverman":
        factor = (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    else:
        raise InvalidParameterError(f"rule must be one of {RULES}, got {rule!r}")
    widths = np.ones(d) if bounds is None else np.diff(np.asarray(bounds, dtype=float), axis=1).ravel()
    spreads = np.array([_spread(X[:, j], robust=rule == "silverman", w=w) for j in range(d)])
    spreads = np.where(spreads > 0, spreads, 1e-3 * widths)
    return np.maximum(factor * spreads, 1e-4 * widths)
