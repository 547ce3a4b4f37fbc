"""The observation function of the TRIM-POMDP: class-conditional densities of PRM observations.

At epoch ``t`` the router observes ``o_t = (r_t, m_t)``: the PRM score of the newest step and the minimum
score of the earlier steps, ``m_t = min(r_1 … r_{t-1})``. :class:`ObservationModel` holds, for each hidden
class ``z`` in (S0, S1, S2):

* a 2-D :class:`~trim_pomdp.observation_models.kde.ReflectedKDE` of ``(r, m)`` on ``[0, 1]^2``, fitted on the
  class's steps with ``t >= 2``, and its exact masses on an ``n x n`` grid of bins (``pair_probs``);
* for ``t = 1``, where ``m`` does not exist, a 1-D reflected KDE of ``r`` and its masses on the ``n`` bins of
  ``r`` (``first_probs``).

**The t = 1 choice.** The first step's score has its own distribution (no earlier mistakes can drag it down,
and a first step is often short and easy), so it gets a separate 1-D density, fitted on the class's first
steps when there are at least ``min_first_steps`` (default 50) of them. Otherwise it falls back to the 1-D
marginal of ``r`` over all steps of the class, so that every class still has a valid density. That is always
the case for S1, which is impossible at ``t = 1`` (an earlier step would have to be wrong); its density there
never matters, since its prior at ``t = 1`` is 0. The card records which source each class used
(``first_step_source``).

**Bins** (:mod:`~trim_pomdp.observation_models.binning`). Each axis has ``n`` bins; ``r_edges`` and
``m_edges`` may differ (``edges`` is the shared array when they do not, ``None`` otherwise). Bin ``i`` of an axis
is ``[e[i], e[i+1])`` (the last bin includes 1). A pair observation's flat index is ``i_r * n + i_m``; a
first-step observation's index is ``i_r``. Bin masses are exact integrals of the reflected KDE (separable
normal-CDF products), divided by the total so each class row sums to 1. Models written before per-axis edges
existed hold one ``edges`` array, used for both axes.

**Density scale.** The densities are fitted either on the scores or on their logit scale
(:func:`~trim_pomdp.observation_models.binning.to_density_scale`; recorded as ``density_scale`` in the card and the
arrays). Bins are always defined on the scores; on the logit scale each bin's mass is taken on its transformed
edges, so it is still exact. ``likelihood(continuous=True)`` returns the densities in the model's own coordinate
(the Jacobian is the same for every class, so a Bayes update is unchanged).

**r-only option.** ``m_t`` repeats evidence already seen in earlier steps (the paper uses it anyway). With
``r_only=True`` the model ignores ``m``: the ``t >= 2`` densities are 1-D in ``r``, and
``pair_probs[z] = P(r-bin | z) / n`` in every ``m``-bin, so the tabular model keeps the same observation space.

**Artifacts.** :meth:`ObservationModel.save` writes ``observation_model.npz`` (arrays; no pickle) and
``observation_model.json`` (the card: PRM, data source, splits, counts per class, bandwidths, the command that
made it, package versions, whether the scores were simulated) in the package's one artifact format
(:mod:`trim_pomdp._internal.artifacts`: a digest of the arrays in the card, so a corrupted or edited file is
refused). The KDE training points are stored too (at most ``max_stored`` per density, subsampled with a fixed
seed beyond that, recorded in the card), with their weights when the fit was weighted (outcome supervision), so
the continuous likelihood can be rebuilt after loading with the same bandwidths.
"""

from __future__ import annotations

import warnings
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import artifact_paths, load_artifact, package_versions, save_artifact
from trim_pomdp.constants import HIDDEN_CLASSES
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.observation_models.binning import (
    DEFAULT_BINS,
    DEFAULT_DENSITY_SCALE,
    DEFAULT_LOGIT_EPS,
    DEFAULT_SCALE_EPS,
    bin_index,
    check_class_rows,
    check_edges,
    check_scores,
    to_density_scale,
)
from trim_pomdp.observation_models.fitting import MAX_STORED, MIN_FIRST_STEPS, fit_class_densities
from trim_pomdp.observation_models.kde import ReflectedKDE

__all__ = ["FILE_STEM", "FORMAT", "ObservationModel", "load_shipped_observation_model"]

FORMAT = "trim-pomdp/observation-model/1"
FILE_STEM = "observation_model"
#: Arrays every observation-model artifact holds (besides the stored KDE points).
_ARRAYS = ("edges", "pair_probs", "first_probs", "r_only")
#: The stored KDE points and bandwidths, per density kind and class.
_STORED = tuple(
    f"{kind}_{what}_{name}"
    for kind in ("pair", "first")
    for what in ("data", "bandwidth")
    for name in HIDDEN_CLASSES
)
#: The weights of the stored KDE points (only in models fitted with soft classes).
_WEIGHTS = tuple(f"{kind}_weight_{name}" for kind in ("pair", "first") for name in HIDDEN_CLASSES)


class ObservationModel:
    """Class-conditional observation function O(o | z) over binned ``(r, m)`` observations.

    Usually made by :meth:`fit` or :meth:`load`. See the module docstring for the model and its choices.

    Parameters
    ----------
    edges : ndarray of shape (n + 1,)
        Bin edges of ``r`` on [0, 1] (and of ``m`` unless ``m_edges`` is given).
    pair_probs : ndarray of shape (3, n, n)
        ``P(r-bin, m-bin | z)`` for ``t >= 2``; each class sums to 1.
    first_probs : ndarray of shape (3, n)
        ``P(r-bin | z)`` at ``t = 1``; each class sums to 1.
    m_edges : ndarray of shape (n + 1,), optional
        Bin edges of ``m``; default ``edges``.
    r_only : bool, default=False
        Whether the model ignores ``m`` (module docstring).
    density_scale : {"score", "logit"}, default "score"
        The coordinate of the densities behind the bins (module docstring), with ``scale_eps``.
    scale_eps : float, default 1e-4
    card : dict, optional
        Metadata saved beside the arrays.
    pair_kdes, first_kdes : sequence of three fitted ReflectedKDE, optional
        For the continuous likelihood (rebuilt lazily from stored data after :meth:`load`).

    Attributes
    ----------
    n_bins : int
    r_edges, m_edges : ndarray of shape (n + 1,)
        The edges of each axis.
    edges : ndarray of shape (n + 1,) or None
        The edges of both axes when they are the same, else None.
    pair_probs, first_probs, r_only, card
    """

    def __init__(
        self,
        edges: Any,
        pair_probs: Any,
        first_probs: Any,
        *,
        m_edges: Any = None,
        r_only: bool = False,
        density_scale: str = DEFAULT_DENSITY_SCALE,
        scale_eps: float = DEFAULT_SCALE_EPS,
        card: Mapping[str, Any] | None = None,
        pair_kdes: list[ReflectedKDE] | None = None,
        first_kdes: list[ReflectedKDE] | None = None,
    ) -> None:
        edges = check_edges(edges)
        medges = edges if m_edges is None else check_edges(m_edges)
        if medges.size != edges.size:
            raise InvalidParameterError(
                f"r and m need the same number of bins, got {edges.size - 1} and {medges.size - 1}"
            )
        pair = np.asarray(pair_probs, dtype=float)
        first = np.asarray(first_probs, dtype=float)
        n = edges.size - 1
        if pair.shape != (3, n, n):
            raise InvalidParameterError(f"pair_probs must have shape (3, {n}, {n}), got {pair.shape}")
        if first.shape != (3, n):
            raise InvalidParameterError(f"first_probs must have shape (3, {n}), got {first.shape}")
        check_class_rows("pair_probs", pair.reshape(3, -1))
        check_class_rows("first_probs", first)
        self.r_edges = edges
        self.m_edges = edges if np.array_equal(medges, edges) else medges
        self.pair_probs = pair
        self.first_probs = first
        self.r_only = bool(r_only)
        to_density_scale(0.5, density_scale, scale_eps)  # validates both
        self.density_scale = str(density_scale)
        self.scale_eps = float(scale_eps)
        self.card = dict(card or {})
        self._pair_kdes = pair_kdes
        self._first_kdes = first_kdes
        self._stored: dict[str, np.ndarray] | None = None

    @classmethod
    def from_probs(
        cls,
        pair_probs: Any,
        first_probs: Any,
        edges: Any = None,
        *,
        m_edges: Any = None,
        card: Mapping[str, Any] | None = None,
    ) -> ObservationModel:
        """A model given by its bin probabilities alone (no densities behind them, so no continuous likelihood).

        Parameters
        ----------
        pair_probs : array-like of shape (3, n, n) or (3, n * n)
            ``P(r-bin, m-bin | z)`` for ``t >= 2``.
        first_probs : array-like of shape (3, n)
            ``P(r-bin | z)`` at ``t = 1``.
        edges : array-like of shape (n + 1,), optional
            Bin edges of ``r`` (and ``m``) on [0, 1]; uniform by default.
        m_edges : array-like of shape (n + 1,), optional
            Bin edges of ``m`` when they differ from ``edges``.
        card : dict, optional
        """
        first = np.asarray(first_probs, dtype=float)
        if first.ndim != 2 or first.shape[0] != 3:
            raise InvalidParameterError(f"first_probs must have shape (3, n), got {first.shape}")
        n = first.shape[1]
        pair = np.asarray(pair_probs, dtype=float)
        if pair.shape == (3, n * n):
            pair = pair.reshape(3, n, n)
        edges = np.linspace(0.0, 1.0, n + 1) if edges is None else edges
        return cls(edges, pair, first, m_edges=m_edges, card=card)

    @property
    def has_densities(self) -> bool:
        """Whether the continuous likelihood is available (fitted densities, or their stored training points)."""
        return self._pair_kdes is not None or self._stored is not None

    @property
    def n_bins(self) -> int:
        """Number of bins per axis."""
        return int(self.r_edges.size - 1)

    @property
    def edges(self) -> np.ndarray | None:
        """The edges of both axes, or None when ``r`` and ``m`` have different edges (see ``r_edges``/``m_edges``)."""
        return self.r_edges if self.m_edges is self.r_edges else None

    @property
    def shared_edges(self) -> bool:
        """Whether ``r`` and ``m`` are binned with the same edges."""
        return self.m_edges is self.r_edges

    def __repr__(self) -> str:
        counts = self.card.get("counts")
        return f"ObservationModel(n_bins={self.n_bins}, r_only={self.r_only}, counts={counts})"

    # ------------------------------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        table: Any,
        n_bins: int = 20,
        bandwidth: str | float = "scott",
        r_only: bool = False,
        card: Mapping[str, Any] | None = None,
        *,
        bins: str = DEFAULT_BINS,
        logit_eps: float = DEFAULT_LOGIT_EPS,
        min_first_steps: int = MIN_FIRST_STEPS,
        max_stored: int = MAX_STORED,
        random_state: int = 0,
        class_weights: Any = None,
        bandwidths: Mapping[str, Mapping[str, Any]] | None = None,
        first_sources: Mapping[str, str] | None = None,
        density_scale: str = DEFAULT_DENSITY_SCALE,
        scale_eps: float = DEFAULT_SCALE_EPS,
    ) -> ObservationModel:
        """Fit the class-conditional densities and their bin masses.

        Parameters
        ----------
        table : StepTable-like
            Per-step arrays ``r`` (score), ``m`` (prefix minimum, NaN at t = 1), ``z`` (class 0/1/2), ``t``
            (1-based) and optionally ``item_index`` (groups for ``bandwidth="cv"``).
        n_bins : int, default=20
            Bins per axis on [0, 1].
        bandwidth : {"scott", "silverman", "cv"} or float, default="scott"
            Passed to every :class:`ReflectedKDE` (a number must lie in [1e-4, 1]).
        r_only : bool, default=False
            Ignore ``m`` (module docstring).
        card : mapping, optional
            Extra card entries (PRM name, data source, splits, command, ``simulated`` ...); they override the
            computed ones of the same name.
        bins : {"uniform", "logit", "quantile"}
            How the bin edges are placed (:mod:`~trim_pomdp.observation_models.binning`); default
            :data:`~trim_pomdp.observation_models.binning.DEFAULT_BINS`.
        logit_eps : float, default=1e-3
            The innermost edges ``eps`` and ``1 - eps`` of the logit bins.
        min_first_steps : int, default=50
            First steps a class needs for its own t = 1 density (else: all its steps).
        max_stored : int, default=50000
            Training points stored per density for the continuous likelihood.
        random_state : int, default=0
            Seed of the storage subsample and of CV folds.
        class_weights : array-like of shape (n_steps, 3), optional
            Soft classes instead of the table's ``z`` (see
            :func:`~trim_pomdp.observation_models.fitting.fit_class_densities`).
        bandwidths : mapping, optional
            Fixed bandwidths per class and density (the card's ``bandwidths`` layout).
        first_sources : mapping, optional
            Per class, ``"first"`` or ``"all"``: the steps its ``t = 1`` density is fitted on.
        density_scale : {"score", "logit"}, default "score"
            Fit the densities on the scores or on their logit scale (module docstring).
        scale_eps : float, default 1e-4
            ``eps`` of the logit scale (lowered to keep every bin edge inside it; the card has the value used).

        Returns
        -------
        ObservationModel

        See Also
        --------
        trim_pomdp.observation_models.fitting.fit_observation_model : the fit with a held-out score.
        """
        dens = fit_class_densities(
            table,
            n_bins,
            bandwidth,
            r_only,
            bins=bins,
            logit_eps=logit_eps,
            min_first_steps=min_first_steps,
            random_state=random_state,
            class_weights=class_weights,
            bandwidths=bandwidths,
            first_sources=first_sources,
            density_scale=density_scale,
            scale_eps=scale_eps,
        )
        full_card: dict[str, Any] = {
            "format": FORMAT,
            **dens.card,
            "simulated": False,
            "package_versions": package_versions("scikit-learn"),
        }
        full_card.update(dict(card or {}))
        scale = dens.card["density_scale"]
        model = cls(
            dens.r_edges,
            dens.pair_probs,
            dens.first_probs,
            m_edges=dens.m_edges,
            r_only=r_only,
            density_scale=scale["kind"],
            scale_eps=scale.get("eps", DEFAULT_SCALE_EPS),
            card=full_card,
            pair_kdes=dens.pair_kdes,
            first_kdes=dens.first_kdes,
        )
        model._stored = model._stored_arrays(max_stored, random_state)
        return model

    # ------------------------------------------------------------------------------------------ observations

    def bin_probs(self, first: bool) -> np.ndarray:
        """Per-class observation probabilities: ``(3, n)`` if ``first`` else ``(3, n * n)``."""
        return self.first_probs.copy() if first else self.pair_probs.reshape(3, -1).copy()

    def observation_index(self, r: float, m: float | None = None) -> int:
        """Bin index of one observation: ``i_r * n + i_m``, or ``i_r`` when ``m`` is None/NaN (t = 1)."""
        first = m is None or (isinstance(m, (float, np.floating)) and np.isnan(m))
        return int(
            self.observation_index_batch(np.array([r], float), np.array([np.nan if first else m], float))[0]
        )

    def observation_index_batch(self, r: Any, m: Any) -> np.ndarray:
        """Vectorised :meth:`observation_index`; ``m`` is NaN where ``t = 1``.

        Note that first-step indices (``0 … n-1``) and pair indices (``0 … n*n-1``) are in different spaces;
        the caller knows ``t``.
        """
        r = np.asarray(r, dtype=float)
        m = np.asarray(m, dtype=float)
        r, m = np.broadcast_arrays(r, m)
        check_scores(r, "r")
        first = np.isnan(m)
        check_scores(m[~first], "m")
        n = self.n_bins
        ir = bin_index(self.r_edges, r)
        im = bin_index(self.m_edges, np.where(first, 0.0, m))
        return np.where(first, ir, ir * n + im).astype(np.int64)

    def likelihood(self, r: float, m: float | None = None, continuous: bool = False) -> np.ndarray:
        """``O(o | z)`` for the three classes, shape (3,).

        Parameters
        ----------
        r : float
            Score of the newest step.
        m : float or None
            ``min(r_1 … r_{t-1})``; None or NaN at ``t = 1``.
        continuous : bool, default=False
            False: the bin probabilities (what tabular solvers plan with). True: the densities themselves
            (``r_only``: the 1-D density of ``r``). Either is proportional, within one step, to what a Bayes
            update needs.
        """
        first = m is None or bool(np.isnan(m))
        if not continuous:
            idx = self.observation_index(r, None if first else m)
            return self.bin_probs(first)[:, idx]
        check_scores(np.asarray([r], float), "r")
        u = float(self._u(r))
        if first:
            return np.array([k.pdf(np.array([[u]]))[0] for k in self.first_kdes])
        check_scores(np.asarray([m], float), "m")
        x = np.array([[u]]) if self.r_only else np.array([[u, float(self._u(m))]])
        return np.array([k.pdf(x)[0] for k in self.pair_kdes])

    def _u(self, x: Any) -> np.ndarray:
        """Scores in the densities' coordinate."""
        return to_density_scale(x, self.density_scale, self.scale_eps)

    def likelihood_batch(self, r: Any, m: Any, continuous: bool = False) -> np.ndarray:
        """Vectorised :meth:`likelihood`: shape (n, 3), with ``m`` NaN where ``t = 1``.

        Within one call, rows of first steps and of later steps are each what :meth:`likelihood` returns for
        them (bin probabilities, or densities when ``continuous``).
        """
        r = np.asarray(r, dtype=float).ravel()
        m = np.asarray(m, dtype=float).ravel()
        if r.shape != m.shape:
            raise InvalidParameterError(f"r and m must have the same length, got {r.size} and {m.size}")
        idx = self.observation_index_batch(r, m)  # also validates the scores
        first = np.isnan(m)
        out = np.empty((r.size, 3))
        if not continuous:
            out[first] = self.first_probs[:, idx[first]].T
            out[~first] = self.pair_probs.reshape(3, -1)[:, idx[~first]].T
            return out
        r, m = self._u(r), self._u(m)
        if np.any(first):
            out[first] = np.column_stack([k.pdf(r[first][:, None]) for k in self.first_kdes])
        if np.any(~first):
            x = r[~first][:, None] if self.r_only else np.column_stack([r[~first], m[~first]])
            out[~first] = np.column_stack([k.pdf(x) for k in self.pair_kdes])
        return out

    # ------------------------------------------------------------------------------------------ KDE storage

    def _stored_arrays(self, max_stored: int, random_state: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(random_state)
        out: dict[str, np.ndarray] = {}
        sub: dict[str, int] = {}
        for kind, kdes in (("pair", self._pair_kdes), ("first", self._first_kdes)):
            if not kdes:
                continue
            for name, kde in zip(HIDDEN_CLASSES, kdes, strict=True):
                n = kde.data_.shape[0]
                keep = np.arange(n)
                if n > max_stored:
                    keep = np.sort(rng.choice(n, size=max_stored, replace=False))
                    sub[f"{kind}_{name}"] = int(n)
                out[f"{kind}_data_{name}"] = kde.data_[keep]
                out[f"{kind}_bandwidth_{name}"] = kde.bandwidth_
                if kde.weights_ is not None:
                    out[f"{kind}_weight_{name}"] = kde.weights_[keep]
        self.card["stored_points_subsampled_from"] = sub
        return out

    def _rebuild(self, kind: str) -> list[ReflectedKDE]:
        if self._stored is None:
            raise InvalidParameterError(
                "this ObservationModel has no KDE training data, so it has no continuous likelihood; "
                "use continuous=False (the bins)"
            )
        return [
            ReflectedKDE(bandwidth=self._stored[f"{kind}_bandwidth_{name}"].tolist()).fit(
                self._stored[f"{kind}_data_{name}"], sample_weight=self._stored.get(f"{kind}_weight_{name}")
            )
            for name in HIDDEN_CLASSES
        ]

    @property
    def pair_kdes(self) -> list[ReflectedKDE]:
        """The three fitted ``t >= 2`` densities (rebuilt from the stored points after :meth:`load`)."""
        if self._pair_kdes is None:
            self._pair_kdes = self._rebuild("pair")
        return self._pair_kdes

    @property
    def first_kdes(self) -> list[ReflectedKDE]:
        """The three fitted ``t = 1`` densities of ``r``."""
        if self._first_kdes is None:
            self._first_kdes = self._rebuild("first")
        return self._first_kdes

    # ------------------------------------------------------------------------------------------ save / load

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``directory/observation_model.npz`` and ``directory/observation_model.json``.

        Returns
        -------
        (Path, Path)
            The ``.npz`` and ``.json`` paths.
        """
        arrays: dict[str, np.ndarray] = {
            "edges": self.r_edges,
            "pair_probs": self.pair_probs,
            "first_probs": self.first_probs,
            "r_only": np.array(self.r_only),
        }
        if not self.shared_edges:
            arrays["m_edges"] = self.m_edges
        if self.density_scale != "score":  # models on the score scale are written as before
            arrays["density_scale"] = np.array(self.density_scale)
            arrays["scale_eps"] = np.array(self.scale_eps)
        if self._stored is None and self._pair_kdes is not None:
            self._stored = self._stored_arrays(MAX_STORED, 0)
        if self._stored is not None:
            arrays.update(self._stored)
        card = dict(self.card)
        card["n_bins"] = self.n_bins
        card["r_only"] = self.r_only
        card["versions"] = package_versions("scikit-learn")
        return save_artifact(Path(directory), stem=FILE_STEM, format=FORMAT, arrays=arrays, card=card)

    @classmethod
    def load(cls, path: str | Path) -> ObservationModel:
        """Load a model written by :meth:`save` (also by earlier versions, whose cards carry no digest).

        Parameters
        ----------
        path : str or Path
            The directory, or the ``.npz``/``.json`` file (the other is found beside it).

        Raises
        ------
        FileNotFoundError
            When the ``.npz`` does not exist.
        DataFormatError
            When a file is corrupted, of a foreign format, inconsistent or changed after it was written (the
            message names the file).
        """
        npz, js = artifact_paths(path, FILE_STEM)
        if not npz.is_file():
            raise FileNotFoundError(
                f"no observation model at {npz}; make one with `trim-pomdp fit-observations ... --out DIR`"
            )
        if not js.is_file():
            warnings.warn(
                f"observation-model card {js} is missing; loading the arrays without metadata", stacklevel=2
            )
        try:
            art = load_artifact(
                npz,
                stem=FILE_STEM,
                formats=(FORMAT,),
                what="trim-pomdp observation model",
                require_card=False,
            )
        except DataFormatError as exc:
            problem = _inconsistency(npz)  # say what is wrong with the arrays, when that is the reason
            if problem is None:
                raise
            raise DataFormatError(f"{npz} holds an inconsistent observation model: {problem}") from exc
        art.require(*_ARRAYS)
        a = art.arrays
        try:
            model = cls(
                a["edges"],
                a["pair_probs"],
                a["first_probs"],
                m_edges=a.get("m_edges"),
                r_only=bool(a["r_only"]),
                density_scale=str(a["density_scale"]) if "density_scale" in a else "score",
                scale_eps=float(a["scale_eps"]) if "scale_eps" in a else DEFAULT_SCALE_EPS,
                card=art.card,
            )
        except InvalidParameterError as exc:
            raise DataFormatError(f"{npz} holds an inconsistent observation model: {exc}") from exc
        if all(k in a for k in _STORED):
            model._stored = {k: a[k].astype(float) for k in _STORED + _WEIGHTS if k in a}
        return model


def _inconsistency(npz: Path) -> str | None:
    """Why the arrays of an observation-model file do not form a model, or None (unreadable, or they do)."""
    try:
        with np.load(npz, allow_pickle=False) as data:
            if "format" not in data.files or str(data["format"]) != FORMAT:
                return None
            a = {k: data[k] for k in ("edges", "pair_probs", "first_probs")}
            m_edges = data["m_edges"] if "m_edges" in data.files else None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):
        return None
    try:
        ObservationModel(a["edges"], a["pair_probs"], a["first_probs"], m_edges=m_edges)
    except InvalidParameterError as exc:
        return str(exc)
    return None


def load_shipped_observation_model(name: str | None = None) -> ObservationModel:
    """An observation model shipped with trim-pomdp: the default one, or another by name.

    The default is ``trim_pomdp/data/observation_model.{npz,json}``;
    :data:`~trim_pomdp.observation_models.shipped.SHIPPED_OBSERVATION_MODELS` lists the others. Each card says
    what the model was fitted on and whether the PRM scores behind it were simulated; ``trim_pomdp/data/README.md``
    says how each was made.
    """
    from trim_pomdp.observation_models.shipped import DEFAULT_OBSERVATION_MODEL, shipped_path

    npz = shipped_path(name or DEFAULT_OBSERVATION_MODEL)
    if not npz.is_file():
        raise FileNotFoundError(
            f"the shipped observation model {npz} is missing; reinstall trim-pomdp or make one with "
            "`trim-pomdp fit-observations --bench processbench --synthetic-prm --out DIR`"
        )
    return ObservationModel.load(npz)
