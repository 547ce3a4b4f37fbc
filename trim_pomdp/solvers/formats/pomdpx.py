"""Read and write APPL ``.pomdpx`` files (factored XML); factored models are flattened sparsely.

Supported (everything the APPL examples use with ``type="TBL"`` parameters): ``Discount``; ``StateVar``
(``vnamePrev``/``vnameCurr``, ``fullyObs``, ``NumValues`` or ``ValueEnum``), ``ObsVar``, ``ActionVar``,
``RewardVar``; ``InitialStateBelief``, ``StateTransitionFunction`` and ``ObsFunction`` as ``CondProb``s and
``RewardFunction`` as ``Func``s (several add up); ``Entry``/``Instance`` with value names or indices, ``*``
(every value, one number broadcast) and ``-`` (every value, one number per combination, row-major in the order
of the dashes), ``ProbTable``/``ValueTable`` with numbers, ``identity`` or ``uniform``. Later entries override
earlier ones; anything not given is 0. The decision-diagram ``DD`` parameter type is not supported (APPL does
not support it either).

The file is read as factored: the XML is parsed as a stream (each ``<Entry>`` is applied to its table and
dropped), every variable keeps its own conditional probability table (:func:`read_factored`), and the flat model
is built from those tables as per-action sparse matrices (:mod:`~trim_pomdp.solvers.formats._factored`), never
as a dense ``|S| x |S|`` array. What each table and the flat model need is checked against the memory limit
before it is allocated; the least size of the flat model is checked as soon as the variables are declared.

Flattening: the joint state is the product of the state variables (first declared varies slowest), the joint
observation the product of the observation variables; a ``fullyObs="true"`` state variable is appended to the
observation (its next value is observed exactly), which keeps the flat model equivalent to the
mixed-observability one except that its *initial* value is not observed. Rewards that depend on next-state or
observation variables are folded into their expectation ``R[s, a]``.

The writer emits flat models with one state variable (``ValueEnum`` of the model's names when they are valid
identifiers, else ``NumValues``) and one ``Entry`` per nonzero, like POMDPXFiles.jl.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast
from xml.sax.saxutils import escape

import numpy as np

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.formats._common import Deadline, format_float, valid_names
from trim_pomdp.solvers.formats._factored import FactoredPOMDP
from trim_pomdp.solvers.formats._tables import Table, Var
from trim_pomdp.solvers.memory import MemoryBudget
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["FactoredPOMDP", "parse_pomdpx", "read_factored", "read_pomdpx", "write_pomdpx"]

_SECTIONS = {
    "InitialStateBelief": ("CondProb", "prev"),
    "StateTransitionFunction": ("CondProb", "curr"),
    "ObsFunction": ("CondProb", "obs"),
    "RewardFunction": ("Func", "reward"),
}


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _values(el: ET.Element, where: str) -> tuple[int, list[str] | None]:
    num, enum = el.find("NumValues"), el.find("ValueEnum")
    if enum is not None:
        vals = _text(enum).split()
        if not vals:
            raise DataFormatError(f"{where}: empty <ValueEnum>")
        return len(vals), vals
    if num is not None:
        try:
            n = int(_text(num))
        except ValueError:
            raise DataFormatError(
                f"{where}: <NumValues> must be a positive integer, got {_text(num)!r}"
            ) from None
        if n < 1:
            raise DataFormatError(f"{where}: <NumValues> must be positive, got {n}")
        return n, None
    raise DataFormatError(f"{where}: expected <NumValues> or <ValueEnum>")


class _Reader:
    """One streaming parse of a ``.pomdpx`` file into a :class:`FactoredPOMDP`.

    Events of an ``XMLPullParser``: ``<Discount>`` and ``<Variable>`` are read whole (they are small); in the
    function sections, each ``<Entry>`` is applied to its table when it ends and then cleared, so the tree never
    holds more than one entry.
    """

    def __init__(self, source: str, budget: MemoryBudget, deadline: Deadline):
        self.source, self.budget, self.deadline = source, budget, deadline
        self.variables: dict[str, Var] = {}
        self.states: list[tuple[Var, Var]] = []
        self.obs_vars: list[Var] = []
        self.act_vars: list[Var] = []
        self.reward_vars: list[str] = []
        self.discount: float | None = None
        self.declared = False
        self.tables: dict[str, list[tuple[Var | None, Table]]] = {s: [] for s in _SECTIONS}
        self.section: str | None = None
        self.counter = 0
        self.block: dict[str, Any] = {}
        self.depth = 0
        self.root_seen = False

    def run(self, chunks: Iterable[str | bytes]) -> FactoredPOMDP:
        parser: ET.XMLPullParser = ET.XMLPullParser(events=("start", "end"))
        try:
            for chunk in chunks:
                parser.feed(chunk)
                self._events(parser)
                self.deadline.check(self.source)
            parser.close()
            self._events(parser)
        except ET.ParseError as exc:
            raise DataFormatError(f"{self.source}: not well-formed XML ({exc})") from exc
        if not self.root_seen:
            raise DataFormatError(f"{self.source}: not well-formed XML (no element found)")
        return self._model()

    def _events(self, parser: ET.XMLPullParser) -> None:
        for item in parser.read_events():
            event, el = cast("tuple[str, ET.Element]", item)  # only start/end events were asked for
            if event == "start":
                self.depth += 1
                self._start(el)
            else:
                self._end(el)
                self.depth -= 1

    def _start(self, el: ET.Element) -> None:
        tag, depth = el.tag, self.depth
        if depth == 1:
            if tag != "pomdpx":
                raise DataFormatError(f"{self.source}: root element is <{tag}>, expected <pomdpx>")
            self.root_seen = True
        elif depth == 2 and tag in _SECTIONS:
            if not self.declared:
                raise DataFormatError(f"{self.source}: <Variable> must come before <{tag}>")
            self.section, self.counter = tag, 0
        elif depth == 3 and self.section is not None and tag == _SECTIONS[self.section][0]:
            self.counter += 1
            self.block = {"where": f"{self.source}: <{self.section}> {tag} {self.counter}", "entries": 0}
        elif depth == 4 and self.section is not None and tag == "Parameter" and "where" in self.block:
            self._begin_table(el)

    def _end(self, el: ET.Element) -> None:
        tag, depth = el.tag, self.depth
        if depth == 2:
            if tag == "Discount":
                self._discount(el)
            elif tag == "Variable":
                self._declare_variables(el)
                el.clear()
            elif tag in _SECTIONS:
                self.section = None
                el.clear()
        elif self.section is None:
            return
        elif depth == 4 and tag in ("Var", "Parent"):
            self.block[tag] = _text(el)
        elif depth == 5 and tag == "Entry" and "table" in self.block:
            self._entry(el)
            el.clear()
        elif depth == 3 and tag == _SECTIONS[self.section][0]:
            self._finish_table()
            el.clear()

    # -- declarations ----------------------------------------------------------------------------------------
    def _discount(self, el: ET.Element) -> None:
        try:
            discount = float(_text(el))
        except ValueError:
            raise DataFormatError(f"{self.source}: <Discount> must be a number in (0, 1]") from None
        if not 0.0 < discount <= 1.0:
            raise DataFormatError(f"{self.source}: <Discount> must lie in (0, 1], got {discount}")
        self.discount = discount

    def _declare_variables(self, var_el: ET.Element) -> None:
        source = self.source
        for el in var_el:
            where = f"{source}: <{el.tag}>"
            if el.tag == "StateVar":
                prev, curr = el.get("vnamePrev"), el.get("vnameCurr")
                if not prev or not curr:
                    raise DataFormatError(f"{where}: needs vnamePrev and vnameCurr attributes")
                n, names = _values(el, where)
                fo = el.get("fullyObs", "false").strip().lower() == "true"
                i = len(self.states)
                pv, cv = Var(prev, "prev", n, names, "s", i, fo), Var(curr, "curr", n, names, "s", i, fo)
                self.states.append((pv, cv))
                self.variables[prev], self.variables[curr] = pv, cv
            elif el.tag in ("ObsVar", "ActionVar"):
                kind, prefix, group = (
                    ("obs", "o", self.obs_vars) if el.tag == "ObsVar" else ("action", "a", self.act_vars)
                )
                n, names = _values(el, where)
                v = Var(el.get("vname", ""), kind, n, names, prefix)
                group.append(v)
                self.variables[v.name] = v
            elif el.tag == "RewardVar":
                self.reward_vars.append(el.get("vname", ""))
            else:
                raise DataFormatError(
                    f"{where}: unknown variable kind (StateVar, ObsVar, ActionVar, RewardVar)"
                )
        if not self.states or not self.act_vars:
            raise DataFormatError(f"{source}: needs at least one <StateVar> and one <ActionVar>")
        self.declared = True
        self._factored().check_size(self.budget)

    # -- tables ----------------------------------------------------------------------------------------------
    def _parents(self, names: list[str], where: str, *, null_allowed: bool) -> list[Var]:
        if null_allowed and names == ["null"]:
            names = []
        for p in names:
            if p not in self.variables:
                raise DataFormatError(f"{where}: parent {p!r} is not a declared variable")
        return [self.variables[p] for p in names]

    def _begin_table(self, param: ET.Element) -> None:
        block, section = self.block, self.section
        assert section is not None
        where = block["where"]
        ptype = param.get("type", "TBL").strip()
        if ptype != "TBL":
            raise DataFormatError(
                f"{where}: Parameter type {ptype!r} is not supported (only TBL; APPL has no DD)"
            )
        vname = block.get("Var", "")
        parents = block.get("Parent", "").split()
        if section == "RewardFunction":
            if self.reward_vars and vname not in self.reward_vars:
                raise DataFormatError(f"{where}: <Var> {vname!r} is not a declared RewardVar")
            var, vs = None, self._parents(parents, where, null_allowed=False)
        else:
            kind = _SECTIONS[section][1]
            if vname not in self.variables or self.variables[vname].kind != kind:
                raise DataFormatError(f"{where}: <Var> {vname!r} is not a declared {kind} variable")
            var = self.variables[vname]
            vs = [*self._parents(parents, where, null_allowed=True), var]
        block["var"], block["table"] = var, Table(vs, self.budget, where)

    def _entry(self, entry: ET.Element) -> None:
        block = self.block
        block["entries"] += 1
        here = f"{block['where']}, entry {block['entries']}"
        reward = self.section == "RewardFunction"
        tag = "ValueTable" if reward else "ProbTable"
        inst = _text(entry.find("Instance")).split()
        block["table"].apply(inst, _text(entry.find(tag)), tag, not reward, here)

    def _finish_table(self) -> None:
        block, section = self.block, self.section
        assert section is not None
        if "table" not in block:
            raise DataFormatError(f"{block.get('where', self.source)}: missing <Parameter>")
        var, table = block["var"], block["table"]
        table.finish(check_rows=section != "RewardFunction", vname="" if var is None else var.name)
        self.tables[section].append((var, table))
        self.block = {}

    # -- the model -------------------------------------------------------------------------------------------
    def _factored(self) -> FactoredPOMDP:
        by_var = {s: {v.name: t for v, t in self.tables[s] if v is not None} for s in _SECTIONS}
        return FactoredPOMDP(
            discount=1.0 if self.discount is None else self.discount,
            states=self.states,
            observations=self.obs_vars,
            actions=self.act_vars,
            initial=by_var["InitialStateBelief"],
            transitions=by_var["StateTransitionFunction"],
            observation_tables=by_var["ObsFunction"],
            rewards=[t for _, t in self.tables["RewardFunction"]],
            source=self.source,
        )

    def _model(self) -> FactoredPOMDP:
        source = self.source
        if self.discount is None:
            raise DataFormatError(f"{source}: <Discount> must be a number in (0, 1]")
        if not self.declared:
            raise DataFormatError(f"{source}: missing <Variable>")
        model = self._factored()
        required = [("InitialStateBelief", [p for p, _ in self.states], model.initial)]
        required.append(("StateTransitionFunction", [c for _, c in self.states], model.transitions))
        if self.obs_vars:
            required.append(("ObsFunction", self.obs_vars, model.observation_tables))
        for section, vs, tables in required:
            for v in vs:
                if v.name not in tables:
                    raise DataFormatError(f"{source}: <{section}> has no CondProb for {v.name!r}")
        for _, c in self.states:
            if any(v.kind == "obs" for v in model.transitions[c.name].vars):
                raise DataFormatError(f"{source}: transition of {c.name!r} cannot depend on observations")
        for v in self.obs_vars:
            if any(x.kind == "prev" for x in model.observation_tables[v.name].vars):
                raise DataFormatError(
                    f"{source}: observation {v.name!r} may depend only on actions and next states"
                )
        return model


def _chunks(text: str, size: int = 1 << 20) -> Iterable[str]:
    text = text.lstrip()
    for i in range(0, max(len(text), 1), size):
        yield text[i : i + size]


def _file_chunks(path: Path, size: int = 1 << 20) -> Iterable[bytes]:
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise DataFormatError(f"cannot read {path}: {exc}") from exc
    with fh:
        head = fh.read(size).lstrip()
        while head:
            yield head
            head = fh.read(size)


def read_factored(
    path: str | Path, *, memory_limit: int | float | str | None = None, deadline: float | None = None
) -> FactoredPOMDP:
    """Read a ``.pomdpx`` file as factored: its variables and one table per variable (no flattening).

    ``FactoredPOMDP.flatten()`` then builds the flat sparse model.

    Raises
    ------
    DataFormatError
        Naming the file and the element (and entry) that was wrong.
    ResourceLimitError
        When a table, or the least size of the flat model, exceeds ``memory_limit``.
    """
    path = Path(path)
    return _Reader(str(path), MemoryBudget(memory_limit, str(path)), Deadline(deadline)).run(
        _file_chunks(path)
    )


def parse_pomdpx(
    text: str,
    source: str = "<string>",
    *,
    memory_limit: int | float | str | None = None,
    representation: str = "auto",
    deadline: float | None = None,
) -> TabularPOMDP:
    """Parse the text of a ``.pomdpx`` file and flatten it (sparsely) into a :class:`TabularPOMDP`.

    Parameters
    ----------
    text : str
        The file's content.
    source : str, default "<string>"
        Its name, for messages.
    memory_limit, representation, deadline
        As in :func:`~trim_pomdp.solvers.formats.cassandra.parse_cassandra`.

    Raises
    ------
    DataFormatError
        Naming the file and the element (and entry) that was wrong.
    ResourceLimitError
        When the model would exceed ``memory_limit``.
    """
    return _flat(text, source, memory_limit, representation, deadline)


def _flat(
    path_or_text: str | Path,
    source: str,
    memory_limit: int | float | str | None,
    representation: str,
    deadline: float | None,
) -> TabularPOMDP:
    if representation not in ("auto", "dense", "sparse"):
        raise ValueError(f"representation must be 'auto', 'dense' or 'sparse', got {representation!r}")
    budget = MemoryBudget(memory_limit, source)
    path = path_or_text if isinstance(path_or_text, Path) else None
    reader = _Reader(source, budget, Deadline(deadline))
    model = reader.run(_file_chunks(path) if path is not None else _chunks(str(path_or_text)))
    return model.flatten(budget, representation)


def read_pomdpx(
    path: str | Path,
    *,
    memory_limit: int | float | str | None = None,
    representation: str = "auto",
    deadline: float | None = None,
) -> TabularPOMDP:
    """Read a ``.pomdpx`` file. See :func:`parse_pomdpx`."""
    return _flat(Path(path), str(path), memory_limit, representation, deadline)


def _names(names: Any, n: int, prefix: str) -> tuple[str, list[str]]:
    valid = valid_names(names, n)
    if valid is not None:
        return f"<ValueEnum>{escape(' '.join(valid))}</ValueEnum>", valid
    return f"<NumValues>{n}</NumValues>", [f"{prefix}{i}" for i in range(n)]


def _cond_prob(
    section: str, var: str, parents: str, mats: Any, an: list[str], rows: list[str], cols: list[str]
) -> str:
    """One ``CondProb`` section with an ``Entry`` per nonzero ``mats[a][row, col]``."""
    parts = []
    for a, m in enumerate(mats):
        coo = m.tocoo()
        parts.append(
            "".join(
                f"<Entry><Instance>{an[a]} {rows[r]} {cols[c]}</Instance>"
                f"<ProbTable>{format_float(p)}</ProbTable></Entry>\n"
                for r, c, p in zip(coo.row, coo.col, coo.data, strict=True)
            )
        )
    return (
        f'<{section}><CondProb><Var>{var}</Var><Parent>{parents}</Parent><Parameter type="TBL">\n'
        f"{''.join(parts)}</Parameter></CondProb></{section}>\n"
    )


def write_pomdpx(
    model: TabularPOMDP, path: str | Path, *, description: str = "written by trim-pomdp"
) -> Path:
    """Write a flat ``.pomdpx`` (one state variable, one ``Entry`` per nonzero) that APPL ``pomdpsol`` reads.

    Parameters
    ----------
    model : TabularPOMDP
        The model (dense or sparse); its names are written when they are valid identifiers, else numbered values.
    path : str or Path
        The file to write.
    description : str
        Text of the ``<Description>`` element.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    S, A, Z = model.n_states, model.n_actions, model.n_observations
    R = np.asarray(model.R, float)
    s_decl, sn = _names(model.state_names, S, "s")
    a_decl, an = _names(model.action_names, A, "a")
    o_decl, on = _names(model.observation_names, Z, "o")
    ff = format_float
    with path.open("w", encoding="ISO-8859-1", errors="xmlcharrefreplace") as fh:
        w = fh.write
        w('<?xml version="1.0" encoding="ISO-8859-1"?>\n')
        w(
            '<pomdpx version="0.1" id="trim-pomdp" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:noNamespaceSchemaLocation="pomdpx.xsd">\n'
        )
        w(f"<Description>{escape(description)}</Description>\n<Discount>{ff(model.discount)}</Discount>\n")
        w("<Variable>\n")
        w(f'<StateVar vnamePrev="state0" vnameCurr="state1" fullyObs="false">{s_decl}</StateVar>\n')
        w(f'<ObsVar vname="observation">{o_decl}</ObsVar>\n<ActionVar vname="action">{a_decl}</ActionVar>\n')
        w('<RewardVar vname="reward"/>\n</Variable>\n')
        w('<InitialStateBelief><CondProb><Var>state0</Var><Parent>null</Parent><Parameter type="TBL">\n')
        w(
            "<Entry><Instance>-</Instance><ProbTable>"
            + " ".join(ff(x) for x in np.asarray(model.b0, float))
            + "</ProbTable></Entry>\n</Parameter></CondProb></InitialStateBelief>\n"
        )
        w(
            _cond_prob(
                "StateTransitionFunction", "state1", "action state0", model.transition_matrices(), an, sn, sn
            )
        )
        w(_cond_prob("ObsFunction", "observation", "action state1", model.observation_matrices(), an, sn, on))
        w('<RewardFunction><Func><Var>reward</Var><Parent>action state0</Parent><Parameter type="TBL">\n')
        w(
            "".join(
                f"<Entry><Instance>{an[a]} {sn[s]}</Instance><ValueTable>{ff(R[s, a])}</ValueTable></Entry>\n"
                for s, a in np.argwhere(R != 0)
            )
        )
        w("</Parameter></Func></RewardFunction>\n</pomdpx>\n")
    return path
