"""A persistent, process-safe cache of model and PRM calls (SQLite).

Keys are SHA-256 digests of a canonical JSON of ``(kind, model, params, problem, prefix)``, so any change of
sampling parameters, prompt format or model gives a different key. Values are JSON, each stored with a digest of
its key and value: a value changed on disk is refused instead of replayed. The database runs in WAL mode with
``synchronous=NORMAL``: a killed process loses nothing that was committed, several processes (shards on one
machine) can share one file, and a write costs no fsync. Calls are short local-disk operations, made directly
from the event loop under a lock (a thread hop would cost more than the query).

A file that is not a readable cache (truncated, overwritten, bit-flipped) raises one
:class:`~trim_pomdp.exceptions.DataFormatError` naming it: the cache only holds model calls, so deleting it
loses nothing but the time to make them again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trim_pomdp.exceptions import DataFormatError

__all__ = ["Cache", "cache_key"]


def cache_key(kind: str, model: str, params: dict[str, Any], *parts: Any) -> str:
    """Digest of the canonical JSON of the call's identity."""
    blob = json.dumps(
        [kind, model, params, *parts], sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _digest(key: str, blob: str) -> str:
    return hashlib.sha256(f"{key}\n{blob}".encode()).hexdigest()[:32]


class Cache:
    """SQLite key–value cache.

    Parameters
    ----------
    path : str or Path or None
        Database file (created with its folder). ``None`` or ``":memory:"`` keeps it in memory.
    readonly : bool
        Never write (lookups only).
    """

    def __init__(self, path: str | Path | None = None, *, readonly: bool = False) -> None:
        self.path = ":memory:" if path in (None, ":memory:") else str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.readonly = readonly
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        with self._database():
            self._conn = sqlite3.connect(
                self.path, check_same_thread=False, timeout=30.0, isolation_level=None
            )
            try:
                self._open()
            except BaseException:
                self._conn.close()
                raise

    def _open(self) -> None:
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS calls "
            "(key TEXT PRIMARY KEY, kind TEXT, model TEXT, value TEXT, created REAL, digest TEXT)"
        )
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(calls)")}
        if "digest" not in columns:  # a cache written before values were signed: its rows are trusted
            self._conn.execute("ALTER TABLE calls ADD COLUMN digest TEXT")

    @contextlib.contextmanager
    def _database(self) -> Iterator[None]:
        """Turn SQLite's errors about a damaged file into one :class:`DataFormatError` naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            raise self._damaged(str(exc)) from None

    def _damaged(self, what: str) -> DataFormatError:
        return DataFormatError(
            f"{self.path} is not a readable cache of model calls ({what}): delete it (it holds only cached "
            "calls, which the next run makes again) or pass another --cache FILE"
        )

    def get(self, key: str) -> Any | None:
        """The cached value or ``None``."""
        with self._lock, self._database():
            row = self._conn.execute("SELECT value, digest FROM calls WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        value, digest = row
        if digest is not None and digest != _digest(key, value):
            raise self._damaged(f"the entry {key[:12]}... does not match its digest")
        try:
            out = json.loads(value)
        except (TypeError, json.JSONDecodeError) as exc:
            raise self._damaged(f"the entry {key[:12]}... is not JSON: {exc}") from None
        self.hits += 1
        return out

    def put(self, key: str, value: Any, *, kind: str = "", model: str = "") -> None:
        """Store ``value`` (JSON-serialisable) under ``key`` (last write wins)."""
        if self.readonly:
            return
        blob = json.dumps(value, ensure_ascii=False)
        with self._lock, self._database():
            self._conn.execute(
                "INSERT OR REPLACE INTO calls (key, kind, model, value, created, digest) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, kind, model, blob, time.time(), _digest(key, blob)),
            )

    def __len__(self) -> int:
        with self._lock, self._database():
            return int(self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def stats(self) -> dict[str, int]:
        """Hits and misses of this session and the number of stored entries."""
        return {"hits": self.hits, "misses": self.misses, "entries": len(self)}

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CachedGenerator:
    """Wraps a step generator with a :class:`Cache` lookup keyed by model, cache params, problem and prefix.

    A hit returns the stored :class:`~trim_pomdp.generation.base.StepResult` with ``cached=True`` and the
    original ``latency_s`` and token counts (so token accounting is identical on reruns).
    """

    def __init__(self, generator: Any, cache: Cache, kind: str = "step") -> None:
        self.inner = generator
        self.cache = cache
        self.kind = kind
        self.model = generator.model

    def cache_params(self) -> dict[str, Any]:
        return self.inner.cache_params()

    def key(self, problem: str, steps: list[str], max_tokens: int | None) -> str:
        # the loop passes the solution's remaining token budget; it only changes the call when it is below the
        # generator's own per-step cap, so runs that reach a prefix with different budgets share the entry
        cap = getattr(self.inner, "max_tokens_per_step", None)
        if max_tokens is not None and cap is not None and max_tokens >= cap:
            max_tokens = None
        return cache_key(self.kind, self.model, self.inner.cache_params(), problem, list(steps), max_tokens)

    async def generate_step(self, problem: str, steps: list[str], *, max_tokens: int | None = None):
        from trim_pomdp.generation.base import StepResult

        key = self.key(problem, steps, max_tokens)
        hit = self.cache.get(key)
        if hit is not None:
            res = StepResult.from_dict(hit)
            res.cached = True
            return res
        res = await self.inner.generate_step(problem, steps, max_tokens=max_tokens)
        self.cache.put(key, res.to_dict(), kind=self.kind, model=self.model)
        return res

    async def aclose(self) -> None:
        await self.inner.aclose()
