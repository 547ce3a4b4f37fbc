"""Read and write Cassandra ``.pomdp`` files (pomdp.org, pomdp-solve, APPL ``pomdpsol``, SARSOP.jl).

The reader covers the whole syntax of the classic files: ``discount``, ``values: reward|cost``, ``states`` /
``actions`` / ``observations`` as counts or name lists, ``start:`` as a vector, ``uniform``, a single state,
``start include:`` and ``start exclude:``; ``T:``, ``O:`` and ``R:`` entries in per-entry, per-row and
full-matrix forms, ``identity`` and ``uniform`` matrices, ``*`` wildcards in any index position, rewards with
four indices ``R: a : s : s' : o`` and ``#`` comments. Later entries override earlier ones; anything not given
is 0.

It reads the file in one streaming pass and keeps only what the file assigns (sparse logs of entries, see
:mod:`~trim_pomdp.solvers.formats._sparse`), so memory grows with the nonzeros, not with ``|S|²``. Lines of the
one-entry forms (``T: a : s : s' p``), which make up nearly all of a large file, are taken a run of lines at a
time by one regular expression and converted to indices in bulk (:mod:`~trim_pomdp.solvers.formats._tokens`);
every other statement goes through the token-by-token parser below, with the same meaning. Whatever a
statement would allocate is checked against the memory limit first (:mod:`trim_pomdp.solvers.memory`), so a
short file that declares 20,000 states and ``T: * uniform`` is refused before anything is allocated.

Rewards are folded into their expectation ``R[s, a] = Σ_{s', o} T[a, s, s'] O[a, s', o] r(a, s, s', o)``
(as SARSOP does); with ``values: cost`` the costs are negated, so the returned model always *maximises* reward.

The writer emits a sparse file (one line per nonzero entry; dense observation rows in per-row form) with
0-based indices in the entries, exact shortest-repr floats in positional notation, and an explicit ``start:``
vector, which APPL ``pomdpsol`` (both parsers) and SARSOP.jl read.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import compress
from pathlib import Path

import numpy as np

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.formats._cassandra_model import CassandraModel, Space
from trim_pomdp.solvers.formats._common import (
    ROW_SUM_TOLERANCE,
    Deadline,
    format_float,
    model_blocks,
    valid_names,
)
from trim_pomdp.solvers.formats._tokens import KEYWORDS, Tokens, text_blocks
from trim_pomdp.solvers.memory import MemoryBudget
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["ROW_SUM_TOLERANCE", "format_float", "parse_cassandra", "read_cassandra", "write_cassandra"]

_RESERVED = KEYWORDS | {"identity", "uniform", "reward", "cost", "include", "exclude"}


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


class _Parser:
    """One streaming parse: the preamble, then the statements, fed into a :class:`CassandraModel`."""

    def __init__(self, tk: Tokens, budget: MemoryBudget, representation: str):
        self.tk, self.budget, self.representation = tk, budget, representation
        self.discount: float | None = None
        self.values = "reward"
        self.spaces: dict[str, Space] = {}
        self.start: tuple[str, object, int] | None = None
        self.model: CassandraModel | None = None
        self.seq = 0

    def run(self) -> TabularPOMDP:
        tk = self.tk
        while True:
            if tk.pos >= len(tk.toks):
                tk.compact()
                if self.model is not None and self._entries():
                    continue
                line = tk.raw_line()
                if line is None:
                    break
                tk.push(line)
                if not tk.toks:
                    continue
            self._statement()
        return self._finish()

    def _entries(self) -> bool:
        """Log the next run of one-line entries in bulk; ``False`` if the next line needs the statement parser."""
        assert self.model is not None
        rows, first = self.tk.entry_run()
        if not rows:
            return False
        n = len(rows)
        lengths = list(map(len, rows))
        entries = []
        for width, group in ((5, "TO"), (6, "R")):  # "T a s c p" / "R a s s' o r"; blank lines have none
            sel = list(map(width.__eq__, lengths))
            if not any(sel):
                continue
            at = np.flatnonzero(np.fromiter(sel, bool, n))  # line first + i, sequence number seq + 1 + i
            cols = list(zip(*compress(rows, sel), strict=True))
            for key in group:
                is_key = list(map(key.__eq__, cols[0])) if group == "TO" else [True] * len(at)
                if any(is_key):
                    i = at[np.fromiter(is_key, bool, len(at))]
                    entries.append(
                        (key, [list(compress(c, is_key)) for c in cols[1:]], first + i, self.seq + 1 + i)
                    )
        self.model.entry_run(entries)
        self.seq += len(rows)
        return True

    def _statement(self) -> None:
        tk = self.tk
        if not tk.statement_start():
            raise tk.error(
                "a statement (discount:, values:, states:, actions:, observations:, start:, T:, O:, R:)"
            )
        key = tk.next("a keyword")
        if key == "start" and tk.peek() in ("include", "exclude"):
            self._start_subset()
            return
        tk.expect(":")
        self.seq += 1
        if key == "discount":
            self.discount = tk.number("the discount factor")
            if not 0.0 < self.discount <= 1.0:
                raise tk.error("a discount in (0, 1]", tk.pos - 1)
        elif key == "values":
            pos = tk.pos
            self.values = tk.next("'reward' or 'cost'")
            if self.values not in ("reward", "cost"):
                raise tk.error("'reward' or 'cost'", pos)
        elif key in ("states", "actions", "observations"):
            self._space(key)
        elif key == "start":
            self._start()
        elif key in ("T", "O"):
            self._alloc()._probabilities(key)
        else:  # "R"
            self._alloc()._reward()

    # -- helpers -------------------------------------------------------------------------------------------
    def _need(self, *kinds: str) -> None:
        missing = [k for k in kinds if k not in self.spaces]
        if missing:
            raise self.tk.error(f"the preamble to declare {', '.join(missing)} before this statement")

    def _alloc(self) -> _Parser:
        if self.model is None:
            self._need("states", "actions", "observations")
            self.model = CassandraModel(self.spaces, self.tk.source, self.budget)
        return self

    def _index(self, kind: str) -> int:
        """The index denoted by the next token, ``-1`` for ``*``."""
        pos = self.tk.pos
        code = self.spaces[kind].code(self.tk.next(f"a {kind[:-1]}"))
        if code is None:
            raise self.tk.error(self.spaces[kind].expected(), pos)
        return code

    # -- the preamble ----------------------------------------------------------------------------------------
    def _space(self, key: str) -> None:
        """``states:`` / ``actions:`` / ``observations:`` with a count or a list of names."""
        tk = self.tk
        if self.model is not None:
            raise tk.error(f"'{key}:' before the first T:/O:/R: entry", tk.pos - 2)
        items = tk.until_statement()
        if not items:
            raise tk.error(f"a count or a list of {key} names")
        if len(items) == 1 and items[0][0].isdigit():
            n = int(items[0][0])
            if n < 1:
                raise tk.error(f"a positive number of {key}", items[0][1])
            self.budget.check(16.0 * n, f"'{key}: {n}'")
            self.spaces[key] = Space(key, None, n)
            return
        names = [t for t, _ in items]
        for t, p in items:
            if t[0].isdigit() or t in ("*", ":"):
                raise tk.error(f"a {key[:-1]} name (names cannot start with a digit)", p)
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise tk.error(f"distinct {key} names ({dup!r} appears twice)", items[0][1])
        self.spaces[key] = Space(key, names, len(names))

    def _start_subset(self) -> None:
        """``start include: ...`` / ``start exclude: ...`` (the keyword ``start`` already read)."""
        tk = self.tk
        mode = tk.next("include/exclude")
        tk.expect(":")
        self._need("states")
        items = tk.until_statement()
        if not items:
            raise tk.error(f"state names or indices after 'start {mode}:'")
        states = self.spaces["states"]
        parts = []
        for tok, p in items:
            idx = states.resolve(tok)
            if idx is None:
                raise tk.error(states.expected(), p)
            parts.append(idx)
        self.start = (mode, np.unique(np.concatenate(parts)), tk.lines[items[0][1]])

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
            self.start = ("uniform", None, line)
        elif (
            len(items) == S
            and all(_is_number(t) for t, _ in items)
            and not (S == 1 and items[0][0] in states.index)
        ):
            self.start = ("vector", np.array([float(t) for t, _ in items]), line)
        elif len(items) == 1:
            idx = states.resolve(items[0][0])
            if idx is None:
                raise tk.error(states.expected(), items[0][1])
            self.start = ("state", idx, line)
        else:
            raise tk.error(
                f"{S} start probabilities, 'uniform' or one state (found {len(items)} tokens)", items[0][1]
            )

    # -- entries ---------------------------------------------------------------------------------------------
    def _probabilities(self, key: str) -> None:
        """``T: a [: s [: s']]`` or ``O: a [: s' [: o]]`` with numbers, ``uniform`` or ``identity``."""
        tk, model = self.tk, self.model
        assert model is not None
        columns = "states" if key == "T" else "observations"
        what = "transition" if key == "T" else "observation"
        S, C = self.spaces["states"].n, self.spaces[columns].n
        line = tk.lines[tk.pos - 1]
        a = self._index("actions")
        if tk.peek() == ":":
            tk.pos += 1
            s = self._index("states")
            if tk.peek() == ":":
                tk.pos += 1
                c = self._index(columns)
                value = tk.number(f"a {what} probability")
                model.entry(key, [a, s, c], value, self.seq, line)
                return
            a_idx, s_idx = self.spaces["actions"].indices(a), self.spaces["states"].indices(s)
            if tk.peek() == "uniform":
                tk.pos += 1
                model.rows(key, a_idx, s_idx, np.full(C, 1.0 / C), self.seq, line)
            else:
                row = tk.numbers(C, f"a row of {C} {what} probabilities or 'uniform'")
                model.rows(key, a_idx, s_idx, row, self.seq, line)
            return
        a_idx = self.spaces["actions"].indices(a)
        if tk.peek() == "uniform":
            tk.pos += 1
            model.rows(key, a_idx, np.arange(S), np.full(C, 1.0 / C), self.seq, line)
        elif tk.peek() == "identity":
            if S != C:
                raise tk.error(f"'uniform' or {S}x{C} numbers ('identity' needs as many {columns} as states)")
            tk.pos += 1
            model.identity(key, a_idx, self.seq, line)
        else:
            self.budget.check(8.0 * S * C, f"line {line}: a full {S}x{C} {what} matrix")
            block = tk.numbers(S * C, f"a {S}x{C} {what} matrix, 'identity' or 'uniform'").reshape(S, C)
            model.matrix(key, a_idx, block, self.seq, line)

    def _reward(self) -> None:
        """``R: a : s [: s' [: o]]`` followed by a value, a row of values or a matrix."""
        tk, model = self.tk, self.model
        assert model is not None
        states = self.spaces["states"]
        S, Z = states.n, self.spaces["observations"].n
        line = tk.lines[tk.pos - 1]
        a = self._index("actions")
        tk.expect(":")
        s = self._index("states")
        a_idx, s_idx = self.spaces["actions"].indices(a), states.indices(s)
        if tk.peek() != ":":
            self.budget.check(8.0 * S * Z, f"line {line}: a full {S}x{Z} reward matrix")
            block = tk.numbers(S * Z, f"a {S}x{Z} reward matrix").reshape(S, Z)
            model.reward_matrix(a_idx, s_idx, block, self.seq, line)
            return
        tk.pos += 1
        sp = self._index("states")
        if tk.peek() != ":":
            row = tk.numbers(Z, f"a row of {Z} rewards")
            model.reward_row(a_idx, s_idx, states.indices(sp), row, self.seq, line)
            return
        tk.pos += 1
        o = self._index("observations")
        value = tk.number("a reward value")
        model.entry("R", [a, s, sp, o], value, self.seq, line)

    # -- the model -------------------------------------------------------------------------------------------
    def _finish(self) -> TabularPOMDP:
        source = self.tk.source
        if self.discount is None:
            raise DataFormatError(f"{source}: missing 'discount:' line")
        for key in ("states", "actions", "observations"):
            if key not in self.spaces:
                raise DataFormatError(f"{source}: missing '{key}:' line")
        self._alloc()
        assert self.model is not None
        notes: list[str] = []
        T, O, R = self.model.finish(notes)
        if self.values == "cost":
            R = -R
        b0 = self._initial_belief(notes)
        names = {k: (list(space.names) if space.names else None) for k, space in self.spaces.items()}
        model = TabularPOMDP(
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
        return _represent(model, self.representation, self.budget)

    def _initial_belief(self, notes: list[str]) -> np.ndarray:
        source, S = self.tk.source, self.spaces["states"].n
        self.budget.charge(8.0 * S, "the initial belief")
        if self.start is None:
            notes.append("no start: line, uniform initial belief")
            return np.full(S, 1.0 / S)
        kind, arg, line = self.start
        if kind == "uniform":
            return np.full(S, 1.0 / S)
        if kind == "vector":
            b0 = np.asarray(arg)
            if np.any(b0 < 0) or abs(b0.sum() - 1.0) > ROW_SUM_TOLERANCE:
                raise DataFormatError(
                    f"{source}: line {line}: start probabilities must be >= 0 and sum to 1 (they sum to {b0.sum():.6g})"
                )
            return b0 / b0.sum() if abs(b0.sum() - 1.0) > 1e-12 else b0
        mask = np.zeros(S, bool)
        mask[np.asarray(arg)] = True
        if kind == "exclude":
            mask = ~mask
        if not mask.any():
            raise DataFormatError(f"{source}: line {line}: 'start exclude:' excludes every state")
        return mask / mask.sum()


def _represent(model: TabularPOMDP, representation: str, budget: MemoryBudget) -> TabularPOMDP:
    from trim_pomdp.solvers.tabular import choose_representation

    if representation == "sparse":
        return model
    if representation == "auto":
        representation = choose_representation(
            model.n_states, model.n_actions, model.n_observations, model.nnz
        )
    return model.to_dense(budget.limit - budget.used) if representation == "dense" else model


def parse_cassandra(
    text: str,
    source: str = "<string>",
    *,
    memory_limit: int | float | str | None = None,
    representation: str = "auto",
    deadline: float | None = None,
) -> TabularPOMDP:
    """Parse the text of a ``.pomdp`` file into a :class:`~trim_pomdp.solvers.tabular.TabularPOMDP`.

    Parameters
    ----------
    text : str
        The file's content.
    source : str, default "<string>"
        Its name, for messages.
    memory_limit : int, float or str, optional
        Refuse models that would need more (see :mod:`trim_pomdp.solvers.memory`; default 4 GiB or
        ``TRIM_POMDP_MEMORY_LIMIT``).
    representation : {"auto", "dense", "sparse"}, default "auto"
        Dense arrays or per-action sparse matrices for ``T`` and ``O``; ``"auto"`` chooses by size and density
        (:func:`~trim_pomdp.solvers.tabular.choose_representation`).
    deadline : float, optional
        ``time.perf_counter()`` value after which reading stops with a ``ResourceLimitError``.

    Raises
    ------
    DataFormatError
        Naming the file, the line and what was expected there.
    ResourceLimitError
        When the model would exceed ``memory_limit`` (or reading passes ``deadline``).
    """
    return _parse(text_blocks(text), source, memory_limit, representation, deadline)


def _parse(
    blocks: Iterable[str],
    source: str,
    memory_limit: int | float | str | None,
    representation: str,
    deadline: float | None,
) -> TabularPOMDP:
    if representation not in ("auto", "dense", "sparse"):
        raise ValueError(f"representation must be 'auto', 'dense' or 'sparse', got {representation!r}")
    budget = MemoryBudget(memory_limit, source)
    return _Parser(Tokens(blocks, source, Deadline(deadline)), budget, representation).run()


def read_cassandra(
    path: str | Path,
    *,
    memory_limit: int | float | str | None = None,
    representation: str = "auto",
    deadline: float | None = None,
) -> TabularPOMDP:
    """Read a Cassandra ``.pomdp`` file in one streaming pass. See :func:`parse_cassandra`."""
    with model_blocks(path) as (blocks, source):
        return _parse(blocks, source, memory_limit, representation, deadline)


def write_cassandra(model: TabularPOMDP, path: str | Path, *, dense_row_fraction: float = 0.5) -> Path:
    """Write ``model`` as a sparse Cassandra ``.pomdp`` file readable by APPL ``pomdpsol`` and SARSOP.jl.

    Parameters
    ----------
    model : TabularPOMDP
        The model (dense or sparse); its names are written when they are valid and not keywords of the format,
        else counts.
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
    R = np.asarray(model.R, float)
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
            T = model.transition(a).tocoo()
            w(
                "".join(
                    f"T: {a} : {s} : {sp} {ff(p)}\n" for s, sp, p in zip(T.row, T.col, T.data, strict=True)
                )
            )
        for a in range(A):
            O = model.observation(a)
            for sp in range(S):
                lo, hi = O.indptr[sp], O.indptr[sp + 1]
                cols, vals = O.indices[lo:hi], O.data[lo:hi]
                if len(cols) > dense_row_fraction * Z and len(cols) > 1:
                    row = np.zeros(Z)
                    row[cols] = vals
                    w(f"O: {a} : {sp}\n" + " ".join(ff(x) for x in row) + "\n")
                else:
                    w("".join(f"O: {a} : {sp} : {o} {ff(p)}\n" for o, p in zip(cols, vals, strict=True)))
        w("".join(f"R: {a} : {s} : * : * {ff(R[s, a])}\n" for s, a in np.argwhere(R != 0)))
    return path
