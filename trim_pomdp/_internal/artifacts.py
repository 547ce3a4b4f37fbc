"""The one on-disk format of every trim-pomdp artifact: ``NAME.npz`` (arrays) beside ``NAME.json`` (the card).

Policies, observation models and learned routers are all saved the same way:

- the arrays go into a compressed ``.npz`` that holds plain numeric or string arrays only and is always read with
  ``allow_pickle=False``, so loading a file someone handed you never runs code;
- the card is a JSON object with at least ``format`` (what the artifact is, with a version number, e.g.
  ``"trim-pomdp/trim-policy/1"``), ``versions`` (the packages that wrote it), ``created``, ``signed`` (the card
  fields the arrays were built from, e.g. ``params`` and ``lambda``) and ``sha256``: a digest of the ``.npz`` file's
  bytes and of every other card field (``digest = "npz+card/2"``). :func:`load_artifact` recomputes it, so a
  truncated or corrupted file and a hand-edited card are refused instead of silently changing decisions. Cards
  written by trim-pomdp 0.1 have no ``sha256``: they load with a warning that they cannot be verified.

Both files are written to a temporary name and renamed into place, so an interrupted save never leaves a torn
artifact behind. Every failure to read raises :class:`~trim_pomdp.exceptions.DataFormatError` with the file's
name and what to do about it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
import warnings
import zipfile
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp.exceptions import DataFormatError

__all__ = [
    "Artifact",
    "artifact_paths",
    "json_default",
    "load_artifact",
    "package_versions",
    "save_artifact",
    "to_jsonable",
    "write_json",
]


def json_default(obj: Any) -> Any:
    """``default=`` hook for :func:`json.dumps`: numpy scalars and arrays, and paths; anything else is an error."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to a JSON card")


def to_jsonable(x: Any) -> Any:
    """Plain JSON values from numpy scalars and arrays, tuples and paths; non-finite floats become ``None``."""
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist") and callable(x.tolist):  # numpy arrays and scalars
        return to_jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of trim-pomdp, numpy, scipy and ``names``, for artifact cards."""
    out: dict[str, str] = {}
    for name in ("trim-pomdp", "numpy", "scipy", *names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def artifact_paths(
    path: str | os.PathLike[str], stem: str, card_stem: str | None = None
) -> tuple[Path, Path]:
    """``(npz, json)`` paths of an artifact given its directory or either of its two files.

    ``card_stem`` names the card when it is not ``STEM.json`` (``agg_policy.npz`` beside ``agg.json``).
    """
    p = Path(path)
    if p.suffix in (".npz", ".json"):
        base = p.with_suffix("")
    elif p.is_dir() or not p.suffix:
        base = p / stem
    else:
        base = p
    npz = base.with_suffix(".npz")
    return npz, (npz.with_name(f"{card_stem}.json") if card_stem else base.with_suffix(".json"))


#: How ``sha256`` is computed by :func:`save_artifact`: over the bytes of the ``.npz`` file and the canonical JSON of
#: every other card field, so that any change to either file — a truncation, a flipped bit, an edited parameter —
#: is detected.
DIGEST_SCHEME = "npz+card/2"


def _file_digest(npz_bytes: bytes, card: Mapping[str, Any]) -> str:
    rest = {k: v for k, v in card.items() if k != "sha256"}
    h = hashlib.sha256(npz_bytes)
    h.update(json.dumps(to_jsonable(rest), sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


@dataclass
class Artifact:
    """A loaded artifact: its arrays, its card and where they came from."""

    arrays: dict[str, np.ndarray]
    card: dict[str, Any]
    npz: Path
    json: Path

    @property
    def format(self) -> str:
        return str(self.card.get("format", ""))

    def require(self, *names: str) -> None:
        """Raise :class:`DataFormatError` naming the arrays that are missing."""
        missing = [n for n in names if n not in self.arrays]
        if missing:
            raise DataFormatError(
                f"{self.npz} lacks the arrays {missing}: the file is truncated or not a {self.format} artifact; "
                "re-create it"
            )


def save_artifact(
    path: str | os.PathLike[str],
    *,
    stem: str,
    format: str,
    arrays: Mapping[str, Any],
    card: Mapping[str, Any],
    signed: Collection[str] = (),
    card_stem: str | None = None,
) -> tuple[Path, Path]:
    """Write ``arrays`` and ``card`` as an artifact and return the ``(npz, json)`` paths.

    Parameters
    ----------
    path : path-like
        A directory (the files are ``DIR/STEM.npz`` and ``DIR/STEM.json``) or a file name with or without suffix.
    stem : str
        File stem used when ``path`` is a directory.
    format : str
        The format tag, ``"trim-pomdp/<kind>/<version>"``.
    arrays : mapping of str to array-like
        Numeric, boolean or string arrays (object arrays are refused: they would need pickle).
    card : mapping
        JSON-serialisable metadata. ``format``, ``versions``, ``created``, ``signed`` and ``sha256`` are set here.
    signed : collection of str
        Card fields covered by the digest together with the arrays.
    card_stem : str, optional
        File stem of the card when it differs from the arrays' (see :func:`artifact_paths`).
    """
    npz, js = artifact_paths(path, stem, card_stem)
    npz.parent.mkdir(parents=True, exist_ok=True)
    plain: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        a = np.asarray(value)
        if a.dtype == object:
            raise TypeError(
                f"array {name!r} of a {format} artifact has dtype object, which would need pickle"
            )
        plain[name] = a
    meta = to_jsonable(dict(card))
    meta["format"] = format
    meta.setdefault("versions", package_versions())
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    meta["signed"] = sorted(signed)
    meta["digest"] = DIGEST_SCHEME
    meta.pop("sha256", None)
    tmp = npz.with_name(f".{npz.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        contents: dict[str, Any] = {"format": np.array(format), **plain}
        np.savez_compressed(fh, **contents)
    meta["sha256"] = _file_digest(tmp.read_bytes(), meta)
    os.replace(tmp, npz)
    write_json(js, meta)
    return npz, js


def load_artifact(
    path: str | os.PathLike[str],
    *,
    stem: str,
    formats: Collection[str],
    what: str,
    require_card: bool = True,
    card_stem: str | None = None,
) -> Artifact:
    """Read an artifact written by :func:`save_artifact` (or by an earlier version of trim-pomdp).

    Parameters
    ----------
    path : path-like
        The artifact's directory or either of its files.
    stem : str
        File stem inside a directory.
    formats : collection of str
        Accepted format tags (the current one and any older ones still readable).
    what : str
        What the artifact is, for messages (e.g. ``"TRIM policy"``).
    require_card : bool, default True
        Whether a missing ``.json`` card is an error (else the card is empty).
    card_stem : str, optional
        File stem of the card when it differs from the arrays' (see :func:`artifact_paths`).

    Raises
    ------
    DataFormatError
        When a file is missing, truncated, corrupted, of a foreign format, or its digest does not match.
    """
    npz, js = artifact_paths(path, stem, card_stem)
    if not npz.is_file():
        raise DataFormatError(f"no {what} at {npz}: the file does not exist")
    raw = npz.read_bytes()
    arrays, found = _read_arrays(raw, npz, formats, what)
    card = _read_card(js, npz, what, require_card)
    if card.get("format", found) != found:
        raise DataFormatError(
            f"the card {js} describes a {card.get('format')!r} artifact but {npz.name} holds {found!r}"
        )
    if "sha256" in card:
        if _file_digest(raw, card) != card["sha256"]:
            raise DataFormatError(
                f"{npz} does not match its card {js.name} (sha256 mismatch): one of the two files was truncated, "
                f"corrupted or edited after it was written. Re-create the {what} instead of editing it"
            )
    elif "signed" in card:  # a signed card whose digest went missing (a flipped bit in its key, an edit)
        raise DataFormatError(f"the card {js} has lost its sha256 digest; re-create the {what}")
    elif card:
        warnings.warn(
            f"{js} has no digest (written by trim-pomdp 0.1): its contents cannot be verified; save the {what} "
            "again to sign it",
            stacklevel=3,
        )
    return Artifact(arrays=arrays, card=card, npz=npz, json=js)


_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, NotImplementedError)


def _read_arrays(
    raw: bytes, npz: Path, formats: Collection[str], what: str
) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of the ``.npz`` bytes ``raw`` (never unpickled) and its format tag, one of ``formats``."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except _READ_ERRORS as exc:
        raise DataFormatError(
            f"{npz} is not a readable {what} ({type(exc).__name__}: {exc}); the file is truncated or corrupted: "
            "re-create it"
        ) from None
    fmt_array = arrays.pop("format", None)
    found = str(fmt_array) if fmt_array is not None and fmt_array.ndim == 0 else None
    if found is None or found not in formats:
        raise DataFormatError(
            f"{npz} is not a {what} (format {found!r}, expected {' or '.join(map(repr, formats))})"
        )
    return arrays, found


def _read_card(js: Path, npz: Path, what: str, require_card: bool) -> dict[str, Any]:
    """The JSON card (``{}`` when absent and not required)."""
    if not js.is_file():
        if require_card:
            raise DataFormatError(f"the card {js} of the {what} {npz} is missing; re-create the {what}")
        return {}
    try:
        card = json.loads(js.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"the card {js} is not valid JSON ({exc}); re-create the {what}") from None
    if not isinstance(card, dict):
        raise DataFormatError(f"the card {js} is not a JSON object; re-create the {what}")
    return card
