"""What a ``.pomdp`` file assigns, kept sparse while it is read, and the tabular model built from it at the end.

:class:`CassandraModel` receives the ``T:``, ``O:`` and ``R:`` statements from the parser in
:mod:`~trim_pomdp.solvers.formats.cassandra`, logs their entries in file order (runs of one-line entries
arrive as token columns, converted to indices and wildcards expanded in bulk), and builds per-action CSR
matrices and the expected rewards when the file ends. Everything it logs is charged to the reader's memory
budget before it is stored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.formats._common import ROW_SUM_TOLERANCE
from trim_pomdp.solvers.formats._sparse import (
    ENTRY_BYTES,
    AssignmentLog,
    check_rows,
    csr_lookup,
    last_wins,
    split_actions,
)
from trim_pomdp.solvers.memory import MemoryBudget

__all__ = ["CassandraModel", "Space"]

#: Bytes charged per logged reward entry (row, s', o, value, sequence number).
_REWARD_BYTES = 40


class Space:
    """A named or counted set (states, actions, observations) and its index lookup."""

    def __init__(self, kind: str, names: list[str] | None, n: int):
        self.kind, self.names, self.n = kind, names, n
        self.index = {name: i for i, name in enumerate(names)} if names else {}
        self._all = np.arange(n)
        self._cache: dict[str, int] = {"*": -1, **self.index}  # every token seen that is a code

    def expected(self) -> str:
        return f"a {self.kind[:-1]} (0..{self.n - 1}" + (", a name" if self.names else "") + " or '*')"

    def resolve(self, tok: str) -> np.ndarray | None:
        """Indices denoted by ``tok``: ``*`` → all, an integer → itself, a name → its index; ``None`` if invalid."""
        i = self.code(tok)
        return None if i is None else self.indices(i)

    def indices(self, code: int) -> np.ndarray:
        """The indices a :meth:`code` stands for: all of them for ``-1`` (``*``), else itself."""
        return self._all if code < 0 else np.array([code])

    def code(self, tok: str) -> int | None:
        """The index of ``tok``, ``-1`` for ``*``, ``None`` if it is not one."""
        hit = self._cache.get(tok)
        if hit is not None:
            return hit
        if tok.isdigit() and int(tok) < self.n:
            i = int(tok)
        else:
            return None
        if len(self._cache) < 1 << 20:  # numbered spaces can be huge: cache only so many numbers
            self._cache[tok] = i
        return i

    def codes(self, toks: Sequence[str]) -> np.ndarray:
        """:meth:`code` of each token, ``-2`` where a token is not one."""
        try:  # names, "*" and the numbers seen before are in the cache: one dict lookup each
            return np.fromiter(map(self._cache.__getitem__, toks), np.int64, len(toks))
        except KeyError:
            return np.array([-2 if (i := self.code(t)) is None else i for t in toks], dtype=np.int64)


#: One-entry statements expanded and logged in one batch.
_BATCH = 1 << 16


@dataclass
class _Batch:
    """One-entry statements of one kind waiting to be logged: codes (``-1``: ``*``), value, seq and line number,
    as arrays per run of one-line entries and as tuples per statement read by the parser."""

    runs: list[list[np.ndarray]] = field(default_factory=list)
    singles: list[tuple[float, ...]] = field(default_factory=list)
    n: int = 0


class CassandraModel:
    """The entries of one ``.pomdp`` file, logged sparse; :meth:`finish` builds ``T``, ``O`` and ``R``."""

    def __init__(self, spaces: dict[str, Space], source: str, budget: MemoryBudget):
        self.spaces, self.source, self.budget = spaces, source, budget
        S, A, Z = (spaces[k].n for k in ("states", "actions", "observations"))
        self.S, self.A, self.Z = S, A, Z
        self.logs = {"T": AssignmentLog(A * S, S, budget, "T"), "O": AssignmentLog(A * S, Z, budget, "O")}
        self._r: list[list[np.ndarray]] = [
            [],
            [],
            [],
            [],
            [],
        ]  # rows (a*S+s), s' (-1: any), o (-1: any), r, seq
        #: the spaces of the index columns of each kind of entry
        self._columns = {
            "T": ("actions", "states", "states"),
            "O": ("actions", "states", "observations"),
            "R": ("actions", "states", "states", "observations"),
        }
        self._what = {"T": "transition probability", "O": "observation probability", "R": "reward value"}
        self._batches = {key: _Batch() for key in "TOR"}

    # -- one-entry statements (``T: a : s : s' p`` and the like), batched -----------------------------------
    def entry(self, key: str, codes: list[int], value: float, seq: int, line: int) -> None:
        """One ``key: a : s : c value`` (``R: a : s : s' : o value``) entry; a code ``-1`` stands for ``*``."""
        batch = self._batches[key]
        batch.singles.append((*codes, value, seq, line))
        batch.n += 1
        if batch.n >= _BATCH:
            self._flush(key)

    def entry_run(self, entries: list[tuple[str, list[list[str]], np.ndarray, np.ndarray]]) -> None:
        """Log a run of one-line entries: per kind ``(key, token columns, lines, sequence numbers)``, the token
        columns being the indices (``*`` allowed), then the value.

        Raises
        ------
        DataFormatError
            For the first line of the run, and in it the first token, that is not an index or a number (as the
            statement parser would meet them).
        """
        bad: list[tuple[int, int, str]] = []
        checked = []
        for key, tokens, lines, seq in entries:
            spaces = [self.spaces[k] for k in self._columns[key]]
            codes = [space.codes(toks) for space, toks in zip(spaces, tokens, strict=False)]
            values, bad_value = _floats(tokens[-1])
            for j, c in enumerate(codes):
                if (c == -2).any():
                    k = int(np.argmax(c == -2))
                    bad.append((int(lines[k]), j, f"expected {spaces[j].expected()}, got {tokens[j][k]!r}"))
            if bad_value is not None:
                k = bad_value
                bad.append(
                    (int(lines[k]), len(codes), f"expected a {self._what[key]}, got {tokens[-1][k]!r}")
                )
            checked.append((key, [*codes, values, seq, lines]))
        if bad:
            line, _, message = min(bad)
            raise DataFormatError(f"{self.source}: line {line}: {message}")
        for key, columns in checked:
            batch = self._batches[key]
            batch.runs.append(columns)
            batch.n += len(columns[-1])
            if batch.n >= _BATCH:
                self._flush(key)

    def flush(self) -> None:
        """Expand and log the entries waiting in the batches."""
        for key in self._batches:
            self._flush(key)

    def _flush(self, key: str) -> None:
        batch = self._batches[key]
        if not batch.n:
            return
        n_codes = len(self._columns[key])
        parts = batch.runs
        if batch.singles:  # one float array: codes, sequence and line numbers are exact in float64
            table = np.array(batch.singles, dtype=np.float64)
            parts.append(
                [table[:, j].astype(np.int64) if j != n_codes else table[:, j] for j in range(n_codes + 3)]
            )
        columns = [np.concatenate(col) for col in zip(*parts, strict=True)]
        self._batches[key] = _Batch()
        self._entries(key, columns[:n_codes], *columns[n_codes:])

    def _entries(
        self, key: str, codes: list[np.ndarray], values: np.ndarray, seq: np.ndarray, lines: np.ndarray
    ) -> None:
        """Log ``key: a : s : c value`` (``R: a : s : s' : o value``) entries; a code ``-1`` stands for ``*``.

        ``T: * : * : * 0.0`` (a 0 over whole rows) resets the rows instead of logging zeros. In rewards, ``*``
        for both ``s'`` and ``o`` sets ``R(a, s)`` itself, and ``*`` for ``o`` alone stays one entry.
        """
        S = self.S
        sizes = [self.spaces[k].n for k in self._columns[key]]
        wild = [c < 0 for c in codes]
        if key == "R":
            wild[2] &= ~wild[3]  # "R: a : s : * : *" is R(a, s); "* : o" stands for every s'
            wild[3] = np.zeros(len(values), bool)  # "any o" stays one entry (weighted by the sum over o)
            self._reserve(self._charge_rewards, wild, sizes, lines, _REWARD_BYTES)
            for (a, s, sp, o), src in _expand(codes, wild, sizes):
                self._log_reward(a * S + s, sp, o, values[src], seq[src])
            return
        log = self.logs[key]
        reset = (values == 0.0) & (wild[2] | (log.n_cols == 1))
        if reset.any():
            rows = [(a * S + s, src) for (a, s), src in _expand(codes[:2], wild[:2], sizes[:2], reset)]
            for r, src in rows:
                log.clear(r, seq[src])
            keep = ~reset
            codes, values, seq, lines = [c[keep] for c in codes], values[keep], seq[keep], lines[keep]
            wild = [w[keep] for w in wild]
        self._reserve(log.reserve, wild, sizes, lines)
        for (a, s, c), src in _expand(codes, wild, sizes):
            log.add(a * S + s, c, values[src], seq[src])

    def _reserve(
        self,
        reserve: Callable[[float, str], None],
        wild: list[np.ndarray],
        sizes: list[int],
        lines: np.ndarray,
        entry_bytes: int = ENTRY_BYTES,
    ) -> None:
        """Charge ``reserve(n, where)`` for the entries :func:`_expand` will make, at once when they fit, else up
        to the first statement that does not (so that the refusal names its line)."""
        if not len(lines):
            return
        counts = np.ones(len(lines))
        for w, n in zip(wild, sizes, strict=True):
            counts[w] *= n
        total = float(counts.sum())
        if self.budget.used + entry_bytes * total > self.budget.limit:
            k = int(np.argmax(self.budget.used + entry_bytes * np.cumsum(counts) > self.budget.limit))
            reserve(float(counts[:k].sum()), f"lines {lines[0]}-{lines[k]}")
            reserve(float(counts[k]), f"line {lines[k]}")  # raises
        reserve(total, f"line {lines[0]}" + (" ff." if len(lines) > 1 else ""))

    def rows(self, key: str, a: np.ndarray, s: np.ndarray, values: np.ndarray, seq: int, line: int) -> None:
        """Whole rows ``key: a : s`` set to ``values`` (everything else in them becomes 0)."""
        log = self.logs[key]
        rows = (a[:, None] * self.S + s[None, :]).ravel()
        nz = np.flatnonzero(values)
        log.reserve(len(rows) * len(nz), f"line {line}")
        log.clear(rows, seq)
        log.add(np.repeat(rows, len(nz)), np.tile(nz, len(rows)), np.tile(values[nz], len(rows)), seq)

    def identity(self, key: str, a: np.ndarray, seq: int, line: int) -> None:
        log, S = self.logs[key], self.S
        rows = (a[:, None] * S + np.arange(S)[None, :]).ravel()
        log.reserve(len(rows), f"line {line}")
        log.clear(rows, seq)
        log.add(rows, np.tile(np.arange(S), len(a)), 1.0, seq)

    def matrix(self, key: str, a: np.ndarray, block: np.ndarray, seq: int, line: int) -> None:
        log, S = self.logs[key], self.S
        r, c = np.nonzero(block)
        log.reserve(len(a) * len(r), f"line {line}")
        log.clear((a[:, None] * S + np.arange(S)[None, :]).ravel(), seq)
        log.add((a[:, None] * S + r[None, :]).ravel(), np.tile(c, len(a)), np.tile(block[r, c], len(a)), seq)

    def reward_row(
        self, a: np.ndarray, s: np.ndarray, sp: np.ndarray, values: np.ndarray, seq: int, line: int
    ) -> None:
        rows = (a[:, None] * self.S + s[None, :]).ravel()
        Z = self.Z
        self._charge_rewards(len(rows) * len(sp) * Z, f"line {line}")
        grid = np.stack(np.meshgrid(rows, sp, np.arange(Z), indexing="ij"), axis=-1).reshape(-1, 3)
        self._log_reward(grid[:, 0], grid[:, 1], grid[:, 2], values[grid[:, 2]], seq)

    def reward_matrix(self, a: np.ndarray, s: np.ndarray, block: np.ndarray, seq: int, line: int) -> None:
        rows = (a[:, None] * self.S + s[None, :]).ravel()
        S, Z = self.S, self.Z
        self._charge_rewards(len(rows) * S * Z, f"line {line}")
        grid = np.stack(np.meshgrid(rows, np.arange(S), np.arange(Z), indexing="ij"), axis=-1).reshape(-1, 3)
        self._log_reward(grid[:, 0], grid[:, 1], grid[:, 2], block[grid[:, 1], grid[:, 2]], seq)

    def _charge_rewards(self, n: float, where: str) -> None:
        self.budget.charge(_REWARD_BYTES * float(n), f"{where} ({n:,.0f} reward entries)")

    def _log_reward(self, rows, sp, o, value, seq) -> None:
        n = len(rows)
        for store, x, dt in zip(
            self._r,
            (rows, sp, o, value, seq),
            (np.int64, np.int64, np.int64, np.float64, np.int64),
            strict=True,
        ):
            store.append(np.broadcast_to(np.asarray(x, dtype=dt), (n,)).copy())

    # -- the model -------------------------------------------------------------------------------------------
    def finish(
        self, notes: list[str]
    ) -> tuple[tuple[sp.csr_matrix, ...], tuple[sp.csr_matrix, ...], np.ndarray]:
        """Per-action ``T`` and ``O`` (rows checked, printed roundings renormalised) and ``R[s, a]``."""
        self.flush()
        stacked = {}
        for key in ("T", "O"):
            m = self.logs[key].matrix()
            m, n_off, dev = check_rows(m, ROW_SUM_TOLERANCE, functools.partial(self._bad_row, key))
            if n_off:
                notes.append(f"{n_off} {key} rows renormalised (max deviation {dev:.2g})")
            stacked[key] = m
        R = self._rewards(stacked["T"], stacked["O"])
        return split_actions(stacked["T"], self.A), split_actions(stacked["O"], self.A), R

    def _bad_row(self, key: str, row: int, total: float, n_bad: int) -> str:
        a, s = divmod(row, self.S)
        acts, states = self.spaces["actions"], self.spaces["states"]
        an = acts.names[a] if acts.names else str(a)
        sn = states.names[s] if states.names else str(s)
        role = "start state" if key == "T" else "end state"
        return (
            f"{self.source}: {key} for action {an!r}, {role} {sn!r} sums to {total:.6g} "
            f"(probabilities must be >= 0 and sum to 1; {n_bad} such rows)"
        )

    def _rewards(self, T: sp.csr_matrix, O: sp.csr_matrix) -> np.ndarray:
        """``R[s, a] = Σ_{s', o} T O r`` with the last assignment of each (a, s, s', o) winning."""
        S, A = self.S, self.A
        cat = [np.concatenate(x) if x else np.zeros(0) for x in self._r]
        self._r = [[], [], [], [], []]
        rows, spp, oo, val, seq = (cat[i].astype(np.int64) if i != 3 else cat[i] for i in range(5))
        self.budget.charge(16.0 * A * S, "the rewards")
        base, base_seq = np.zeros(A * S), np.full(A * S, -1, dtype=np.int64)
        is_base = spp < 0
        sel = np.flatnonzero(is_base)[last_wins([rows[is_base]], seq[is_base])]
        base[rows[sel]], base_seq[rows[sel]] = val[sel], seq[sel]
        det = ~is_base
        det[det] = seq[det] > base_seq[rows[det]]  # a later R(a, s) assignment voids earlier details
        out = base.copy()
        any_o = np.flatnonzero(det & (oo < 0))
        any_o = any_o[last_wins([rows[any_o], spp[any_o]], seq[any_o])]  # sorted by (row, s')
        r_a, s_a = rows[any_o], spp[any_o]
        out += np.bincount(r_a, csr_lookup(T, r_a, s_a) * (val[any_o] - base[r_a]), minlength=A * S)
        spec = np.flatnonzero(det & (oo >= 0))
        spec = spec[last_wins([rows[spec], spp[spec], oo[spec]], seq[spec])]
        r_s, s_s = rows[spec], spp[spec]
        ref = base[r_s]
        if len(any_o) and len(spec):
            akey, skey = r_a * S + s_a, r_s * S + s_s
            pos = np.minimum(np.searchsorted(akey, skey), len(akey) - 1)
            has = akey[pos] == skey
            later = has & (seq[any_o][pos] > seq[spec])  # a later "any o" entry overrides this one
            spec, r_s, s_s, pos, has = spec[~later], r_s[~later], s_s[~later], pos[~later], has[~later]
            ref = np.where(has, val[any_o][pos], base[r_s])
        weight = csr_lookup(T, r_s, s_s) * csr_lookup(O, (r_s // S) * S + s_s, oo[spec])
        out += np.bincount(r_s, weight * (val[spec] - ref), minlength=A * S)
        return np.ascontiguousarray(out.reshape(A, S).T)


def _floats(toks: Sequence[str]) -> tuple[np.ndarray, int | None]:
    """``float`` of each token, and the position of the first that is not a number (``None`` if all are)."""
    table, bad = {}, set()
    for tok in set(toks):  # files repeat a few values ("1.000000"): convert each once
        try:
            table[tok] = float(tok)
        except ValueError:
            bad.add(tok)
    if bad:
        return np.zeros(0), next(k for k, tok in enumerate(toks) if tok in bad)
    return np.fromiter(map(table.__getitem__, toks), np.float64, len(toks)), None


def _expand(
    codes: list[np.ndarray], wild: list[np.ndarray], sizes: list[int], select: np.ndarray | None = None
) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
    """The entries that entries with wildcards stand for, one group of entries with the same wildcards at a time.

    Axis ``j`` of entry ``i`` runs over ``range(sizes[j])`` where ``wild[j][i]``, else it is ``codes[j][i]``.
    Yields the codes of the entries made and, for each, the position of the entry it came from (``select``:
    only the entries where it is true).
    """
    pattern = np.zeros(len(codes[0]), np.int64)
    for j, w in enumerate(wild):
        pattern |= w.astype(np.int64) << j
    chosen = np.arange(len(pattern)) if select is None else np.flatnonzero(select)
    for p in np.unique(pattern[chosen]).tolist():
        src = chosen[pattern[chosen] == p]
        axes = [j for j in range(len(codes)) if p >> j & 1]
        shape = (len(src), *(sizes[j] for j in axes))
        grid = np.indices(shape[1:], sparse=True) if axes else ()
        out = [
            np.broadcast_to(grid[axes.index(j)][None], shape).ravel()
            if j in axes
            else np.broadcast_to(c[src].reshape((-1,) + (1,) * len(axes)), shape).ravel()
            for j, c in enumerate(codes)
        ]
        yield out, np.broadcast_to(src.reshape((-1,) + (1,) * len(axes)), shape).ravel()
