"""Read and write Cassandra ``.pomdp`` files (pomdp.org, pomdp-solve, APPL ``pomdpsol``, SARSOP.jl).

The reader covers the whole syntax of the classic files: ``discount``, ``values: reward|cost``, ``states`` /
``actions`` / ``observations`` as counts or name lists, ``start:`` as a vector, ``uniform``, a single state,
``start include:`` and ``start exclude:``; ``T:``, ``O:`` and ``R:`` entries in per-entry, per-row and
full-matrix
forms, ``identity`` and ``uniform`` matrices, ``*`` wildcards in any index position, rewards with four indices
``R: a : s : s' : o`` and ``#`` comments. Later entries override earlier ones; anything not given is 0.

Rewards are folded into their expectation ``R[s, a] = Σ_{s', o} T[a, s, s'] O[a, s', o] r(a, s, s', o)``
(as SARSOP does); with ``values: cost`` the costs are negated, so the returned model always *maximises*
reward.

The writer emits a sparse file (one line per nonzero entry; dense observation rows in per-row form) with
0-based indices in the entries, exact shortest-repr floats in positional notation, and an explicit ``start:``
vector, which APPL ``pomdpsol`` (both parsers) and SARSOP.jl read.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["format_float", "parse_cassandra", "read_cassandra", "write_cassandra"]

_KEYWORDS = {"discount", "values", "states", "actions", "observations", "start", "T", "O", "R"}
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
_RESERVED = _KEYWORDS | {"identity", "uniform", "reward", "cost", "include", "exclude"}
#: Rows of T, O and the start vector whose sum is off 1 by at most this much are renormalised (classic files
#: print 0.333333 three times); larger deviations are errors.
ROW_SUM_TOLERANCE = 1e-4


def format_float(x: float) -> str:
    """Shortest exact decimal of ``x`` in positional notation with a digit on both sides of the point."""
    s = np.format_float_positional(float(x), unique=True, trim="0")
    if s.startswith("-."):
        s = "-0" + s[1:]
    elif s.startswith("."):
        s = "0" + s
    return s


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


def parse_cassandra(text: str, source: str = "<string>") -> TabularPOMDP:
    """Parse the text of a ``.pomdp`` file into a :class:`~trim_pomdp.solvers.tabular.TabularPOMDP`.

    Raises
    ------
    DataFormatError
        Naming the file, the line and what was expected there.
    """
    tk = _Tokens(text, source)
    discount: float | None = None
    values = "reward"
    spaces: dict[str, _Space] = {}
    start_spec: tuple | None = None
    T = O = None
    r_base = None
    r_full: dict[tuple[int, int], np.ndarray] = {}

    def need(*kinds: str) -> None:
        missing = [k for k in kinds if k not in spaces]
        if missing:
            raise tk.error(f"the preamble to declare {', '.join(missing)} before this statement")

    def alloc() -> None:
        nonlocal T, O, r_base
        if T is None:
            need("states", "actions", "observations")
            S, A, Z = spaces["states"].n, spaces["actions"].n, spaces["observations"].n
            T = np.zeros((A, S, S))
            O = np.zeros((A, S, Z))
            r_base = np.zeros((A, S))

    def parse_probability_entry(arr: np.ndarray, columns: str) -> None:
        """``T: a [: s [: s']]`` or ``O: a [: s' [: o]]`` with numbers, ``uniform`` or ``identity``."""
        what = "transition" if columns == "states" else "observation"
        S, C = spaces["states"].n, spaces[columns].n
        a = index("actions")
        if tk.peek() == ":":
            tk.pos += 1
            s = index("states")
            if tk.peek() == ":":
                tk.pos += 1
                c = index(columns)
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

    def index(kind: str) -> np.ndarray:
        pos = tk.pos
        tk.next(f"a {kind[:-1]}")
        return spaces[kind].resolve(tk, pos)

    while not tk.at_end():
        if not tk.statement_start():
            raise tk.error(
                "a statement (discount:, values:, states:, actions:, observations:, start:, T:, O:, R:)"
            )
        key = tk.next("a keyword")
        if key == "start" and tk.peek() in ("include", "exclude"):
            mode = tk.next("include/exclude")
            tk.expect(":")
            need("states")
            items = tk.until_statement()
            if not items:
                raise tk.error(f"state names or indices after 'start {mode}:'")
            idx = np.unique(np.concatenate([spaces["states"].resolve(tk, p) for _, p in items]))
            start_spec = (mode, idx, tk.lines[items[0][1]])
            continue
        tk.expect(":")
        if key == "discount":
            discount = tk.number("the discount factor")
            if not 0.0 < discount <= 1.0:
                raise tk.error("a discount in (0, 1]", tk.pos - 1)
        elif key == "values":
            pos = tk.pos
            values = tk.next("'reward' or 'cost'")
            if values not in ("reward", "cost"):
                raise tk.error("'reward' or 'cost'", pos)
        elif key in ("states", "actions", "observations"):
            if T is not None:
                raise tk.error(f"'{key}:' before the first T:/O:/R: entry", tk.pos - 2)
            items = tk.until_statement()
            if not items:
                raise tk.error(f"a count or a list of {key} names")
            if len(items) == 1 and items[0][0].isdigit():
                n = int(items[0][0])
                if n < 1:
                    raise tk.error(f"a positive number of {key}", items[0][1])
                spaces[key] = _Space(key, None, n)
            else:
                names = [t for t, _ in items]
                for t, p in items:
                    if t[0].isdigit() or t in ("*", ":"):
                        raise tk.error(f"a {key[:-1]} name (names cannot start with a digit)", p)
                if len(set(names)) != len(names):
                    dup = next(n for n in names if names.count(n) > 1)
                    raise tk.error(f"distinct {key} names ({dup!r} appears twice)", items[0][1])
                spaces[key] = _Space(key, names, len(names))
        elif key == "start":
            need("states")
            S = spaces["states"].n
            items = tk.until_statement()
            if not items:
                raise tk.error("a start distribution, 'uniform' or a state")
            line = tk.lines[items[0][1]]
            if len(items) == 1 and items[0][0] == "uniform":
                start_spec = ("uniform", None, line)
            elif (
                len(items) == S
                and all(_is_number(t) for t, _ in items)
                and not (S == 1 and items[0][0] in spaces["states"].index)
            ):
                start_spec = ("vector", np.array([float(t) for t, _ in items]), line)
            elif len(items) == 1:
                start_spec = ("state", spaces["states"].resolve(tk, items[0][1]), line)
            else:
                raise tk.error(
                    f"{S} start probabilities, 'uniform' or one state (found {len(items)} tokens)",
                    items[0][1],
                )
        elif key in ("T", "O"):
            alloc()
            parse_probability_entry(T if key == "T" else O, "states" if key == "T" else "observations")
        elif key == "R":
            alloc()
            S, Z = spaces["states"].n, spaces["observations"].n
            a = index("actions")
            tk.expect(":")
            s = index("states")
            sp = o = None
            if tk.peek() == ":":
                tk.pos += 1
                sp_pos = tk.pos
                sp = index("states")
                if tk.peek() == ":":
                    tk.pos += 1
                    o_pos = tk.pos
                    o = index("observations")
                    value = tk.number("a reward value")
                    if tk.toks[sp_pos] == "*" and tk.toks[o_pos] == "*":
                        r_base[np.ix_(a, s)] = value
                        for key_as in [(int(i), int(j)) for i in a for j in s]:
                            r_full.pop(key_as, None)
                        continue
                    block = np.full((len(sp), len(o)), value)
                else:
                    block = tk.numbers(Z, f"a row of {Z} rewards")[None, :]
                    o = np.arange(Z)
            else:
                block = tk.numbers(S * Z, f"a {S}x{Z} reward matrix").reshape(S, Z)
                sp, o = np.arange(S), np.arange(Z)
            for i in a:
                for j in s:
                    m = r_full.get((int(i), int(j)))
                    if m is None:
                        m = r_full[(int(i), int(j))] = np.full((S, Z), r_base[i, j])
                    m[np.ix_(sp, o)] = block
        else:  # pragma: no cover - statement_start only admits keywords
            raise tk.error("a keyword")

    if discount is None:
        raise DataFormatError(f"{source}: missing 'discount:' line")
    for key in ("states", "actions", "observations"):
        if key not in spaces:
            raise DataFormatError(f"{source}: missing '{key}:' line")
    alloc()
    S = spaces["states"].n
    notes: list[str] = []
    T = _normalise(T, "T", source, spaces, notes)
    O = _normalise(O, "O", source, spaces, notes)
    R = r_base.T.copy()
    for (i, j), m in r_full.items():
        R[j, i] = T[i, j] @ (O[i] * m).sum(axis=1)
    if values == "cost":
        R = -R
    if start_spec is None:
        b0 = np.full(S, 1.0 / S)
        notes.append("no start: line, uniform initial belief")
    else:
        kind, arg, line = start_spec
        if kind == "uniform":
            b0 = np.full(S, 1.0 / S)
        elif kind == "vector":
            b0 = arg
            if np.any(b0 < 0) or abs(b0.sum() - 1.0) > ROW_SUM_TOLERANCE:
                raise DataFormatError(
                    f"{source}: line {line}: start probabilities must be >= 0 and sum to 1 "
                    f"(they sum to {b0.sum():.6g})"
                )
            if abs(b0.sum() - 1.0) > 1e-12:
                b0 = b0 / b0.sum()
        else:
            mask = np.zeros(S, bool)
            mask[arg] = True
            if kind == "exclude":
                mask = ~mask
            if not mask.any():
                raise DataFormatError(f"{source}: line {line}: 'start exclude:' excludes every state")
            b0 = mask / mask.sum()
    names = {k: (list(sp.names) if sp.names else None) for k, sp in spaces.items()}
    return TabularPOMDP(
        T=T,
        O=O,
        R=R,
        b0=np.asarray(b0, float),
        discount=float(discount),
        state_names=names["states"],
        action_names=names["actions"],
        observation_names=names["observations"],
        meta={"source": source, "format": "cassandra", "values": values, "notes": notes},
    )


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
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataFormatError(f"cannot read {path}: {exc}") from exc
    return parse_cassandra(text, str(path))


def _valid_names(names, n: int) -> list[str] | None:
    if not names or len(names) != n:
        return None
    names = [str(x) for x in names]
    if len(set(names)) != n or not all(_NAME_RE.match(x) and x not in _RESERVED for x in names):
        return None
    return names


def write_cassandra(model: TabularPOMDP, path: str | Path, *, dense_row_fraction: float = 0.5) -> Path:
    """Write ``model`` as a sparse Cassandra ``.pomdp`` file readable by APPL ``pomdpsol`` and SARSOP.jl.

    Parameters
    ----------
    model : TabularPOMDP
    path : str or Path
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
            valid = _valid_names(names, n)
            w(f"{key}: {' '.join(valid) if valid else n}\n")
        w("start: " + " ".join(ff(x) for x in np.asarray(model.b0, float)) + "\n\n")
        for a in range(A):
            nz = np.argwhere(T[a] != 0)
            w("".join(f"T: {a} : {s} : {sp} {ff(T[a, s, sp])}\n" for s, sp in nz))
        for a in range(A):
            for sp in range(S):
                row = O[a, sp]
                nz = np.flatnonzero(row)
                if len(nz) > dense_row_fraction * Z and len(nz) > 1:
                    w(f"O: {a} : {sp}\n" + " ".join(ff(x) for x in row) + "\n")
                else:
                    w("".join(f"O: {a} : {sp} : {o} {ff(row[o])}\n" for o in nz))
        nz = np.argwhere(R != 0)
        w("".join(f"R: {a} : {s} : * : * {ff(R[s, a])}\n" for s, a in nz))
    return path
