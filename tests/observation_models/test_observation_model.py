"""ObservationModel: fitting, exact bins, the t = 1 choice, r-only, likelihoods, save/load, shipped model."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

import trim_pomdp
from tests._support.data import require_shared_data
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.observation_models.fitting import held_out_log_likelihood
from trim_pomdp.observation_models.observation import FORMAT, ObservationModel, load_shipped_observation_model

BETA = {0: (6.0, 1.0), 1: (1.5, 1.5), 2: (1.0, 3.0)}  # r | class: S0 high, S1 spread, S2 low


class DiagGaussianKDE(stats.gaussian_kde):
    """scipy's (unreflected) gaussian_kde with a given per-dimension bandwidth instead of its own rule."""

    def __init__(self, X: np.ndarray, h: np.ndarray):
        self._h = np.asarray(h, dtype=float)
        super().__init__(np.asarray(X, dtype=float).T)

    def _compute_covariance(self) -> None:
        self.factor = 1.0
        self.covariance = np.diag(self._h**2)
        self.cho_cov = np.diag(self._h)
        self.log_det = 2 * np.log(self._h * np.sqrt(2 * np.pi)).sum()


def test_diag_gaussian_kde_baseline_is_what_it_claims():
    X = np.array([[0.2, 0.4], [0.6, 0.9]])
    h = np.array([0.1, 0.3])
    q = np.array([0.3, 0.5])
    want = np.mean([stats.norm.pdf(q[0], x[0], h[0]) * stats.norm.pdf(q[1], x[1], h[1]) for x in X])
    assert DiagGaussianKDE(X, h)(q[:, None])[0] == pytest.approx(want)


def make_table(n_items: int = 300, seed: int = 0, first_s2: bool = True) -> SimpleNamespace:
    """A StepTable-like fixture: items of 2-8 steps, first error at a random step (or none)."""
    rng = np.random.default_rng(seed)
    rs, ms, zs, ts, idx = [], [], [], [], []
    for i in range(n_items):
        n = int(rng.integers(2, 9))
        label = int(rng.integers(0 if first_s2 else 1, n)) if rng.random() < 0.6 else -1
        z = np.zeros(n, dtype=int)
        if label >= 0:
            z[label] = 2
            z[label + 1 :] = 1
        r = np.array([rng.beta(*BETA[c]) for c in z])
        m = np.full(n, np.nan)
        m[1:] = np.minimum.accumulate(r)[:-1]
        rs.append(r), ms.append(m), zs.append(z), ts.append(np.arange(1, n + 1)), idx.append(np.full(n, i))
    cat = np.concatenate
    return SimpleNamespace(r=cat(rs), m=cat(ms), z=cat(zs), t=cat(ts), item_index=cat(idx))


@pytest.fixture(scope="module")
def table():
    return make_table()


@pytest.fixture(scope="module")
def model(table):
    return ObservationModel.fit(table, n_bins=10, card={"prm": "fixture-prm", "simulated": True})


def test_fit_shapes_and_exact_rows(model, table):
    assert model.n_bins == 10 and model.edges.shape == (11,)
    assert model.pair_probs.shape == (3, 10, 10) and model.first_probs.shape == (3, 10)
    np.testing.assert_allclose(model.pair_probs.sum(axis=(1, 2)), 1.0, atol=1e-12)
    np.testing.assert_allclose(model.first_probs.sum(axis=1), 1.0, atol=1e-12)
    assert model.bin_probs(first=False).shape == (3, 100) and model.bin_probs(first=True).shape == (3, 10)
    counts = {name: int(np.sum(table.z == c)) for c, name in enumerate(("S0", "S1", "S2"))}
    assert model.card["counts"] == counts
    assert model.card["prm"] == "fixture-prm" and model.card["simulated"] is True
    assert set(model.card["bandwidths"]) == {"S0", "S1", "S2"}
    # the classes are told apart: S0 puts its mass at high r, S2 at low r
    r_marg = model.pair_probs.sum(axis=2)
    assert r_marg[0, -3:].sum() > 0.6 and r_marg[2, :3].sum() > 0.4


def test_bins_match_quadrature_of_the_density(model):
    """Independent check: each bin's mass against a midpoint rule on the continuous density."""
    e = model.edges
    k = 40
    for z, kde in enumerate(model.pair_kdes):
        for i in (0, 4, 9):
            for j in (0, 5, 9):
                xs = e[i] + (np.arange(k) + 0.5) / k * (e[i + 1] - e[i])
                ys = e[j] + (np.arange(k) + 0.5) / k * (e[j + 1] - e[j])
                G = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
                approx = kde.pdf(G).mean() * (e[i + 1] - e[i]) * (e[j + 1] - e[j])
                assert approx == pytest.approx(model.pair_probs[z, i, j], abs=1e-3)


def test_first_step_choice(table):
    m = ObservationModel.fit(table, n_bins=10, min_first_steps=30)
    assert m.card["counts_t_eq_1"]["S2"] >= 30
    src = m.card["first_step_source"]
    assert src["S0"].startswith("first steps") and src["S2"].startswith("first steps")
    assert src["S1"].startswith("all steps")  # S1 is impossible at t = 1 but still gets a valid density
    assert m.card["counts_t_eq_1"]["S1"] == 0
    np.testing.assert_allclose(m.first_probs[1].sum(), 1.0)
    # the t = 1 density of S0 is the KDE of first steps only
    first_r = table.r[(table.z == 0) & (table.t == 1)]
    np.testing.assert_allclose(np.sort(m.first_kdes[0].data_[:, 0]), np.sort(first_r))
    # with too few first steps of a class, it falls back to all of the class's steps
    few = ObservationModel.fit(make_table(300, seed=1, first_s2=False), n_bins=10)
    assert few.card["counts_t_eq_1"]["S2"] == 0 and few.card["first_step_source"]["S2"].startswith(
        "all steps"
    )


def test_observation_index_conventions(model):
    n = model.n_bins
    assert model.observation_index(0.0, 0.0) == 0
    assert model.observation_index(1.0, 1.0) == n * n - 1  # 1 falls in the last bin
    assert model.observation_index(0.55, 0.05) == 5 * n + 0
    assert model.observation_index(0.55) == 5 == model.observation_index(0.55, float("nan"))
    r = np.array([0.0, 0.33, 0.99, 1.0, 0.5])
    m = np.array([np.nan, 0.71, 0.2, np.nan, 0.5])
    batch = model.observation_index_batch(r, m)
    assert batch.tolist() == [
        model.observation_index(a, None if np.isnan(b) else b) for a, b in zip(r, m, strict=True)
    ]
    with pytest.raises(InvalidParameterError, match="r must be a PRM score"):
        model.observation_index(1.2, 0.5)
    with pytest.raises(InvalidParameterError, match="m must be a PRM score"):
        model.observation_index_batch([0.5], [-0.1])


def test_likelihoods(model):
    lik = model.likelihood(0.55, 0.05)
    np.testing.assert_array_equal(lik, model.pair_probs[:, 5, 0])
    np.testing.assert_array_equal(model.likelihood(0.55), model.first_probs[:, 5])
    cont = model.likelihood(0.55, 0.05, continuous=True)
    np.testing.assert_allclose(cont, [k.pdf(np.array([[0.55, 0.05]]))[0] for k in model.pair_kdes])
    cont1 = model.likelihood(0.95, None, continuous=True)
    np.testing.assert_allclose(cont1, [k.pdf(np.array([[0.95]]))[0] for k in model.first_kdes])
    assert cont1[0] > cont1[2]  # a high first score favours S0 over S2


@pytest.mark.parametrize("continuous", [False, True])
def test_likelihood_batch_matches_scalar(model, continuous):
    r = np.array([0.05, 0.55, 0.97, 1.0, 0.3])
    m = np.array([np.nan, 0.05, 0.9, np.nan, 0.3])
    got = model.likelihood_batch(r, m, continuous=continuous)
    want = [
        model.likelihood(a, None if np.isnan(b) else b, continuous=continuous)
        for a, b in zip(r, m, strict=True)
    ]
    np.testing.assert_allclose(got, np.array(want), rtol=1e-12)
    with pytest.raises(InvalidParameterError, match="same length"):
        model.likelihood_batch(r, m[:2])


def test_r_only_makes_m_uninformative(table):
    m = ObservationModel.fit(table, n_bins=10, r_only=True)
    assert m.r_only and m.card["r_only"]
    # every m-bin has the same class-conditional probability: the posterior cannot depend on m
    np.testing.assert_allclose(m.pair_probs, m.pair_probs[:, :, :1].repeat(10, axis=2), atol=1e-15)
    a, b = m.likelihood(0.8, 0.1), m.likelihood(0.8, 0.9)
    np.testing.assert_allclose(a / a.sum(), b / b.sum())
    np.testing.assert_allclose(m.pair_probs.sum(axis=(1, 2)), 1.0)
    assert m.pair_kdes[0].n_features_in_ == 1
    assert m.likelihood(0.8, 0.1, continuous=True) == pytest.approx(m.likelihood(0.8, 0.9, continuous=True))


def test_save_load_round_trip(model, tmp_path):
    npz, js = model.save(tmp_path / "om")
    assert npz.name == "observation_model.npz" and js.name == "observation_model.json"
    card = json.loads(js.read_text())
    assert card["format"] == FORMAT and card["counts"] == model.card["counts"]
    with np.load(npz, allow_pickle=False) as data:  # nothing pickled
        assert {"edges", "pair_probs", "first_probs", "pair_data_S0", "first_bandwidth_S2"} <= set(data.files)
    for path in (tmp_path / "om", npz, js):
        loaded = ObservationModel.load(path)
        np.testing.assert_array_equal(loaded.pair_probs, model.pair_probs)
        np.testing.assert_array_equal(loaded.first_probs, model.first_probs)
        assert loaded.card["counts"] == model.card["counts"] and loaded.r_only == model.r_only
    # the continuous likelihood is rebuilt from the stored points with the stored bandwidths
    np.testing.assert_allclose(
        loaded.likelihood(0.7, 0.4, continuous=True), model.likelihood(0.7, 0.4, continuous=True), rtol=1e-12
    )
    np.testing.assert_allclose(
        loaded.likelihood(0.7, continuous=True), model.likelihood(0.7, continuous=True)
    )


def test_artifacts_without_a_digest_still_load_and_edits_are_refused(model, tmp_path):
    npz, js = model.save(tmp_path / "old")
    card = json.loads(js.read_text())
    assert len(card["sha256"]) == 64 and "numpy" in card["versions"]
    for key in ("sha256", "signed", "versions", "created"):  # what an artifact of earlier versions lacks
        card.pop(key)
    js.write_text(json.dumps(card))
    np.testing.assert_array_equal(ObservationModel.load(npz).pair_probs, model.pair_probs)
    npz, js = model.save(tmp_path / "new")
    with np.load(npz) as data:
        arrays = dict(data)
    # the bins still sum to 1, but the stored density behind them moved: only the digest can tell
    arrays["first_data_S0"] = np.clip(arrays["first_data_S0"] + 0.01, 0.0, 1.0)
    np.savez(npz, **arrays)
    with pytest.raises(DataFormatError, match="sha256 mismatch"):
        ObservationModel.load(npz)


def test_load_errors_name_the_file(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="fit-observations"):
        ObservationModel.load(tmp_path / "nowhere")
    d = tmp_path / "bad"
    npz, js = model.save(d)
    npz.write_bytes(b"this is not a zip file at all")
    with pytest.raises(DataFormatError, match=r"observation_model\.npz"):
        ObservationModel.load(d)
    np.savez(npz, alphas=np.zeros((2, 3)))  # some other trim-pomdp-looking file
    with pytest.raises(DataFormatError, match="not a trim-pomdp observation model"):
        ObservationModel.load(d)
    model.save(d)
    js.write_text("{not json")
    with pytest.raises(DataFormatError, match=r"observation_model\.json"):
        ObservationModel.load(d)
    model.save(d)
    with np.load(npz) as data:
        arrays = dict(data)
    arrays["pair_probs"] = arrays["pair_probs"] * 1.1
    np.savez(npz, **arrays)
    with pytest.raises(DataFormatError, match="sums to"):
        ObservationModel.load(d)


def test_fit_rejects_bad_tables(table):
    bad = SimpleNamespace(**vars(table))
    bad.r = table.r.copy()
    bad.r[3] = 1.5
    with pytest.raises(InvalidParameterError, match=r"r\[3\]"):
        ObservationModel.fit(bad)
    with pytest.raises(InvalidParameterError, match="n_bins"):
        ObservationModel.fit(table, n_bins=0)
    only_s0 = SimpleNamespace(
        r=table.r[table.z == 0], m=table.m[table.z == 0], z=table.z[table.z == 0], t=table.t[table.z == 0]
    )
    with pytest.raises(InvalidParameterError, match="class S1"):
        ObservationModel.fit(only_s0)
    with pytest.raises(InvalidParameterError, match="attributes r, m, z, t"):
        ObservationModel.fit(object())


def test_reflected_held_out_likelihood_beats_unreflected(table):
    held = held_out_log_likelihood(table, n_folds=5)
    assert set(held) == {"S0", "S1", "S2"} and all(np.isfinite(v) for v in held.values())
    # the same folds with scipy's unreflected gaussian_kde at the same bandwidth do worse for S0
    # (mass near r=1)
    from sklearn.model_selection import GroupKFold

    from trim_pomdp.observation_models.kde import ReflectedKDE

    mask = (table.t >= 2) & (table.z == 0)
    X = np.column_stack([table.r[mask], table.m[mask]])
    g = table.item_index[mask]
    refl, plain = [], []
    for train, test in GroupKFold(5).split(X, groups=g):
        k = ReflectedKDE().fit(X[train])
        refl.append(k.score_samples(X[test]))
        plain.append(DiagGaussianKDE(X[train], k.bandwidth_).logpdf(X[test].T))
    assert np.concatenate(refl).mean() > np.concatenate(plain).mean() + 0.05


def test_processbench_counts_with_synthetic_scores():
    data_dir = require_shared_data("processbench")
    from trim_pomdp.datasets.processbench import load_processbench
    from trim_pomdp.datasets.scored import step_table
    from trim_pomdp.prm.synthetic import SyntheticPRM

    items = load_processbench(data_dir=data_dir)
    m = ObservationModel.fit(step_table(SyntheticPRM().score_items(items, seed=0)))
    assert m.card["counts"] == {"S0": 14329, "S1": 9147, "S2": 2221}
    np.testing.assert_allclose(m.pair_probs.sum(axis=(1, 2)), 1.0, atol=1e-12)


def test_shipped_artifact_matches_a_refit():
    """The shipped model is what its card's command makes from today's SyntheticPRM (regenerate it if not)."""
    data_dir = require_shared_data("processbench")
    from trim_pomdp.datasets.processbench import load_processbench
    from trim_pomdp.datasets.scored import step_table
    from trim_pomdp.prm.synthetic import SyntheticPRM

    shipped = load_shipped_observation_model()
    items = load_processbench(shipped.card["splits"], data_dir=data_dir)
    refit = ObservationModel.fit(
        step_table(SyntheticPRM().score_items(items, seed=shipped.card["seed"])),
        n_bins=shipped.n_bins,
        bandwidth=shipped.card["bandwidth_rule"],
        bins=shipped.card["bins"]["scheme"],
        density_scale=shipped.card["density_scale"]["kind"],
    )
    assert np.allclose(refit.pair_probs, shipped.pair_probs, rtol=0, atol=1e-12) and np.allclose(
        refit.first_probs, shipped.first_probs, rtol=0, atol=1e-12
    ), "trim_pomdp/data/observation_model is stale: rerun the command in trim_pomdp/data/README.md"


def test_shipped_artifact_is_what_its_stored_densities_give():
    """Without the data: the shipped bins are the exact masses of the densities its stored points rebuild.

    Also checks the card against the arrays (counts, bandwidths, where each t = 1 density came from), and that
    the card carries a digest, so that an edited array or a stale card fails here instead of in a solve.
    """
    from trim_pomdp._internal.artifacts import load_artifact

    shipped = load_shipped_observation_model()
    card = shipped.card
    art = load_artifact(
        Path(trim_pomdp.__file__).parent / "data", stem="observation_model", formats=(FORMAT,), what="model"
    )
    assert len(art.card["sha256"]) == 64 and art.card == card
    assert not card[
        "stored_points_subsampled_from"
    ]  # every training point is stored: the refit below is exact
    from trim_pomdp.observation_models.binning import to_density_scale

    # the densities live on the model's density scale: its bins' edges, mapped there, bound the exact masses
    re_u, me_u = (
        to_density_scale(e, shipped.density_scale, shipped.scale_eps)
        for e in (shipped.r_edges, shipped.m_edges)
    )
    np.testing.assert_array_equal(shipped.r_edges, card["bins"]["r_edges"])
    np.testing.assert_array_equal(shipped.m_edges, card["bins"]["m_edges"])
    for c, name in enumerate(("S0", "S1", "S2")):
        pair, first = shipped.pair_kdes[c], shipped.first_kdes[c]
        masses = pair.bin_masses([re_u, me_u])
        np.testing.assert_allclose(shipped.pair_probs[c], masses / masses.sum(), rtol=0, atol=1e-12)
        fmass = first.bin_masses(re_u)
        np.testing.assert_allclose(shipped.first_probs[c], fmass / fmass.sum(), rtol=0, atol=1e-12)
        assert pair.data_.shape[0] == card["counts_t_ge_2"][name]
        n_first = card["counts_t_eq_1"][name]
        fitted_on_first_steps = card["first_step_source"][name].startswith("first steps")
        assert first.data_.shape[0] == (n_first if fitted_on_first_steps else card["counts"][name])
        assert card["counts"][name] == card["counts_t_ge_2"][name] + n_first
        np.testing.assert_array_equal(pair.bandwidth_, card["bandwidths"][name]["pair"])
        np.testing.assert_array_equal(first.bandwidth_, card["bandwidths"][name]["first"])


def test_shipped_artifact_is_marked_simulated():
    model = load_shipped_observation_model()
    assert model.card["simulated"] is True
    assert model.card["counts"] == {"S0": 10555, "S1": 7010, "S2": 1627}
    # train/test hygiene: ProcessBench's math split (MATH test problems, overlapping MATH-500) is left out
    assert model.card["splits"] == ["gsm8k", "olympiadbench", "omnimath"]
    assert model.card["excluded_splits"] == ["math"] and "MATH-500" in model.card["exclusion_reason"]
    # the bins benchmark's choice (benchmarks/bins.py): quantile edges on densities fitted on the logit scale
    assert model.card["bins"]["scheme"] == "quantile" and model.density_scale == "logit"
    assert any("score-processbench" in c for c in model.card["replace_with_real_scores"])
    assert model.n_bins == 20 and model.pair_probs.shape == (3, 20, 20)
    assert np.all(np.isfinite(model.likelihood(0.9, 0.8, continuous=True)))


@pytest.mark.parametrize("binned", [False, True])
def test_density_heatmaps(model, tmp_path, binned):
    pytest.importorskip("matplotlib")
    from trim_pomdp.observation_models.plots import density_grid, plot_class_densities

    centers, dens = density_grid(model, resolution=50, binned=binned)
    assert dens.shape == (3, centers.size, centers.size) and np.all(dens >= 0)
    cell = 1.0 / centers.size
    np.testing.assert_allclose(dens.sum(axis=(1, 2)) * cell**2, 1.0, atol=2e-2 if not binned else 1e-12)
    fig = plot_class_densities(model, binned=binned, resolution=50)
    assert len(fig.axes) == 4  # three classes and the colour bar
    png = plot_class_densities(model, tmp_path / "f.png", binned=binned, resolution=50)
    assert png.read_bytes()[:4] == b"\x89PNG"
