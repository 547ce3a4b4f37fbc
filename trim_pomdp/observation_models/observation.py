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
steps when there are at least ``min_first_steps`` (default 50) of them. Otherwise — always for S1, which is
impossible at ``t = 1`` (an earlier step would have to be wrong) — it falls back to the 1-D marginal of ``r``
over all steps of the class, so that every class still has a valid density (S1's never matters at ``t = 1``:
its prior there is 0). The card records which source each class used (``first_step_source``).

**Bins.** Bin ``i`` of an axis is ``[edges[i], edges[i+1])`` (the last bin includes 1). A pair observation's
flat index is ``i_r * n + i_m``; a first-step observation's index is ``i_r``. Bin masses are exact integrals
of the reflected KDE (separable normal-CDF products), divided by the total so each class row sums to 1.

**r-only option.** ``m_t`` repeats evidence already seen in earlier steps (the paper uses it anyway). With
``r_only=True`` the ``t >= 2`` densities are 1-D in ``r``, and ``pair_probs[z] = P(r-bin | z) / n`` for every
``m``-bin: ``m`` then carries no class information, and the tabular model keeps the same observation space.

**Artifacts.** :meth:`ObservationModel.save` writes ``observation_model.npz`` (arrays; no pickle) and
``observation_model.json`` (the card: PRM, data source, splits, counts per class, bandwidths, the command that
made it, package versions, whether the scores were simulated). The KDE training points are stored too (at most
``max_stored`` per density, subsampled with a fixed seed beyond that, recorded in the card), so the continuous
likelihood can be rebuilt after loading with the same bandwidths.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.artifacts import json_default
from trim_pomdp.constants import HIDDEN_CLASSES
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.observation_models.kde import ReflectedKDE

__all__ = [
    "FILE_STEM",
    "FORMAT",
    "ObservationModel",
    "held_out_log_likelihood",
    "load_shipped_observation_model",
    "table_arrays",
]

FORMAT = "trim-pomdp/observation-model/1"
FILE_STEM = "observation_model"
MIN_FIRST_STEPS = 50
MAX_STORED = 50_000
_ROW_TOL = 1e-9


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("trim-pomdp", "numpy", "scipy", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class _Table:
    r: np.ndarray
    m: np.ndarray
    z: np.ndarray
    t: np.ndarray
    item_index: np.ndarray | None


def table_arrays(table: Any) -> _Table:
    """Validate a StepTable-like object (attributes ``r, m, z, t`` and optionally ``item_index``).

    Raises
    ------
    InvalidParameterError
        On mismatched lengths, scores outside [0, 1], unknown classes, ``t < 1`` or a missing ``m`` at ``t >=
        2``.
    """
    try:
        r = np.asarray(table.r, dtype=float).ravel()
        m = np.asarray(table.m, dtype=float).ravel()
        z = np.asarray(table.z).ravel()
        t = np.asarray(table.t).ravel()
    except AttributeError as exc:
        raise InvalidParameterError(
            f"the step table must have attributes r, m, z, t (like StepTable from step_table()); {exc}"
        ) from exc
    item = getattr(table, "item_index", None)
    item = None if item is None else np.asarray(item).ravel()
    n = r.size
    for name, arr in (("m", m), ("z", z), ("t", t)) + ((("item_index", item),) if item is not None else ()):
        if arr.size != n:
            raise InvalidParameterError(f"step table: {name} has {arr.size} entries but r has {n}")
    if n == 0:
        raise InvalidParameterError("step table is empty: no scored steps to fit")
    if not np.all(np.isfinite(r)) or r.min() < 0 or r.max() > 1:
        bad = int(np.flatnonzero(~(np.isfinite(r) & (r >= 0) & (r <= 1)))[0])
        raise InvalidParameterError(f"step table: r[{bad}] = {r[bad]!r} is not a probability in [0, 1]")
    if not np.all(np.isin(z, (0, 1, 2))):
        bad = int(np.flatnonzero(~np.isin(z, (0, 1, 2)))[0])
        raise InvalidParameterError(f"step table: z[{bad}] = {z[bad]!r}; classes are 0 (S0), 1 (S1), 2 (S2)")
    if not np.all(t >= 1):
        bad = int(np.flatnonzero(~(t >= 1))[0])
        raise InvalidParameterError(f"step table: t[{bad}] = {t[bad]!r}; steps are 1-based")
    later = t >= 2
    ok_m = np.isfinite(m) & (m >= 0) & (m <= 1)
    if not np.all(ok_m[later]):
        bad = int(np.flatnonzero(later & ~ok_m)[0])
        raise InvalidParameterError(f"step table: m[{bad}] = {m[bad]!r} at t = {t[bad]} must be in [0, 1]")
    return _Table(r, m, z.astype(np.int64), t.astype(np.int64), item)


def _bin_index(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    n = edges.size - 1
    return np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n - 1)


class ObservationModel:
    """Class-conditional observation function O(o | z) over binned ``(r, m)`` observations.

    Usually made by :meth:`fit` or :meth:`load`. See the module docstring for the model and its choices.

    Parameters
    ----------
    edges : ndarray of shape (n + 1,)
        Bin edges on [0, 1], shared by ``r`` and ``m``.
    pair_probs : ndarray of shape (3, n, n)
        ``P(r-bin, m-bin | z)`` for ``t >= 2``; each class sums to 1.
    first_probs : ndarray of shape (3, n)
        ``P(r-bin | z)`` at ``t = 1``; each class sums to 1.
    r_only : bool, default=False
    card : dict, optional
    pair_kdes, first_kdes : sequence of three fitted ReflectedKDE, optional
        For the continuous likelihood (rebuilt lazily from stored data after :meth:`load`).

    Attributes
    ----------
    n_bins : int
    edges, pair_probs, first_probs, r_only, card
    """

    def __init__(
        self,
        edges: Any,
        pair_probs: Any,
        first_probs: Any,
        *,
        r_only: bool = False,
        card: Mapping[str, Any] | None = None,
        pair_kdes: list[ReflectedKDE] | None = None,
        first_kdes: list[ReflectedKDE] | None = None,
    ) -> None:
        edges = np.asarray(edges, dtype=float)
        pair = np.asarray(pair_probs, dtype=float)
        first = np.asarray(first_probs, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
            raise InvalidParameterError("edges must be a strictly increasing 1-D array of at least 2 values")
        if abs(edges[0]) > 1e-12 or abs(edges[-1] - 1) > 1e-12:
            raise InvalidParameterError(f"edges must span [0, 1], got [{edges[0]}, {edges[-1]}]")
        n = edges.size - 1
        if pair.shape != (3, n, n):
            raise InvalidParameterError(f"pair_probs must have shape (3, {n}, {n}), got {pair.shape}")
        if first.shape != (3, n):
            raise InvalidParameterError(f"first_probs must have shape (3, {n}), got {first.shape}")
        for name, arr in (("pair_probs", pair.reshape(3, -1)), ("first_probs", first)):
            if not np.all(np.isfinite(arr)) or arr.min() < 0:
                raise InvalidParameterError(f"{name} must be finite and non-negative")
            sums = arr.sum(axis=1)
            worst = int(np.argmax(np.abs(sums - 1)))
            if abs(sums[worst] - 1) > _ROW_TOL:
                raise InvalidParameterError(
                    f"{name}[{HIDDEN_CLASSES[worst]}] sums to {sums[worst]!r}, not 1 (tolerance {_ROW_TOL})"
                )
        self.edges = edges
        self.pair_probs = pair
        self.first_probs = first
        self.r_only = bool(r_only)
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
            Bin edges on [0, 1]; uniform by default.
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
        return cls(edges, pair, first, card=card)

    @property
    def has_densities(self) -> bool:
        """Whether the continuous likelihood is available (fitted densities, or their stored training points)."""
        return self._pair_kdes is not None or self._stored is not None

    @property
    def n_bins(self) -> int:
        """Number of bins per axis."""
        return int(self.edges.size - 1)

    def __repr__(self) -> str:
        counts = self.card.get("counts")
        return f"ObservationModel(n_bins={self.n_bins}, r_only={self.r_only}, counts={counts})"

    # -------------------------------------------------------------------------------------------------
    # fitting
    @classmethod
    def fit(
        cls,
        table: Any,
        n_bins: int = 20,
        bandwidth: str | float = "scott",
        r_only: bool = False,
        card: Mapping[str, Any] | None = None,
        *,
        min_first_steps: int = MIN_FIRST_STEPS,
        max_stored: int = MAX_STORED,
        random_state: int = 0,
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
            Passed to every :class:`ReflectedKDE`.
        r_only : bool, default=False
            Ignore ``m`` (module docstring).
        card : mapping, optional
            Extra card entries (PRM name, data source, splits, command, ``simulated`` ...); they override the
            computed ones of the same name.
        min_first_steps : int, default=50
            First steps a class needs for its own t = 1 density (else: all its steps).
        max_stored : int, default=50000
            Training points stored per density for the continuous likelihood.
        random_state : int, default=0
            Seed of the storage subsample and of CV folds.

        Returns
        -------
        ObservationModel
        """
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
            raise InvalidParameterError(f"n_bins must be a positive int, got {n_bins!r}")
        tab = table_arrays(table)
        n = int(n_bins)
        edges = np.linspace(0.0, 1.0, n + 1)
        pair_probs = np.zeros((3, n, n))
        first_probs = np.zeros((3, n))
        pair_kdes: list[ReflectedKDE] = []
        first_kdes: list[ReflectedKDE] = []
        bandwidths: dict[str, dict[str, list[float]]] = {}
        first_source: dict[str, str] = {}
        counts_pair: dict[str, int] = {}
        counts_first: dict[str, int] = {}
        for c, name in enumerate(HIDDEN_CLASSES):
            in_class = tab.z == c
            pm = in_class & (tab.t >= 2)
            counts_pair[name] = int(pm.sum())
            if pm.sum() < 2:
                raise InvalidParameterError(
                    f"class {name} has {int(pm.sum())} steps with t >= 2; at least 2 are needed to fit its "
                    "density. "
                    "Use more items (all ProcessBench splits give thousands per class)."
                )
            groups = tab.item_index[pm] if tab.item_index is not None else None
            X = tab.r[pm] if r_only else np.column_stack([tab.r[pm], tab.m[pm]])
            kde = ReflectedKDE(bandwidth=bandwidth, random_state=random_state).fit(X, groups=groups)
            masses = kde.bin_masses(edges)
            if r_only:
                masses = np.repeat((masses / masses.sum())[:, None], n, axis=1) / n
            pair_probs[c] = masses / masses.sum()
            pair_kdes.append(kde)
            fm = in_class & (tab.t == 1)
            counts_first[name] = int(fm.sum())
            if fm.sum() >= max(min_first_steps, 2):
                src, fmask = "first steps (t = 1)", fm
            else:
                src, fmask = f"all steps of the class (only {int(fm.sum())} first steps)", in_class
            first_source[name] = src
            fgroups = tab.item_index[fmask] if tab.item_index is not None else None
            fkde = ReflectedKDE(bandwidth=bandwidth, random_state=random_state).fit(
                tab.r[fmask], groups=fgroups
            )
            fmass = fkde.bin_masses(edges)
            first_probs[c] = fmass / fmass.sum()
            first_kdes.append(fkde)
            bandwidths[name] = {"pair": kde.bandwidth_.tolist(), "first": fkde.bandwidth_.tolist()}
        full_card: dict[str, Any] = {
            "format": FORMAT,
            "n_bins": n,
            "r_only": bool(r_only),
            "bandwidth_rule": bandwidth if isinstance(bandwidth, str) else float(bandwidth),
            "bandwidths": bandwidths,
            "counts": {name: int(np.sum(tab.z == c)) for c, name in enumerate(HIDDEN_CLASSES)},
            "counts_t_ge_2": counts_pair,
            "counts_t_eq_1": counts_first,
            "min_first_steps": int(min_first_steps),
            "first_step_source": first_source,
            "simulated": False,
            "package_versions": _versions(),
        }
        full_card.update(dict(card or {}))
        model = cls(
            edges,
            pair_probs,
            first_probs,
            r_only=r_only,
            card=full_card,
            pair_kdes=pair_kdes,
            first_kdes=first_kdes,
        )
        model._stored = model._stored_arrays(max_stored, random_state)
        return model

    # ------------------------------------------------------------------------------------------ observations
    def bin_probs(self, first: bool) -> np.ndarray:
        """Per-class observation probabilities: ``(3, n)`` if ``first`` else ``(3, n * n)``."""
        return self.first_probs.copy() if first else self.pair_probs.reshape(3, -1).copy()

    def _check_scores(self, x: np.ndarray, name: str) -> None:
        ok = np.isfinite(x) & (x >= 0) & (x <= 1)
        if not np.all(ok):
            bad = x[~ok].ravel()[0]
            raise InvalidParameterError(f"{name} must be a PRM score in [0, 1], got {bad!r}")

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
        self._check_scores(r, "r")
        first = np.isnan(m)
        self._check_scores(m[~first], "m")
        n = self.n_bins
        ir = _bin_index(self.edges, r)
        im = _bin_index(self.edges, np.where(first, 0.0, m))
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
        self._check_scores(np.asarray([r], float), "r")
        if first:
            return np.array([k.pdf(np.array([[r]]))[0] for k in self.first_kdes])
        self._check_scores(np.asarray([m], float), "m")
        x = np.array([[r]]) if self.r_only else np.array([[r, m]])
        return np.array([k.pdf(x)[0] for k in self.pair_kdes])

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
                data = kde.data_
                if data.shape[0] > max_stored:
                    keep = np.sort(rng.choice(data.shape[0], size=max_stored, replace=False))
                    data = data[keep]
                    sub[f"{kind}_{name}"] = int(kde.data_.shape[0])
                out[f"{kind}_data_{name}"] = data
                out[f"{kind}_bandwidth_{name}"] = kde.bandwidth_
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
                self._stored[f"{kind}_data_{name}"]
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
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        npz = directory / f"{FILE_STEM}.npz"
        js = directory / f"{FILE_STEM}.json"
        arrays: dict[str, np.ndarray] = {
            "format": np.array(FORMAT),
            "edges": self.edges,
            "pair_probs": self.pair_probs,
            "first_probs": self.first_probs,
            "r_only": np.array(self.r_only),
        }
        if self._stored is None and self._pair_kdes is not None:
            self._stored = self._stored_arrays(MAX_STORED, 0)
        if self._stored is not None:
            arrays.update(self._stored)
        np.savez_compressed(npz, **arrays)
        card = dict(self.card)
        card["format"] = FORMAT
        card["n_bins"] = self.n_bins
        card["r_only"] = self.r_only
        js.write_text(json.dumps(card, indent=2, default=json_default) + "\n")
        return npz, js

    @classmethod
    def load(cls, path: str | Path) -> ObservationModel:
        """Load a model written by :meth:`save`.

        Parameters
        ----------
        path : str or Path
            The directory, or the ``.npz``/``.json`` file (the other is found beside it).

        Raises
        ------
        FileNotFoundError
            When the ``.npz`` does not exist.
        DataFormatError
            When a file is corrupted, of a foreign format or inconsistent (the message names the file).
        """
        path = Path(path)
        if path.is_dir():
            npz, js = path / f"{FILE_STEM}.npz", path / f"{FILE_STEM}.json"
        else:
            base = path.with_suffix("") if path.suffix in (".npz", ".json") else path
            npz, js = base.with_suffix(".npz"), base.with_suffix(".json")
        if not npz.is_file():
            raise FileNotFoundError(
                f"no observation model at {npz}; make one with `trim-pomdp fit-observations ... --out DIR`"
            )
        try:
            with np.load(npz, allow_pickle=False) as data:
                files = set(data.files)
                if "format" not in files or str(data["format"]) != FORMAT:
                    found = str(data["format"]) if "format" in files else "none"
                    raise DataFormatError(
                        f"{npz} is not a trim-pomdp observation model (format {found!r}, expected {FORMAT!r})"
                    )
                missing = {"edges", "pair_probs", "first_probs", "r_only"} - files
                if missing:
                    raise DataFormatError(f"{npz} lacks the arrays {sorted(missing)}")
                arrays = {k: np.asarray(data[k]) for k in files}
        except DataFormatError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError) as exc:
            raise DataFormatError(f"cannot read observation model arrays from {npz}: {exc}") from exc
        card: dict[str, Any] = {}
        if js.is_file():
            try:
                card = json.loads(js.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataFormatError(f"{js} is not valid JSON: {exc}") from exc
            if not isinstance(card, dict) or card.get("format", FORMAT) != FORMAT:
                raise DataFormatError(
                    f"{js} is not a trim-pomdp observation-model card (format {card.get('format')!r})"
                    if isinstance(card, dict)
                    else f"{js} is not a JSON object"
                )
        else:
            warnings.warn(
                f"observation-model card {js} is missing; loading the arrays without metadata", stacklevel=2
            )
        try:
            model = cls(
                arrays["edges"],
                arrays["pair_probs"],
                arrays["first_probs"],
                r_only=bool(arrays["r_only"]),
                card=card,
            )
        except InvalidParameterError as exc:
            raise DataFormatError(f"{npz} holds an inconsistent observation model: {exc}") from exc
        stored_keys = [
            f"{kind}_{what}_{name}"
            for kind in ("pair", "first")
            for what in ("data", "bandwidth")
            for name in HIDDEN_CLASSES
        ]
        if all(k in arrays for k in stored_keys):
            model._stored = {k: arrays[k].astype(float) for k in stored_keys}
        return model


def load_shipped_observation_model() -> ObservationModel:
    """The observation model shipped with trim-pomdp.

    Looks for the package-data copy ``trim_pomdp/data/observation_model.npz`` (present in pip installs), then
    for the repository's top-level ``observation_models/``. Its card says whether the PRM scores behind it
    were simulated (they are in the default artifact, which is made with ``--synthetic-prm``) and how to
    replace it.
    """
    from importlib import resources

    candidates: list[Path] = []
    try:
        pkg = resources.files("trim_pomdp") / "data" / f"{FILE_STEM}.npz"
        candidates.append(Path(str(pkg)))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - exotic loaders
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "observation_models" / f"{FILE_STEM}.npz")
    for cand in candidates:
        if cand.is_file():
            return ObservationModel.load(cand)
    raise FileNotFoundError(
        "the shipped observation model was not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); reinstall trim-pomdp or make one with `trim-pomdp fit-observations --bench processbench "
        "--synthetic-prm --out DIR`"
    )


def held_out_log_likelihood(
    table: Any,
    n_folds: int = 5,
    bandwidth: str | float = "scott",
    r_only: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Mean held-out log-density per step of each class's ``t >= 2`` density, with folds by item.

    Items (``table.item_index``) are split into ``n_folds`` folds; each fold's steps are scored under the
    densities fitted on the other folds. Returns ``{"S0": …, "S1": …, "S2": …}`` in nats per step (a 2-D
    density unless ``r_only``).
    """
    from sklearn.model_selection import GroupKFold

    tab = table_arrays(table)
    if tab.item_index is None:
        raise InvalidParameterError("held-out log-likelihood by item needs table.item_index")
    later = tab.t >= 2
    items = np.unique(tab.item_index[later])
    if items.size < n_folds:
        raise InvalidParameterError(f"{n_folds}-fold CV by item needs >= {n_folds} items, got {items.size}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(items)
    fold_of_item = dict(zip(perm.tolist(), (np.arange(perm.size) % n_folds).tolist(), strict=True))
    groups = np.array([fold_of_item.get(i, -1) for i in tab.item_index.tolist()])
    out: dict[str, float] = {}
    for c, name in enumerate(HIDDEN_CLASSES):
        mask = later & (tab.z == c)
        X = tab.r[mask][:, None] if r_only else np.column_stack([tab.r[mask], tab.m[mask]])
        g = groups[mask]
        total, count = 0.0, 0
        for train, test in GroupKFold(n_splits=n_folds).split(X, groups=g):
            if train.size < 2 or test.size == 0:
                continue
            kde = ReflectedKDE(bandwidth=bandwidth).fit(X[train])
            total += float(np.sum(kde.score_samples(X[test])))
            count += test.size
        out[name] = total / count if count else float("nan")
    return out
