"""ReflectedKDE: exact normalisation, boundary behaviour, evaluation methods, bandwidths, sampling, memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import integrate, stats
from sklearn.base import clone

import trim_pomdp.observation_models.kde as kde_module
from trim_pomdp.exceptions import InvalidParameterError, NotFittedError
from trim_pomdp.observation_models.bandwidth import rule_of_thumb_bandwidth
from trim_pomdp.observation_models.kde import ReflectedKDE


def _beta_data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.beta(5, 1, n), rng.beta(1, 3, n)])


def _brute_force_pdf(X: np.ndarray, h: np.ndarray, Q: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The reflected estimator written out independently: every 3^d image, normalised by grid quadrature."""
    d = X.shape[1]
    dens = np.zeros(Q.shape[0])
    for i in range(X.shape[0]):
        term = np.ones(Q.shape[0])
        for j in range(d):
            a, b = bounds[j]
            imgs = (X[i, j], 2 * a - X[i, j], 2 * b - X[i, j])
            term *= sum(stats.norm.pdf(Q[:, j], loc=y, scale=h[j]) for y in imgs)
        dens += term
    return dens / X.shape[0]


@pytest.mark.parametrize("bandwidth", ["scott", "silverman", 0.02, 0.3, 1.5])
@pytest.mark.parametrize("dim", [1, 2])
def test_box_mass_is_one_exactly(bandwidth, dim):
    X = _beta_data(400)[:, :dim]
    kde = ReflectedKDE(bandwidth=bandwidth).fit(X)
    lo, hi = np.zeros(dim), np.ones(dim)
    assert kde.box_mass(lo, hi) == pytest.approx(1.0, abs=1e-12)
    edges = np.linspace(0, 1, 21)
    masses = kde.bin_masses(edges)
    assert masses.shape == (20,) * dim
    assert masses.min() >= 0
    assert masses.sum() == pytest.approx(1.0, abs=1e-12)
    # the masses of two halves add up to the whole box
    mid_hi = np.array([0.5] + [1.0] * (dim - 1))
    mid_lo = np.array([0.5] + [0.0] * (dim - 1))
    assert kde.box_mass(lo, mid_hi) + kde.box_mass(mid_lo, hi) == pytest.approx(1.0, abs=1e-12)


def test_mass_by_independent_quadrature_2d():
    kde = ReflectedKDE(bandwidth=[0.05, 0.08], method="exact").fit(_beta_data(80, seed=1))
    total, _ = integrate.dblquad(
        lambda y, x: kde.pdf(np.array([[x, y]]))[0], 0, 1, 0, 1, epsabs=1e-5, epsrel=1e-5
    )
    assert total == pytest.approx(1.0, abs=1e-3)
    # every bin mass against a midpoint rule inside the bin
    edges = np.linspace(0, 1, 6)
    exact = kde.bin_masses(edges)
    k = 60
    for i in range(5):
        for j in range(5):
            xs = edges[i] + (np.arange(k) + 0.5) / k * (edges[i + 1] - edges[i])
            ys = edges[j] + (np.arange(k) + 0.5) / k * (edges[j + 1] - edges[j])
            G = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
            approx = kde.pdf(G).mean() * (edges[1] - edges[0]) ** 2
            assert approx == pytest.approx(exact[i, j], abs=1e-4)


def test_mass_by_quadrature_1d_custom_bounds():
    rng = np.random.default_rng(3)
    X = rng.uniform(-2, 3, 200)
    kde = ReflectedKDE(bandwidth=0.7, bounds=(-2, 3)).fit(X)
    total, _ = integrate.quad(lambda x: kde.pdf(np.array([x]))[0], -2, 3, limit=200)
    assert total == pytest.approx(1.0, abs=1e-6)
    assert kde.box_mass(-2, 3) == pytest.approx(1.0, abs=1e-12)
    assert kde.box_mass(-10, 10) == pytest.approx(1.0, abs=1e-12)  # clipped to the support
    assert kde.box_mass(0.5, 0.5) == 0.0


def test_density_matches_brute_force_images():
    X = _beta_data(60, seed=2)
    h = np.array([0.4, 0.5])  # wide enough that corner images and renormalisation matter
    kde = ReflectedKDE(bandwidth=h.tolist(), method="exact").fit(X)
    rng = np.random.default_rng(0)
    Q = np.vstack([rng.random((200, 2)), [[0, 0], [1, 1], [0, 1], [1, 0], [0.5, 0]]])
    raw = _brute_force_pdf(X, h, Q, np.array([[0, 1], [0, 1]]))
    g = (np.arange(400) + 0.5) / 400
    Z = _brute_force_pdf(
        X, h, np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2), np.array([[0, 1], [0, 1]])
    ).mean()
    assert Z < 0.99  # the single images do lose mass at this bandwidth, so Z matters
    np.testing.assert_allclose(kde.pdf(Q), raw / Z, rtol=1e-5)


def test_uniform_data_has_no_boundary_bias():
    # quasi-random uniform points: no sampling noise, so what is left at faces and corners is the
    # boundary bias
    U = stats.qmc.Sobol(2, seed=0).random(2**14)
    kde = ReflectedKDE().fit(U)
    pts = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [0, 0.5], [1, 0.5], [0.5, 0], [0.5, 1], [0.5, 0.5]])
    dens = kde.pdf(pts)
    assert np.all(np.abs(dens - 1) < 0.05), dens
    plain = stats.gaussian_kde(U.T)  # the unreflected estimator loses ~1/2 at faces and ~3/4 at corners
    assert plain(pts[:4].T).max() < 0.4


def test_outside_the_box_is_zero_density():
    kde = ReflectedKDE().fit(_beta_data(100))
    out = kde.score_samples(np.array([[-0.1, 0.5], [0.5, 1.2], [0.5, 0.5]]))
    assert np.isneginf(out[:2]).all() and np.isfinite(out[2])
    assert kde.pdf(np.array([[2.0, 2.0]]))[0] == 0.0


@pytest.mark.parametrize("dim", [1, 2])
def test_grid_evaluation_agrees_with_exact(dim):
    X = _beta_data(3000, seed=4)[:, :dim]
    exact = ReflectedKDE(method="exact").fit(X)
    grid = ReflectedKDE(method="grid").fit(X)
    Q = np.random.default_rng(5).random((1500, dim))
    le, lg = exact.score_samples(Q), grid.score_samples(Q)
    mask = le > -20
    assert mask.mean() > 0.9
    assert np.max(np.abs(le[mask] - lg[mask])) < 1e-3
    # "auto" picks the grid for large query sets and gives the same values
    auto = ReflectedKDE(method="auto").fit(X)
    np.testing.assert_allclose(auto.score_samples(Q), lg, atol=1e-12)


def test_grid_handles_underflow_far_from_data():
    X = np.full((50, 2), 0.02) + np.random.default_rng(0).normal(0, 0.001, (50, 2)).clip(-0.02, 0.02)
    kde = ReflectedKDE(bandwidth=0.01, method="grid").fit(X)
    s = kde.score_samples(np.array([[0.99, 0.99], [0.02, 0.02]]))
    assert np.all(np.isfinite(s))
    ref = ReflectedKDE(bandwidth=0.01, method="exact").fit(X).score_samples(np.array([[0.99, 0.99]]))
    assert s[0] == pytest.approx(ref[0], rel=1e-3)


def test_bandwidth_rules_scale_with_spread():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.1, (2000, 2)).clip(0, 1)
    narrow = 0.5 + (base - 0.5) * 0.1
    h1 = ReflectedKDE().fit(base).bandwidth_
    h2 = ReflectedKDE().fit(narrow).bandwidth_
    np.testing.assert_allclose(h2, h1 * 0.1, rtol=1e-9)  # sklearn's bare "scott" would not change
    np.testing.assert_allclose(h1, 2000 ** (-1 / 6) * base.std(0, ddof=1))  # Scott: standard deviation
    hs = ReflectedKDE(bandwidth="silverman").fit(base).bandwidth_  # Silverman: robust spread, own factor
    robust = np.minimum(base.std(0, ddof=1), np.subtract(*np.percentile(base, [75, 25], 0)) / 1.349)
    np.testing.assert_allclose(hs, (2000 * 4 / 4) ** (-1 / 6) * robust)
    skewed = np.random.default_rng(1).beta(
        20, 1, (500, 1)
    )  # bulk near 1, long tail: robust spread is smaller
    assert (
        ReflectedKDE(bandwidth="silverman").fit(skewed).bandwidth_[0]
        < ReflectedKDE().fit(skewed).bandwidth_[0]
    )
    assert np.all(rule_of_thumb_bandwidth(np.full((10, 1), 0.3)) > 0)  # zero spread still gives h > 0
    np.testing.assert_array_equal(ReflectedKDE(bandwidth=[0.1, 0.2]).fit(base).bandwidth_, [0.1, 0.2])
    np.testing.assert_array_equal(ReflectedKDE(bandwidth=0.1).fit(base).bandwidth_, [0.1, 0.1])


def test_cv_bandwidth_prefers_wider_kernels_for_smooth_data():
    rng = np.random.default_rng(1)
    smooth = rng.random((400, 1))
    kde = ReflectedKDE(bandwidth="cv", cv_factors=[0.1, 0.3, 1, 3, 10], random_state=0).fit(smooth)
    assert kde.cv_results_["mean_loglik"].shape == (5,)
    assert kde.cv_results_["best_factor"] >= 3  # uniform data: the widest reflected kernels fit best
    peaked = np.concatenate([rng.normal(0.3, 0.01, 200), rng.normal(0.7, 0.01, 200)]).clip(0, 1)
    groups = np.repeat(np.arange(100), 4)
    k2 = ReflectedKDE(bandwidth="cv", cv_factors=[0.03, 0.1, 0.3, 1, 3]).fit(peaked, groups=groups)
    assert k2.cv_results_["best_factor"] <= 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"bandwidth": -1.0}, "bandwidth"),
        ({"bandwidth": "scot"}, "bandwidth"),
        ({"bandwidth": [0.1, 0.2, 0.3]}, "bandwidth"),
        ({"bounds": (1, 0)}, "bounds"),
        ({"method": "fast"}, "method"),
        ({"grid_size": 2}, "grid_size"),
    ],
)
def test_invalid_hyperparameters_are_reported_at_fit(kwargs, match):
    kde = ReflectedKDE(**kwargs)  # never validated in __init__ (sklearn convention)
    with pytest.raises(InvalidParameterError, match=match):
        kde.fit(_beta_data(50))


def test_invalid_data_and_unfitted_use():
    with pytest.raises(NotFittedError):
        ReflectedKDE().score_samples([[0.5, 0.5]])
    with pytest.raises(InvalidParameterError, match="outside the bounds"):
        ReflectedKDE().fit([[0.5, 1.5]])
    with pytest.raises(InvalidParameterError, match="NaN"):
        ReflectedKDE().fit([[0.5, np.nan]])
    with pytest.raises(InvalidParameterError, match="1 or 2 features"):
        ReflectedKDE().fit(np.full((5, 3), 0.5))
    kde = ReflectedKDE().fit(_beta_data(20))
    with pytest.raises(InvalidParameterError, match="features"):
        kde.score_samples(np.zeros((3, 1)))


def test_sklearn_conventions():
    kde = ReflectedKDE(bandwidth="silverman", bounds=[[0, 1], [0, 2]])
    params = kde.get_params()
    assert params["bandwidth"] == "silverman" and params["bounds"] == [[0, 1], [0, 2]]
    cloned = clone(kde)
    assert cloned.get_params() == params and not hasattr(cloned, "bandwidth_")
    fitted = kde.fit(_beta_data(30))
    assert fitted is kde and kde.n_features_in_ == 2 and kde.bounds_.shape == (2, 2)
    assert kde.score(_beta_data(10)) == pytest.approx(kde.score_samples(_beta_data(10)).sum())


def test_sample_follows_the_density():
    X = _beta_data(300, seed=7)
    k1 = ReflectedKDE(bandwidth=0.08).fit(X[:, 0])
    s1 = k1.sample(3000, random_state=0)
    assert s1.shape == (3000, 1) and s1.min() >= 0 and s1.max() <= 1
    cdf = np.vectorize(lambda x: k1.box_mass(0.0, x))
    assert stats.kstest(s1[:, 0], cdf).pvalue > 1e-3
    k2 = ReflectedKDE(bandwidth=[0.1, 0.15]).fit(X)
    s2 = k2.sample(8000, random_state=np.random.default_rng(1))
    edges = np.linspace(0, 1, 5)
    expected = k2.bin_masses(edges).ravel() * 8000
    observed, _, _ = np.histogram2d(s2[:, 0], s2[:, 1], bins=[edges, edges])
    assert stats.chisquare(observed.ravel(), expected).pvalue > 1e-3
    np.testing.assert_array_equal(k2.sample(5, random_state=3), k2.sample(5, random_state=3))


def test_exact_evaluation_is_memory_bounded(monkeypatch):
    monkeypatch.setattr(kde_module, "_BLOCK", 2**16)
    X = _beta_data(2000)
    Q = np.random.default_rng(1).random((5000, 2))
    kde = ReflectedKDE(method="exact").fit(X)
    tracemalloc.start()
    try:
        kde.score_samples(Q)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full_matrix = Q.shape[0] * X.shape[0] * 8  # 80 MB for one float64 query x training matrix
    assert peak < full_matrix / 4, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("method", ["exact", "grid"])
def test_log_density_far_in_the_tails_is_finite_and_right(method):
    # the nearest training value differs per dimension, so every shifted product underflows: the
    # log-space fallback must take over
    X = np.array([[0.1, 0.9], [0.9, 0.1]])
    h = 0.005
    kde = ReflectedKDE(bandwidth=h, method=method).fit(X)
    got = kde.score_samples(np.array([[0.1, 0.1]]))[0]
    want = stats.norm.logpdf(0, scale=h) + stats.norm.logpdf(0.8, scale=h)
    # exact: to rounding; grid: log f ~ -1.3e4 sits on a kink of the log-density far below any node spacing,
    # so only a relative accuracy is promised there (the module docstring's accuracy claim is for log f > -20)
    assert got == pytest.approx(want, rel=1e-9 if method == "exact" else 1e-3)


@pytest.mark.parametrize("dim", [1, 2])
def test_integer_weights_equal_repeated_points(dim):
    """A weight of k is k copies of the point: masses, box masses and densities (exact and grid) agree."""
    X = _beta_data(60, seed=3)[:, :dim]
    w = np.random.default_rng(1).integers(0, 4, 60)
    h = [0.07] * dim
    weighted = ReflectedKDE(bandwidth=h).fit(X, sample_weight=w)
    repeated = ReflectedKDE(bandwidth=h).fit(np.repeat(X, w, axis=0))
    assert weighted.data_.shape[0] == np.count_nonzero(w)  # zero weights are dropped
    edges = np.linspace(0, 1, 7)
    np.testing.assert_allclose(weighted.bin_masses(edges), repeated.bin_masses(edges), rtol=1e-12, atol=1e-15)
    lo, hi = [0.2] * dim, [0.7] * dim
    assert weighted.box_mass(lo, hi) == pytest.approx(repeated.box_mass(lo, hi), rel=1e-12)
    Q = _beta_data(50, seed=4)[:, :dim]
    np.testing.assert_allclose(weighted.score_samples(Q), repeated.score_samples(Q), rtol=1e-10)
    for k in (weighted, repeated):
        k.set_params(method="grid")
        k._grid = None
    np.testing.assert_allclose(weighted.score_samples(Q), repeated.score_samples(Q), rtol=1e-8, atol=1e-10)
    assert weighted.box_mass([0] * dim, [1] * dim) == pytest.approx(1.0, abs=1e-12)


def test_weighted_rule_of_thumb_uses_weighted_spread_and_effective_size():
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.1, 2000).clip(0, 1)
    w = np.where(x > 0.5, 3.0, 1.0)
    h = rule_of_thumb_bandwidth(x[:, None], "scott", weights=w)[0]
    mean = np.average(x, weights=w)
    var = np.sum(w * (x - mean) ** 2) / (w.sum() - (w**2).sum() / w.sum())
    n_eff = w.sum() ** 2 / (w**2).sum()
    assert h == pytest.approx(n_eff ** (-1 / 5) * np.sqrt(var), rel=1e-12)
    # equal weights are no weights
    np.testing.assert_allclose(
        rule_of_thumb_bandwidth(x[:, None], "silverman", weights=np.full(x.size, 2.5)),
        rule_of_thumb_bandwidth(x[:, None], "silverman"),
        rtol=1e-3,
    )


def test_weighted_sampling_follows_the_weights():
    X = np.array([[0.1], [0.9]])
    kde = ReflectedKDE(bandwidth=0.02).fit(X, sample_weight=[1.0, 3.0])
    draws = kde.sample(20000, random_state=0)[:, 0]
    assert np.mean(draws > 0.5) == pytest.approx(0.75, abs=0.01)


@pytest.mark.parametrize(
    "w, match", [([1, -1, 1], "non-negative"), ([0, 0, 0], "not all 0"), ([1, 2], "shape")]
)
def test_bad_weights_are_refused(w, match):
    with pytest.raises(InvalidParameterError, match=match):
        ReflectedKDE().fit(np.array([[0.1], [0.5], [0.9]]), sample_weight=w)
