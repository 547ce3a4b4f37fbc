"""Per-query outcome records: the one file format every evaluation reads and writes.

A record says how one query went under one policy at one knob setting::

    policy,knob,query_id,correct,strong_tokens
    weak,,q0001,0,0
    strong,,q0001,1,412
    thr,0.35,q0001,1,153

- ``policy``: a router's name, or one of the reserved policies ``weak`` (M_w alone; ``strong_tokens`` 0) and
  ``strong`` (M_s alone; its ``strong_tokens`` are ``C_s(q)``, the denominators of the normalised cost);
- ``knob``: the router's trade-off setting (λ, a threshold, a budget ...) — empty (CSV) / ``null`` (JSONL) for
  the reserved policies; stored as float, NaN when absent;
- ``query_id``: any string; ``correct``: 0 or 1; ``strong_tokens``: M_s output tokens spent on the query
  (≥ 0).

Files are CSV (``.csv``) or JSON Lines (``.jsonl`` / ``.ndjson``, read by :mod:`trim_pomdp._internal.jsonl`),
with exactly these columns / keys (extra ones are ignored on reading). :class:`RecordWriter` appends and flushes
as it goes, so a long sweep that is killed keeps everything it finished; a torn last line is dropped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.jsonl import iter_jsonl, read_text, repair_torn_tail
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError

__all__ = [
    "RECORD_COLUMNS",
    "RESERVED_POLICIES",
    "RecordWriter",
    "Records",
    "read_records",
    "record_format",
    "write_records",
]

#: The columns of a records file, in order.
RECORD_COLUMNS: tuple[str, ...] = ("policy", "knob", "query_id", "correct", "strong_tokens")

#: Policies with a fixed meaning: M_w alone and M_s alone.
RESERVED_POLICIES: tuple[str, ...] = ("weak", "strong")


def record_format(path: str | os.PathLike) -> str:
    """``"csv"`` or ``"jsonl"`` from a records file's suffix; raises for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise InvalidParameterError(
        f"records file {str(path)!r} must end in .csv or .jsonl (got suffix {suffix or 'none'!r})"
    )


@dataclass
class Records:
    """Columnar per-query records.

    Attributes
    ----------
    policy : ndarray of str (object), shape (n,)
    knob : ndarray of float, shape (n,)
        NaN where a record has no knob (the reserved policies).
    query_id : ndarray of str (object), shape (n,)
    correct : ndarray of int8, shape (n,)
        0 or 1.
    strong_tokens : ndarray of float, shape (n,)
        M_s output tokens, ≥ 0.
    """

    policy: np.ndarray
    knob: np.ndarray
    query_id: np.ndarray
    correct: np.ndarray
    strong_tokens: np.ndarray

    def __post_init__(self) -> None:
        self.policy = np.asarray(self.policy, dtype=object)
        self.knob = np.asarray(self.knob, dtype=float)
        self.query_id = np.asarray(self.query_id, dtype=object)
        self.correct = np.asarray(self.correct)
        self.strong_tokens = np.asarray(self.strong_tokens, dtype=float)
        n = self.policy.shape[0]
        for name in RECORD_COLUMNS:
            arr = getattr(self, name)
            if arr.ndim != 1 or arr.shape[0] != n:
                raise DataFormatError(f"records column {name!r} has shape {arr.shape}; expected ({n},)")
        if n and not np.isin(self.correct, (0, 1)).all():
            bad = self.correct[~np.isin(self.correct, (0, 1))][0]
            raise DataFormatError(f"records column 'correct' must be 0 or 1, found {bad!r}")
        self.correct = self.correct.astype(np.int8)
        if n and not (np.isfinite(self.strong_tokens).all() and (self.strong_tokens >= 0).all()):
            raise DataFormatError("records column 'strong_tokens' must be finite and ≥ 0")
        if n and np.isinf(self.knob).any():
            raise DataFormatError("records column 'knob' must be finite or empty")

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls) -> Records:
        """No records."""
        return cls(np.empty(0, object), np.empty(0), np.empty(0, object), np.empty(0, np.int8), np.empty(0))

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> Records:
        """Build from dicts with the keys of :data:`RECORD_COLUMNS` (``knob`` may be ``None``)."""
        cols: dict[str, list[Any]] = {c: [] for c in RECORD_COLUMNS}
        for i, row in enumerate(rows):
            missing = [c for c in RECORD_COLUMNS if c not in row]
            if missing:
                raise DataFormatError(
                    f"record {i} lacks {missing}; every record needs {list(RECORD_COLUMNS)}"
                )
            cols["policy"].append(_policy(row["policy"], i))
            cols["knob"].append(_knob(row["knob"], i))
            cols["query_id"].append(_query_id(row["query_id"], i))
            cols["correct"].append(_correct(row["correct"], i))
            cols["strong_tokens"].append(_tokens(row["strong_tokens"], i))
        if not cols["policy"]:
            return cls.empty()
        return cls(
            np.array(cols["policy"], dtype=object),
            np.array(cols["knob"], dtype=float),
            np.array(cols["query_id"], dtype=object),
            np.array(cols["correct"], dtype=np.int8),
            np.array(cols["strong_tokens"], dtype=float),
        )

    @classmethod
    def from_arrays(
        cls, policy: str, knob: float | None, query_ids: Sequence[str], correct: Any, strong_tokens: Any
    ) -> Records:
        """The records of one ``(policy, knob)`` group from per-query arrays."""
        n = len(query_ids)
        k = float("nan") if knob is None else float(knob)
        return cls(
            np.full(n, str(policy), dtype=object),
            np.full(n, k),
            np.array([str(q) for q in query_ids], dtype=object),
            np.asarray(correct).astype(np.int64),
            np.asarray(strong_tokens, dtype=float),
        )

    @staticmethod
    def concat(parts: Sequence[Records]) -> Records:
        """Concatenate record sets."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Records.empty()
        return Records(*(np.concatenate([getattr(p, c) for p in parts]) for c in RECORD_COLUMNS))

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self.policy.shape[0])

    def select(self, mask: np.ndarray) -> Records:
        """The records where ``mask`` is true."""
        return Records(*(getattr(self, c)[mask] for c in RECORD_COLUMNS))

    def policies(self) -> list[str]:
        """Policy names in order of first appearance."""
        seen: dict[str, None] = {}
        for p in self.policy:
            seen.setdefault(p, None)
        return list(seen)

    def groups(self) -> dict[tuple[str, float | None], np.ndarray]:
        """Row indices per ``(policy, knob)``; the knob is ``None`` for records without one."""
        out: dict[tuple[str, float | None], list[int]] = {}
        for i, (p, k) in enumerate(zip(self.policy, self.knob, strict=True)):
            out.setdefault((p, None if math.isnan(k) else float(k)), []).append(i)
        return {key: np.asarray(idx, dtype=np.int64) for key, idx in out.items()}

    def rows(self) -> Iterator[dict[str, Any]]:
        """Records as dicts (``knob`` ``None`` when absent)."""
        for p, k, q, c, s in zip(
            self.policy, self.knob, self.query_id, self.correct, self.strong_tokens, strict=True
        ):
            yield {
                "policy": p,
                "knob": None if math.isnan(k) else float(k),
                "query_id": q,
                "correct": int(c),
                "strong_tokens": _num(s),
            }


# ---------------------------------------------------------------------- field parsing
def _policy(v: Any, i: int) -> str:
    s = "" if v is None else str(v).strip()
    if not s:
        raise DataFormatError(f"record {i}: 'policy' is empty; name the router (or 'weak' / 'strong')")
    return s


def _knob(v: Any, i: int) -> float:
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "nan", "none", "null")):
        return float("nan")
    try:
        k = float(v)
    except (TypeError, ValueError):
        raise DataFormatError(f"record {i}: 'knob' must be a number or empty, got {v!r}") from None
    if math.isinf(k):
        raise DataFormatError(f"record {i}: 'knob' must be finite, got {v!r}")
    return k


def _query_id(v: Any, i: int) -> str:
    s = "" if v is None else str(v)
    if not s:
        raise DataFormatError(f"record {i}: 'query_id' is empty")
    return s


def _correct(v: Any, i: int) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, str):
        t = v.strip().lower()
        if t in ("1", "true", "1.0"):
            return 1
        if t in ("0", "false", "0.0"):
            return 0
    elif isinstance(v, (int, float)) and v in (0, 1):
        return int(v)
    raise DataFormatError(f"record {i}: 'correct' must be 0 or 1, got {v!r}")


def _tokens(v: Any, i: int) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise DataFormatError(f"record {i}: 'strong_tokens' must be a number, got {v!r}") from None
    if not math.isfinite(x) or x < 0:
        raise DataFormatError(f"record {i}: 'strong_tokens' must be finite and ≥ 0, got {v!r}")
    return x


def _num(x: float) -> int | float:
    """An int when integral (tokens usually are), else the float."""
    x = float(x)
    return int(x) if x.is_integer() else x


def _fmt_knob(k: float) -> str:
    return "" if math.isnan(k) else repr(float(k))


# ---------------------------------------------------------------------- files
def read_records(path: str | os.PathLike) -> Records:
    """Read a CSV or JSONL records file.

    Parameters
    ----------
    path : str or path-like
        ``.csv`` with the header ``policy,knob,query_id,correct,strong_tokens`` or ``.jsonl`` with one object
        per line holding those keys.

    Returns
    -------
    Records

    Raises
    ------
    DataFormatError
        When a column is missing or a value is malformed (the message names the line).
    """
    path = Path(path)
    fmt = record_format(path)
    if not path.is_file():
        raise DataFormatError(f"records file {str(path)!r} does not exist")
    rows: list[dict[str, Any]]
    if fmt == "csv":
        rows = _csv_rows(path)
    else:
        rows = [obj for _, obj in iter_jsonl(path, what="records file")]
    try:
        return Records.from_rows(rows)
    except DataFormatError as exc:
        raise DataFormatError(f"{path}: {exc}") from None


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    text = read_text(path, "records file")
    if text and not text.endswith("\n"):
        # the writer ends every record with a newline: a last line without one was torn by a killed run
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in RECORD_COLUMNS if c not in header]
    if missing:
        raise DataFormatError(
            f"{path}: CSV header {header} lacks {missing}; the header must be {','.join(RECORD_COLUMNS)}"
        )
    # blank lines carry no record
    return [row for row in reader if any((v or "").strip() for v in row.values() if isinstance(v, str))]


def write_records(path: str | os.PathLike, records: Records, *, append: bool = False) -> None:
    """Write (or append) records to a CSV or JSONL file; the format follows the suffix."""
    with RecordWriter(path, append=append) as writer:
        writer.write(records)


class RecordWriter:
    """Append records to a CSV/JSONL file, flushing and fsync-ing after every :meth:`write`.

    Parameters
    ----------
    path : str or path-like
        Output file; ``.csv`` or ``.jsonl``.
    append : bool, default True
        Keep existing content (a CSV header is written only when the file is new or empty).
    """

    def __init__(self, path: str | os.PathLike, *, append: bool = True) -> None:
        self.path = Path(path)
        self.format = record_format(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if append and self.path.exists():
            repair_torn_tail(self.path)
        fresh = not append or not self.path.exists() or self.path.stat().st_size == 0
        self._fh = self.path.open("w" if fresh else "a", newline="", encoding="utf-8")
        if fresh and self.format == "csv":
            self._fh.write(",".join(RECORD_COLUMNS) + "\n")
            self._flush()

    def write(self, records: Records) -> None:
        """Append ``records`` and flush them to disk."""
        if self.format == "csv":
            w = csv.writer(self._fh, lineterminator="\n")
            for p, k, q, c, s in zip(
                records.policy,
                records.knob,
                records.query_id,
                records.correct,
                records.strong_tokens,
                strict=True,
            ):
                w.writerow([p, _fmt_knob(k), q, int(c), _num(s)])
        else:
            for row in records.rows():
                self._fh.write(json.dumps(row) + "\n")
        self._flush()

    def _flush(self) -> None:
        self._fh.flush()
        try:
            os.fsync(self._fh.fileno())
        except OSError:  # pragma: no cover - some filesystems refuse fsync
            pass

    def close(self) -> None:
        """Close the file."""
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
