"""What a ``.pomdp`` file assigns, kept sparse while it is read, and the tabular model built from it at the end.

:class:`CassandraModel` receives the ``T:``, ``O:`` and ``R:`` statements from the parser in
:mod:`~trim_pomdp.solvers.formats.cassandra`, logs their entries in file order (one-line entries are batched
and converted to indices in bulk), and builds per-action CSR matrices and the expected rewards when the file
ends. Everything it logs is charged to the reader's memory budget before it is stored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.formats._common import ROW_SUM_TOLERANCE
from trim_pomdp.solvers.formats._sparse import AssignmentLog, check_rows, csr_lookup, last_wins, split_actions
from trim_pomdp.solvers.memory import MemoryBudget

__all__ = ["CassandraModel", "Space"]

#: One-line entries converted to indices in one batch.
_BATCH = 1 << 16
#: Bytes charged per logged reward entry (row, s', o, value, sequence number).
_REWARD_BYTES = 40


class Space:
    """A named or counted set (states, actions, observations) and its index lookup."""

    def __init__(self, kind: str, names: list[str] | None, n: int):
        self.kind, self.names, self.n = kind, names, n
        self.index = {name: i for i, name in enumerate(names)} if names else {}
        self._all = np.arange(n)
        self._cache: dict[str, int] = {}

    def expected(self) -> str:
        return f"a {self.kind[:-1]} (0..{self.n - 1}" + (", a name" if self.names else "") + " or '*')"

    def resolve(self, tok: str) -> np.ndarray | None:
        """Indices denoted by ``tok``: ``*`` → all, an integer → itself, a name → its index; ``None`` if invalid."""
        i = self.code(tok)
        if i is None:
            return None
        return self._all if i < 0 else np.array([i])

    def code(self, tok: str) -> int | None:
        """The index of ``tok``, ``-1`` for ``*``, ``None`` if it is not one."""
        hit = self._cache.get(tok)
        if hit is not None:
            return hit
        if tok == "*":
            i = -1
        elif tok in self.index:
            i = self.index[tok]
        elif tok.isdigit() and int(tok) < self.n:
            i = int(tok)
        else:
            return None
        if len(self._cache) < 1 << 20:
            self._cache[tok] = i
        return i


@dataclass
class _Pending:
    """One-line entries of one kind not yet converted: index tokens, value tokens, line and sequence numbers."""

    cols: list[list[str]]
    vals: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)


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
        self._pending = {k: _Pending([[] for _ in range(4 if k == "R" else 3)]) for k in "TOR"}
        self._kinds = {
            "T": ("actions", "states", "states"),
            "O": ("actions", "states", "observations"),
            "R": ("actions", "states", "states", "observations"),
        }
        self._what = {"T": "transition probability", "O": "observation probability", "R": "reward value"}

    # -- one-line entries (the fast path) --------------------------------------------------------------------
    def pending(self, kind: str, groups: tuple, line: int, seq: int) -> None:
        p = self._pending[kind]
        for col, tok in zip(p.cols, groups[:-1], strict=True):
            col.append(tok)
        p.vals.append(groups[-1])
        p.lines.append(line)
        p.seq.append(seq)
        if len(p.vals) >= _BATCH:
            self._flush(kind)

    def flush(self) -> None:
        for kind in "TOR":
            self._flush(kind)

    def _flush(self, kind: str) -> None:
        p = self._pending[kind]
        if not p.vals:
            return
        lines = p.lines
        codes = []
        for col, space_key in zip(p.cols, self._kinds[kind], strict=True):
            space = self.spaces[space_key]
            code = space.code
            out = [code(t) for t in col]
            if None in out:
                k = out.index(None)
                raise DataFormatError(
                    f"{self.source}: line {lines[k]}: expected {space.expected()}, got {col[k]!r}"
                )
            codes.append(np.array(out, dtype=np.int64))
        try:
            vals = np.array(p.vals, dtype=np.float64)
        except ValueError:
            k = next(i for i, t in enumerate(p.vals) if not _is_float(t))
            raise DataFormatError(
                f"{self.source}: line {lines[k]}: expected a {self._what[kind]}, got {p.vals[k]!r}"
            ) from None
        seq = np.array(p.seq, dtype=np.int64)
        self._pending[kind] = _Pending([[] for _ in p.cols])
        star = np.zeros(len(vals), bool)
        for c in codes:
            star |= c < 0
        plain = ~star
        S = self.S
        if kind == "R":
            self._charge_rewards(int(plain.sum()), lines[0])
            self._log_reward(
                codes[0][plain] * S + codes[1][plain],
                codes[2][plain],
                codes[3][plain],
                vals[plain],
                seq[plain],
            )
        else:
            log = self.logs[kind]
            log.reserve(int(plain.sum()), f"line {lines[0]} ff.")
            log.add(codes[0][plain] * S + codes[1][plain], codes[2][plain], vals[plain], seq[plain])
        for k in (
            int(i) for i in np.flatnonzero(star)
        ):  # wildcards: one entry at a time (rare in large files)
            a_k, s_k = self._all(kind, 0, codes[0][k]), self._all(kind, 1, codes[1][k])
            if kind == "R":
                sp_k = None if codes[2][k] < 0 else np.array([codes[2][k]])
                o_k = None if codes[3][k] < 0 else np.array([codes[3][k]])
                self.reward(a_k, s_k, sp_k, o_k, float(vals[k]), int(seq[k]), lines[k])
            else:
                self.block(
                    kind, a_k, s_k, self._all(kind, 2, codes[2][k]), float(vals[k]), int(seq[k]), lines[k]
                )

    def _all(self, kind: str, j: int, code: int) -> np.ndarray:
        n = self.spaces[self._kinds[kind][j]].n
        return np.arange(n) if code < 0 else np.array([code])

    # -- statements ------------------------------------------------------------------------------------------
    def block(
        self, key: str, a: np.ndarray, s: np.ndarray, c: np.ndarray, value: float, seq: int, line: int
    ) -> None:
        """``key: a : s : c value`` with any of them wildcards."""
        log = self.logs[key]
        rows = (a[:, None] * self.S + s[None, :]).ravel()
        if value == 0.0 and len(c) == log.n_cols:  # "T: * : * : * 0.0" resets whole rows: log no zeros
            log.clear(rows, seq)
            return
        log.reserve(len(a) * len(s) * len(c), f"line {line}")
        log.add(np.repeat(rows, len(c)), np.tile(c, len(rows)), value, seq)

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

    def reward(
        self,
        a: np.ndarray,
        s: np.ndarray,
        sp: np.ndarray | None,
        o: np.ndarray | None,
        value: float,
        seq: int,
        line: int,
    ) -> None:
        """``R: a : s : s' : o value``; ``None`` stands for ``*`` (both ``None``: ``R(a, s)`` itself)."""
        rows = (a[:, None] * self.S + s[None, :]).ravel()
        if sp is None and o is None:
            self._charge_rewards(len(rows), line)
            self._log_reward(rows, np.full(len(rows), -1), np.full(len(rows), -1), value, seq)
            return
        sp = np.arange(self.S) if sp is None else sp
        oo = np.array([-1]) if o is None else o
        self._charge_rewards(len(rows) * len(sp) * len(oo), line)
        grid = np.stack(np.meshgrid(rows, sp, oo, indexing="ij"), axis=-1).reshape(-1, 3)
        self._log_reward(grid[:, 0], grid[:, 1], grid[:, 2], value, seq)

    def reward_row(
        self, a: np.ndarray, s: np.ndarray, sp: np.ndarray, values: np.ndarray, seq: int, line: int
    ) -> None:
        rows = (a[:, None] * self.S + s[None, :]).ravel()
        Z = self.Z
        self._charge_rewards(len(rows) * len(sp) * Z, line)
        grid = np.stack(np.meshgrid(rows, sp, np.arange(Z), indexing="ij"), axis=-1).reshape(-1, 3)
        self._log_reward(grid[:, 0], grid[:, 1], grid[:, 2], values[grid[:, 2]], seq)

    def reward_matrix(self, a: np.ndarray, s: np.ndarray, block: np.ndarray, seq: int, line: int) -> None:
        rows = (a[:, None] * self.S + s[None, :]).ravel()
        S, Z = self.S, self.Z
        self._charge_rewards(len(rows) * S * Z, line)
        grid = np.stack(np.meshgrid(rows, np.arange(S), np.arange(Z), indexing="ij"), axis=-1).reshape(-1, 3)
        self._log_reward(grid[:, 0], grid[:, 1], grid[:, 2], block[grid[:, 1], grid[:, 2]], seq)

    def _charge_rewards(self, n: int, line: int) -> None:
        self.budget.charge(_REWARD_BYTES * float(n), f"line {line} ({n:,} reward entries)")

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


def _is_float(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True
