"""Read and write Cassandra ``.pomdp`` files (pomdp.org, pomdp-solve, APPL ``pomdpsol``, SARSOP.jl).

The reader covers the whole syntax of the classic files: ``discount``, ``values: reward|cost``, ``states`` /
``actions`` / ``observations`` as counts or name lists, ``start:`` as a vector, ``uniform``, a single state,
``start include:`` and ``start exclude:``; ``T:``, ``O:`` and ``R:`` entries in per-entry, per-row and
full-matrix forms, ``identity`` and ``uniform`` matrices, ``*`` wildcards in any index position, rewards with
four indices ``R: a : s : s' : o`` and ``#`` comments. Later entries override earlier ones; anything not given
is 0.

Rewards are folded into their expectation ``R[s, a] = Σ_{s', o} T[a, s, s'] O[a, s', o] r(a, s, s', o)``
(as SARSOP does); with ``values: cost`` the costs are negated, so the returned model always *maximises* reward.

The writer emits a sparse file (one line per nonzero entry; dense observation rows in per-row form) with
0-based indices in the entries, exact shortest-repr floats in positional notation, and an explicit ``start:``
vector, which APPL ``pomdpsol`` (both parsers) and SARSOP.jl read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.formats._common import ROW_SUM_TOLERANCE, format_float, read_model_text, valid_names
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["ROW_SUM_TOLERANCE", "format_float", "parse_cassandra", "read_cassandra", "write_cassandra"]

_KEYWORDS = {"discount", "values", "states", "actions", "observations", "start", "T", "O", "R"}
_RESERVED = _KEYWORDS | {"identity", "uniform", "reward", "cost", "include", "exclude"}


class _Tokens:
    """Whitespace/colon tokens of a ``.pomdp`` text with their 1-based line numbers."""

    def __init__(self, text: str, source: str):
        self.source = source
        toks: list[str] = []
        lines: list[int] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            line = line.split("#", 1)[0]
            for tok in line.replace(":", " : ").split():
                toks.append(tok)
                lines.append(lineno)
        self.toks, self.lines, self.pos = toks, lines, 0

    def error(self, expected: str, pos: int | None = None) -> DataFormatError:
        pos = self.pos if pos is None else pos
        if pos < len(self.toks):
            where, got = f"line {self.lines[pos]}", repr(self.toks[pos])
        else:
            where, got = f"line {self.lines[-1] if self.lines else 1}", "end of file"
        return DataFormatError(f"{self.source}: {where}: expected {expected}, got {got}")

    def at_end(self) -> bool:
        return self.pos >= len(self.toks)

    def peek(self, k: int = 0) -> str | None:
        i = self.pos + k
        return self.toks[i] if i < len(self.toks) else None

    def next(self, expected: str) -> str:
        if self.at_end():
            raise self.error(expected)
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def expect(self, literal: str) -> None:
        if self.peek() != literal:
            raise self.error(repr(literal))
        self.pos += 1

    def statement_start(self, k: int = 0) -> bool:
        """Whether the token at offset ``k`` begins a statement (``key :`` or ``start include|exclude :``)."""
        tok = self.peek(k)
        if tok not in _KEYWORDS:
            return False
        if self.peek(k + 1) == ":":
            return True
        return tok == "start" and self.peek(k + 1) in ("include", "exclude") and self.peek(k + 2) == ":"

    def number(self, expected: str = "a number") -> float:
        pos = self.pos
        tok = self.next(expected)
        try:
            return float(tok)
        except ValueError:
            raise self.error(expected, pos) from None

    def numbers(self, n: int, what: str) -> np.ndarray:
        out = np.empty(n)
        for i in range(n):
            out[i] = self.number(f"{what} (number {i + 1} of {n})")
        return out

    def until_statement(self) -> list[tuple[str, int]]:
        out = []
        while not self.at_end() and not self.statement_start():
            out.append((self.toks[self.pos], self.pos))
            self.pos += 1
        return out


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


class _Space:
    """A named or counted set (states, actions, observations) and its index lookup."""

    def __init__(self, kind: str, names: list[str] | None, n: int):
        self.kind, self.names, self.n = kind, names, n
        self.index = {name: i for i, name in enumerate(names)} if names else {}

    def resolve(self, tokens: _Tokens, pos: int) -> np.ndarray:
        """Indices denoted by the token at ``pos``: ``*`` → all, an integer → itself, a name → its index."""
        tok = tokens.toks[pos]
        if tok == "*":
            return np.arange(self.n)
        if tok in self.index:
            return np.array([self.index[tok]])
        if tok.isdigit():
            i = int(tok)
            if i < self.n:
                return np.array([i])
        expected = f"a {self.kind[:-1]} (0..{self.n - 1}" + (", a name" if self.names else "") + " or '*')"
        raise tokens.error(expected, pos)


@dataclass
class _Start:
    """The ``start`` statement: ``kind`` is uniform, vector, state, include or exclude; ``line`` for messages."""

    kind: str
    arg: Any
    line: int


@dataclass
class _Parser:
    """The state of one parse: what the preamble declared and the entries read so far."""

    tk: _Tokens
    discount: float | None = None
    values: str = "reward"
    spaces: dict[str, _Space] = field(default_factory=dict)
    start: _Start | None = None
    T: Any = None
    O: Any = None
    r_base: Any = None  # R[a, s] from entries whose s' and o are both '*'
    r_full: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (a, s) -> r(s', o)

    def run(self) -> TabularPOMDP:
        tk = self.tk
        while not tk.at_end():
            if not tk.statement_start():
                raise tk.error(
                    "a statement (discount:, values:, states:, actions:, observations:, start:, T:, O:, R:)"
                )
            key = tk.next("a keyword")
            if key == "start" and tk.peek() in ("include", "exclude"):
                self._start_subset()
                continue
            tk.expect(":")
            if key == "discount":
                self._discount()
            elif key == "values":
                self._values()
            elif key in ("states", "actions", "observations"):
                self._space(key)
            elif key == "start":
                self._start()
            elif key in ("T", "O"):
                self._alloc()
                self._probabilities(
                    self.T if key == "T" else self.O, "states" if key == "T" else "observations"
                )
            elif key == "R":
                self._alloc()
                self._reward()
            else:  # pragma: no cover - statement_start only admits keywords
                raise tk.error("a keyword")
        return self._model()

    # -- helpers -------------------------------------------------------------------------------------------
    def _need(self, *kinds: str) -> None:
        missing = [k for k in kinds if k not in self.spaces]
        if missing:
            raise self.tk.error(f"the preamble to declare {', '.join(missing)} before this statement")

    def _alloc(self) -> None:
        if self.T is None:
            self._need("states", "actions", "observations")
            S, A, Z = (self.spaces[k].n for k in ("states", "actions", "observations"))
            self.T = np.zeros((A, S, S))
            self.O = np.zeros((A, S, Z))
            self.r_base = np.zeros((A, S))

    def _index(self, kind: str) -> np.ndarray:
        pos = self.tk.pos
        self.tk.next(f"a {kind[:-1]}")
        return self.spaces[kind].resolve(self.tk, pos)

    # -- the preamble ----------------------------------------------------------------------------------------
    def _discount(self) -> None:
        self.discount = self.tk.number("the discount factor")
        if not 0.0 < self.discount <= 1.0:
            raise self.tk.error("a discount in (0, 1]", self.tk.pos - 1)

    def _values(self) -> None:
        pos = self.tk.pos
        self.values = self.tk.next("'reward' or 'cost'")
        if self.values not in ("reward", "cost"):
            raise self.tk.error("'reward' or 'cost'", pos)

    def _space(self, key: str) -> None:
        """``states:`` / ``actions:`` / ``observations:`` with a count or a list of names."""
        tk = self.tk
        if self.T is not None:
            raise tk.error(f"'{key}:' before the first T:/O:/R: entry", tk.pos - 2)
        items = tk.until_statement()
        if not items:
            raise tk.error(f"a count or a list of {key} names")
        if len(items) == 1 and items[0][0].isdigit():
            n = int(items[0][0])
            if n < 1:
                raise tk.error(f"a positive number of {key}", items[0][1])
            self.spaces[key] = _Space(key, None, n)
            return
        names = [t for t, _ in items]
        for t, p in items:
            if t[0].isdigit() or t in ("*", ":"):
                raise tk.error(f"a {key[:-1]} name (names cannot start with a digit)", p)
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise tk.error(f"distinct {key} names ({dup!r} appears twice)", items[0][1])
        self.spaces[key] = _Space(key, names, len(names))

    def _start_subset(self) -> None:
        """``start include: ...`` / ``start exclude: ...`` (the keyword ``start`` already read)."""
        tk = self.tk
        mode = tk.next("include/exclude")
        tk.expect(":")
        self._need("states")
        items = tk.until_statement()
        if not items:
            raise tk.error(f"state names or indices after 'start {mode}:'")
        idx = np.unique(np.concatenate([self.spaces["states"].resolve(tk, p) for _, p in items]))
        self.start = _Start(mode, idx, tk.lines[items[0][1]])

    def _start(self) -> None:
        """``start:`` with a distribution, ``uniform`` or one state."""
        tk = self.tk
        self._need("states")
        states = self.spaces["states"]
        S = states.n
        items = tk.until_statement()
        if not items:
            raise tk.error("a start distribution, 'uniform' or a state")
        line = tk.lines[items[0][1]]
        if len(items) == 1 and items[0][0] == "uniform":
            self.start = _Start("uniform", None, line)
        elif (
            len(items) == S
            and all(_is_number(t) for t, _ in items)
            and not (S == 1 and items[0][0] in states.index)
        ):
            self.start = _Start("vector", np.array([float(t) for t, _ in items]), line)
        elif len(items) == 1:
            self.start = _Start("state", states.resolve(tk, items[0][1]), line)
        else:
            raise tk.error(
                f"{S} start probabilities, 'uniform' or one state (found {len(items)} tokens)", items[0][1]
            )

    # -- entries ---------------------------------------------------------------------------------------------
    def _probabilities(self, arr: np.ndarray, columns: str) -> None:
        """``T: a [: s [: s']]`` or ``O: a [: s' [: o]]`` with numbers, ``uniform`` or ``identity``."""
        tk = self.tk
        what = "transition" if columns == "states" else "observation"
        S, C = self.spaces["states"].n, self.spaces[columns].n
        a = self._index("actions")
        if tk.peek() == ":":
            tk.pos += 1
            s = self._index("states")
            if tk.peek() == ":":
                tk.pos += 1
                c = self._index(columns)
                arr[np.ix_(a, s, c)] = tk.number(f"a {what} probability")
            elif tk.peek() == "uniform":
                tk.pos += 1
                arr[np.ix_(a, s)] = 1.0 / C
            else:
                arr[np.ix_(a, s)] = tk.numbers(C, f"a row of {C} {what} probabilities or 'uniform'")
        elif tk.peek() == "uniform":
            tk.pos += 1
            arr[a] = 1.0 / C
        elif tk.peek() == "identity":
            if S != C:
                raise tk.error(f"'uniform' or {S}x{C} numbers ('identity' needs as many {columns} as states)")
            tk.pos += 1
            arr[a] = np.eye(S)
        else:
            arr[a] = tk.numbers(S * C, f"a {S}x{C} {what} matrix, 'identity' or 'uniform'").reshape(S, C)

    def _reward(self) -> None:
        """``R: a : s [: s' [: o]]`` followed by a value, a row of values or a matrix."""
        tk = self.tk
        S, Z = self.spaces["states"].n, self.spaces["observations"].n
        a = self._index("actions")
        tk.expect(":")
        s = self._index("states")
        if tk.peek() != ":":
            block = tk.numbers(S * Z, f"a {S}x{Z} reward matrix").reshape(S, Z)
            self._set_rewards(a, s, np.arange(S), np.arange(Z), block)
            return
        tk.pos += 1
        sp_pos = tk.pos
        sp = self._index("states")
        if tk.peek() != ":":
            block = tk.numbers(Z, f"a row of {Z} rewards")[None, :]
            self._set_rewards(a, s, sp, np.arange(Z), block)
            return
        tk.pos += 1
        o_pos = tk.pos
        o = self._index("observations")
        value = tk.number("a reward value")
        if tk.toks[sp_pos] == "*" and tk.toks[o_pos] == "*":  # R(a, s) itself: drops earlier (s', o) entries
            self.r_base[np.ix_(a, s)] = value
            for key in [(int(i), int(j)) for i in a for j in s]:
                self.r_full.pop(key, None)
            return
        self._set_rewards(a, s, sp, o, np.full((len(sp), len(o)), value))

    def _set_rewards(
        self, a: np.ndarray, s: np.ndarray, sp: np.ndarray, o: np.ndarray, block: np.ndarray
    ) -> None:
        S, Z = self.spaces["states"].n, self.spaces["observations"].n
        for i in a:
            for j in s:
                m = self.r_full.get((int(i), int(j)))
                if m is None:
                    m = self.r_full[(int(i), int(j))] = np.full((S, Z), self.r_base[i, j])
                m[np.ix_(sp, o)] = block

    # -- the model -------------------------------------------------------------------------------------------
    def _model(self) -> TabularPOMDP:
        source = self.tk.source
        if self.discount is None:
            raise DataFormatError(f"{source}: missing 'discount:' line")
        for key in ("states", "actions", "observations"):
            if key not in self.spaces:
                raise DataFormatError(f"{source}: missing '{key}:' line")
        self._alloc()
        notes: list[str] = []
        T = _normalise(self.T, "T", source, self.spaces, notes)
        O = _normalise(self.O, "O", source, self.spaces, notes)
        R = self.r_base.T.copy()
        for (i, j), m in self.r_full.items():
            R[j, i] = T[i, j] @ (O[i] * m).sum(axis=1)
        if self.values == "cost":
            R = -R
        b0 = self._initial_belief(notes)
        names = {k: (list(sp.names) if sp.names else None) for k, sp in self.spaces.items()}
        return TabularPOMDP(
            T=T,
            O=O,
            R=R,
            b0=np.asarray(b0, float),
            discount=float(self.discount),
            state_names=names["states"],
            action_names=names["actions"],
            observation_names=names["observations"],
            meta={"source": source, "format": "cassandra", "values": self.values, "notes": notes},
        )

    def _initial_belief(self, notes: list[str]) -> np.ndarray:
        source, S = self.tk.source, self.spaces["states"].n
        if self.start is None:
            notes.append("no start: line, uniform initial belief")
            return np.full(S, 1.0 / S)
        kind, arg, line = self.start.kind, self.start.arg, self.start.line
        if kind == "uniform":
            return np.full(S, 1.0 / S)
        if kind == "vector":
            b0 = arg
            if np.any(b0 < 0) or abs(b0.sum() - 1.0) > ROW_SUM_TOLERANCE:
                raise DataFormatError(
                    f"{source}: line {line}: start probabilities must be >= 0 and sum to 1 "
                    f"(they sum to {b0.sum():.6g})"
                )
            return b0 / b0.sum() if abs(b0.sum() - 1.0) > 1e-12 else b0
        mask = np.zeros(S, bool)
        mask[arg] = True
        if kind == "exclude":
            mask = ~mask
        if not mask.any():
            raise DataFormatError(f"{source}: line {line}: 'start exclude:' excludes every state")
        return mask / mask.sum()


def parse_cassandra(text: str, source: str = "<string>") -> TabularPOMDP:
    """Parse the text of a ``.pomdp`` file into a :class:`~trim_pomdp.solvers.tabular.TabularPOMDP`.

    Parameters
    ----------
    text : str
        The file's content.
    source : str, default "<string>"
        Its name, for messages.

    Raises
    ------
    DataFormatError
        Naming the file, the line and what was expected there.
    """
    return _Parser(_Tokens(text, source)).run()


def _normalise(
    P: np.ndarray, what: str, source: str, spaces: dict[str, _Space], notes: list[str]
) -> np.ndarray:
    sums = P.sum(axis=2)
    bad = np.argwhere((np.abs(sums - 1.0) > ROW_SUM_TOLERANCE) | np.any(P < 0, axis=2))
    if bad.size:
        a, s = (int(i) for i in bad[0])
        an = spaces["actions"].names[a] if spaces["actions"].names else str(a)
        sn = spaces["states"].names[s] if spaces["states"].names else str(s)
        role = "start state" if what == "T" else "end state"
        raise DataFormatError(
            f"{source}: {what} for action {an!r}, {role} {sn!r} sums to {sums[a, s]:.6g} "
            f"(probabilities must be >= 0 and sum to 1; {len(bad)} such rows)"
        )
    off = np.abs(sums - 1.0) > 1e-12
    if off.any():
        notes.append(
            f"{int(off.sum())} {what} rows renormalised (max deviation {np.abs(sums - 1).max():.2g})"
        )
        P = P.copy()
        P[off] /= sums[off][:, None]  # rows within 1e-12 of 1 are kept bit-exact
    return P


def read_cassandra(path: str | Path) -> TabularPOMDP:
    """Read a Cassandra ``.pomdp`` file. See :func:`parse_cassandra`."""
    return parse_cassandra(*read_model_text(path))


def write_cassandra(model: TabularPOMDP, path: str | Path, *, dense_row_fraction: float = 0.5) -> Path:
    """Write ``model`` as a sparse Cassandra ``.pomdp`` file readable by APPL ``pomdpsol`` and SARSOP.jl.

    Parameters
    ----------
    model : TabularPOMDP
        The model; its names are written when they are valid and not keywords of the format, else counts.
    path : str or Path
        The file to write (its folder is created).
    dense_row_fraction : float
        Observation rows with more than this fraction of nonzeros are written in per-row form
        (``O: a : s'`` followed by all ``|O|`` numbers) instead of one line per entry.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    S, A, Z = model.n_states, model.n_actions, model.n_observations
    T, O, R = (np.asarray(x, float) for x in (model.T, model.O, model.R))
    ff = format_float
    with path.open("w") as fh:
        w = fh.write
        w("# written by trim-pomdp (sparse Cassandra format; entries use 0-based indices)\n")
        w(f"discount: {ff(model.discount)}\nvalues: reward\n")
        for key, n, names in (
            ("states", S, model.state_names),
            ("actions", A, model.action_names),
            ("observations", Z, model.observation_names),
        ):
            valid = valid_names(names, n, _RESERVED)
            w(f"{key}: {' '.join(valid) if valid else n}\n")
        w("start: " + " ".join(ff(x) for x in np.asarray(model.b0, float)) + "\n\n")
        for a in range(A):
            w("".join(f"T: {a} : {s} : {sp} {ff(T[a, s, sp])}\n" for s, sp in np.argwhere(T[a] != 0)))
        for a in range(A):
            for sp in range(S):
                row = O[a, sp]
                nz_o = np.flatnonzero(row)
                if len(nz_o) > dense_row_fraction * Z and len(nz_o) > 1:
                    w(f"O: {a} : {sp}\n" + " ".join(ff(x) for x in row) + "\n")
                else:
                    w("".join(f"O: {a} : {sp} : {o} {ff(row[o])}\n" for o in nz_o))
        w("".join(f"R: {a} : {s} : * : * {ff(R[s, a])}\n" for s, a in np.argwhere(R != 0)))
    return path
