"""Run outputs: per-problem traces, per-query records, resume and merge.

A run directory holds

``traces.jsonl``
    one line per finished problem: the full step trace (text, model, tokens, PRM scores, action, router state,
    timings), the extracted answer and correctness. The source of truth for resuming.
``records.jsonl``
    one line per finished problem with exactly the keys ``policy, knob, query_id, correct, strong_tokens`` —
    the per-query records ``trim-pomdp metrics`` reads. Rebuilt from the traces when a run resumes.
``errors.jsonl``
    problems that failed for good in this attempt (they are retried when the run is resumed).
``run.json``
    the run's settings; resuming with different settings is refused.

Lines are written whole with one ``write`` on a file opened for appending and flushed, so a run killed at any
point leaves at most one torn last line, which :func:`read_jsonl` drops (and :func:`repair_jsonl` truncates).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trim_pomdp.exceptions import DataFormatError

__all__ = [
    "ERRORS",
    "RECORDS",
    "RECORD_KEYS",
    "RUN_JSON",
    "TRACES",
    "JsonlWriter",
    "load_traces",
    "merge_runs",
    "read_jsonl",
    "rebuild_records",
    "record_from_trace",
    "repair_jsonl",
    "to_jsonable",
]

RECORD_KEYS = ("policy", "knob", "query_id", "correct", "strong_tokens")
TRACES, RECORDS, ERRORS, RUN_JSON = "traces.jsonl", "records.jsonl", "errors.jsonl", "run.json"


def to_jsonable(x: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and non-finite floats to plain JSON values."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if hasattr(x, "tolist") and callable(x.tolist):  # numpy arrays and scalars
        return to_jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Parse a JSONL file, dropping a torn (unparsable) *last* line; an earlier bad line is an error."""
    p = Path(path)
    if not p.exists():
        return []
    lines = p.read_text(encoding="utf-8").split("\n")
    out: list[dict[str, Any]] = []
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == last:
                break
            raise DataFormatError(f"{p}, line {i + 1}: not valid JSON ({exc})") from exc
    return out


def repair_jsonl(path: str | os.PathLike) -> None:
    """Truncate a torn last line (a write interrupted by a kill) so appends start on a fresh line."""
    p = Path(path)
    if not p.exists():
        return
    data = p.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with open(p, "r+b") as fh:
        fh.truncate(cut)


class JsonlWriter:
    """Append-only JSONL writer: one ``write`` + flush per line."""

    def __init__(self, path: str | os.PathLike, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_jsonl(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")
        self.fsync = fsync

    def write(self, obj: dict[str, Any]) -> None:
        self._fh.write(json.dumps(to_jsonable(obj), ensure_ascii=False) + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record_from_trace(trace: dict[str, Any]) -> dict[str, Any]:
    """The per-query record (exactly :data:`RECORD_KEYS`) of a trace."""
    return {
        "policy": trace["policy"],
        "knob": trace["knob"],
        "query_id": str(trace["query_id"]),
        "correct": int(bool(trace["correct"])),
        "strong_tokens": int(trace["strong_tokens"]),
    }


def load_traces(out_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Finished traces of a run directory, by query id (a repeated id keeps the first)."""
    traces: dict[str, dict[str, Any]] = {}
    for tr in read_jsonl(Path(out_dir) / TRACES):
        traces.setdefault(str(tr["query_id"]), tr)
    return traces


def _write_atomic(path: Path, lines: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for obj in lines:
            fh.write(json.dumps(to_jsonable(obj), ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rebuild_records(out_dir: str | os.PathLike) -> int:
    """Rewrite ``records.jsonl`` (and de-duplicate ``traces.jsonl``) from the traces; returns the count."""
    out = Path(out_dir)
    raw = read_jsonl(out / TRACES)
    traces = load_traces(out)
    if len(raw) != len(traces) or (
        (out / TRACES).exists() and not (out / TRACES).read_bytes().endswith(b"\n")
    ):
        _write_atomic(out / TRACES, traces.values())
    _write_atomic(out / RECORDS, (record_from_trace(t) for t in traces.values()))
    return len(traces)


def merge_runs(dirs: list[str | os.PathLike], out_dir: str | os.PathLike) -> dict[str, int]:
    """Join the traces and records of several run directories (e.g. shards) into ``out_dir``.

    Each (policy, knob, query_id) appears once; a duplicate with a different outcome raises
    :class:`DataFormatError` (it means two runs with different settings are being merged).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged: dict[tuple, dict[str, Any]] = {}
    dupes = 0
    for d in dirs:
        d = Path(d)
        if not (d / TRACES).exists():
            raise DataFormatError(f"{d} holds no {TRACES}: is it a `trim-pomdp run` output directory?")
        for tr in read_jsonl(d / TRACES):
            key = (tr["policy"], json.dumps(tr["knob"]), str(tr["query_id"]))
            if key in merged:
                dupes += 1
                if record_from_trace(merged[key]) != record_from_trace(tr):
                    raise DataFormatError(
                        f"query {key[2]} of policy {key[0]} (knob {key[1]}) appears in two inputs "
                        "with different "
                        "outcomes; merge only shards of the same run"
                    )
                continue
            merged[key] = tr
    _write_atomic(out / TRACES, merged.values())
    _write_atomic(out / RECORDS, (record_from_trace(t) for t in merged.values()))
    return {"records": len(merged), "duplicates": dupes, "inputs": len(dirs)}
