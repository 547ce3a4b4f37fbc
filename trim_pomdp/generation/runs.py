"""Run directories of ``trim-pomdp run``: per-problem traces, per-query records, resume and merge.

A run directory holds

``traces.jsonl``
    one line per finished problem: the full step trace (text, model, tokens, PRM scores, action, router state,
    timings), the extracted answer and correctness. The source of truth for resuming.
``records.jsonl``
    one line per finished problem with exactly the keys ``policy, knob, query_id, correct, strong_tokens``: the
    per-query records ``trim-pomdp metrics`` reads. Rebuilt from the traces when a run resumes.
``errors.jsonl``
    problems that failed for good in this attempt (they are retried when the run is resumed).
``run.json``
    the run's settings; resuming with different settings is refused.
``run.lock``
    held (an advisory lock) by the process running in the directory: a second process on the same directory
    is refused with the holder's pid, instead of both appending to the same files.

The JSONL files are written and read with :mod:`trim_pomdp._internal.jsonl`: one whole line per finished problem,
so a run killed at any point leaves at most one torn last line, which the reader drops and the writer repairs
before appending.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from trim_pomdp._internal.artifacts import to_jsonable, write_json
from trim_pomdp._internal.jsonl import JsonlWriter, read_jsonl
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError

__all__ = [
    "ERRORS",
    "RECORDS",
    "RECORD_KEYS",
    "RUN_JSON",
    "SETTINGS_CHECKED_ON_RESUME",
    "TRACES",
    "check_run_settings",
    "load_traces",
    "lock_run_dir",
    "merge_runs",
    "rebuild_records",
    "record_from_trace",
]

RECORD_KEYS = ("policy", "knob", "query_id", "correct", "strong_tokens")
TRACES, RECORDS, ERRORS, RUN_JSON = "traces.jsonl", "records.jsonl", "errors.jsonl", "run.json"
RUN_LOCK = "run.lock"

#: The settings of ``run.json`` that a resumed run must share with the run it continues.
SETTINGS_CHECKED_ON_RESUME = (
    "dataset",
    "policy",
    "knob",
    "mode",
    "weak",
    "strong",
    "prm",
    "router",
    "shard",
    "max_steps",
    "max_solution_tokens",
)


def record_from_trace(trace: dict[str, Any]) -> dict[str, Any]:
    """The per-query record (exactly :data:`RECORD_KEYS`) of a trace."""
    return {
        "policy": trace["policy"],
        "knob": trace["knob"],
        "query_id": str(trace["query_id"]),
        "correct": int(bool(trace["correct"])),
        "strong_tokens": int(trace["strong_tokens"]),
    }


def _first_by_query(traces: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for tr in traces:
        out.setdefault(str(tr["query_id"]), tr)
    return out


def load_traces(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Finished traces of a run directory, by query id (a repeated id keeps the first)."""
    return _first_by_query(read_jsonl(Path(out_dir) / TRACES, what="trace file"))


def _write_atomic(path: Path, lines: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with JsonlWriter(tmp, append=False) as writer:
        for obj in lines:
            writer.write(obj)
    with open(tmp, "rb") as fh:  # one fsync for the whole file before it replaces the old one
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rebuild_records(out_dir: str | os.PathLike[str]) -> int:
    """Rewrite ``records.jsonl`` (and de-duplicate ``traces.jsonl``) from the traces; returns the count."""
    out = Path(out_dir)
    raw = read_jsonl(out / TRACES, what="trace file")
    traces = _first_by_query(raw)
    torn = (out / TRACES).exists() and not (out / TRACES).read_bytes().endswith(b"\n")
    if len(raw) != len(traces) or torn:
        _write_atomic(out / TRACES, traces.values())
    _write_atomic(out / RECORDS, (record_from_trace(t) for t in traces.values()))
    return len(traces)


def _try_lock(fh: IO[str]) -> bool:
    """Take an exclusive advisory lock on ``fh`` without waiting (``False``: another process holds it)."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def lock_run_dir(out_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``out_dir``'s ``run.lock`` while a run writes there (released when the process ends, however it ends).

    Raises
    ------
    InvalidParameterError
        Another process holds the directory; the message names it.
    """
    path = Path(out_dir) / RUN_LOCK
    fh = open(path, "a+", encoding="utf-8")  # held for the whole run
    try:
        if not _try_lock(fh):
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise InvalidParameterError(
                f"{out_dir} is in use by another run ({holder}): wait for it to finish, or choose another "
                "--out directory (two runs appending to one directory would lose records)"
            )
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        yield
    finally:
        fh.close()  # closing the file releases the lock


def check_run_settings(out_dir: str | os.PathLike[str], settings: dict[str, Any]) -> None:
    """Store ``settings`` in ``run.json``, or check them against the run already there.

    Raises
    ------
    InvalidParameterError
        ``out_dir`` holds a run whose settings differ in one of :data:`SETTINGS_CHECKED_ON_RESUME`.
    """
    out = Path(out_dir)
    path = out / RUN_JSON
    settings = to_jsonable(settings)
    if not path.exists():
        write_json(path, settings)
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(
            f"{path} is not a valid settings file ({exc}); remove it or choose a new --out directory"
        ) from None
    diff = [k for k in SETTINGS_CHECKED_ON_RESUME if k in old and k in settings and old[k] != settings[k]]
    if diff:
        changes = ", ".join(f"{k}: {old[k]!r} -> {settings[k]!r}" for k in diff)
        raise InvalidParameterError(
            f"{out} holds a run with different settings ({changes}); "
            "resume with the same settings or choose a new --out directory"
        )


def merge_runs(dirs: list[str | os.PathLike[str]], out_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Join the traces and records of several run directories (e.g. shards) into ``out_dir``.

    Each (policy, knob, query_id) appears once; a duplicate with a different outcome raises
    :class:`~trim_pomdp.exceptions.DataFormatError` (it means two runs with different settings are being merged).

    Returns
    -------
    dict
        ``records`` (merged), ``duplicates`` (dropped) and ``inputs`` (directories read).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    dupes = 0
    for d in map(Path, dirs):
        if not (d / TRACES).exists():
            raise DataFormatError(f"{d} holds no {TRACES}: is it a `trim-pomdp run` output directory?")
        for tr in read_jsonl(d / TRACES, what="trace file"):
            key = (tr["policy"], json.dumps(tr["knob"]), str(tr["query_id"]))
            if key not in merged:
                merged[key] = tr
                continue
            dupes += 1
            if record_from_trace(merged[key]) != record_from_trace(tr):
                raise DataFormatError(
                    f"query {key[2]} of policy {key[0]} (knob {key[1]}) appears in two inputs with different "
                    "outcomes; merge only shards of the same run"
                )
    _write_atomic(out / TRACES, merged.values())
    _write_atomic(out / RECORDS, (record_from_trace(t) for t in merged.values()))
    return {"records": len(merged), "duplicates": dupes, "inputs": len(dirs)}
