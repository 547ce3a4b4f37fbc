"""Read and write APPL ``.pomdpx`` files (factored XML), flattening factored models into a tabular POMDP.

Supported (everything the APPL examples use with ``type="TBL"`` parameters): ``Discount``; ``StateVar``
(``vnamePrev``/``vnameCurr``, ``fullyObs``, ``NumValues`` or ``ValueEnum``), ``ObsVar``, ``ActionVar``,
``RewardVar``; ``InitialStateBelief``, ``StateTransitionFunction`` and ``ObsFunction`` as ``CondProb``s and
``RewardFunction`` as ``Func``s (several add up); ``Entry``/``Instance`` with value names or indices, ``*``
(every value, one number broadcast) and ``-`` (every value, one number per combination, row-major in the order
of the dashes), ``ProbTable``/``ValueTable`` with numbers, ``identity`` or ``uniform``. Later entries override
earlier ones; anything not given is 0. The decision-diagram ``DD`` parameter type is not supported (APPL does
not support it either).

Flattening: the joint state is the product of the state variables (first declared varies slowest), the joint
observation the product of the observation variables; a ``fullyObs="true"`` state variable is appended to the
observation (its next value is observed exactly), which keeps the flat model equivalent to the
mixed-observability one except that its *initial* value is not observed. Rewards that depend on next-state or
observation variables are folded into their expectation ``R[s, a]``.

The writer emits flat models with one state variable (``ValueEnum`` of the model's names when they are valid
identifiers, else ``NumValues``) and one ``Entry`` per nonzero, like POMDPXFiles.jl.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.formats._common import ROW_SUM_TOLERANCE, format_float, read_model_text, valid_names
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["parse_pomdpx", "read_pomdpx", "write_pomdpx"]


@dataclass
class _Var:
    name: str
    kind: str  # "prev", "curr", "obs", "action"
    values: list[str]
    state: int = -1  # index of the state variable for prev/curr
    fully_observed: bool = False

    @property
    def n(self) -> int:
        return len(self.values)

    def index(self, tok: str, where: str) -> int:
        lookup = self.__dict__.get("_lookup")
        if lookup is None:
            lookup = self.__dict__["_lookup"] = {name: i for i, name in enumerate(self.values)}
        if tok in lookup:
            return lookup[tok]
        if tok.isdigit() and int(tok) < self.n:
            return int(tok)
        raise DataFormatError(
            f"{where}: {tok!r} is not a value of variable {self.name!r} "
            f"(expected one of {self.values[:6]}{'...' if self.n > 6 else ''}, '*' or '-')"
        )


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _values(el: ET.Element, prefix: str, where: str) -> list[str]:
    num, enum = el.find("NumValues"), el.find("ValueEnum")
    if enum is not None:
        vals = _text(enum).split()
        if not vals:
            raise DataFormatError(f"{where}: empty <ValueEnum>")
        return vals
    if num is not None:
        try:
            n = int(_text(num))
        except ValueError:
            raise DataFormatError(
                f"{where}: <NumValues> must be a positive integer, got {_text(num)!r}"
            ) from None
        if n < 1:
            raise DataFormatError(f"{where}: <NumValues> must be positive, got {n}")
        return [f"{prefix}{i}" for i in range(n)]
    raise DataFormatError(f"{where}: expected <NumValues> or <ValueEnum>")


def _fill_table(
    table: np.ndarray,
    variables: list[_Var],
    entries: list[ET.Element],
    tag: str,
    where: str,
    probability: bool,
) -> None:
    """Apply ``<Entry>`` elements to ``table`` (axes = ``variables``) in order, later entries overriding."""
    for k, entry in enumerate(entries, start=1):
        here = f"{where}, entry {k}"
        inst = _text(entry.find("Instance")).split()
        if len(inst) != len(variables):
            names = " ".join(v.name for v in variables)
            raise DataFormatError(
                f"{here}: <Instance> {' '.join(inst)!r} has {len(inst)} values, expected "
                f"{len(variables)} (one per variable: {names})"
            )
        index: list = []
        dashed: list[int] = []
        for ax, (tok, var) in enumerate(zip(inst, variables, strict=True)):
            if tok in ("*", "-"):
                index.append(slice(None))
                if tok == "-":
                    dashed.append(ax)
            else:
                index.append(var.index(tok, here))
        raw = _text(entry.find(tag))
        if not raw:
            raise DataFormatError(f"{here}: missing <{tag}>")
        view_shape = [variables[ax].n if isinstance(ix, slice) else 1 for ax, ix in enumerate(index)]
        if raw in ("identity", "uniform"):
            if not probability:
                raise DataFormatError(f"{here}: {raw!r} is only allowed in <ProbTable>")
            if raw == "uniform":
                if not isinstance(index[-1], slice):
                    raise DataFormatError(
                        f"{here}: 'uniform' needs '*' or '-' for variable {variables[-1].name!r}"
                    )
                table[tuple(index)] = 1.0 / variables[-1].n
                continue
            if len(dashed) != 2 or variables[dashed[0]].n != variables[dashed[1]].n:
                raise DataFormatError(
                    f"{here}: 'identity' needs exactly two '-' over variables of equal size"
                )
            n = variables[dashed[0]].n
            block = np.zeros(view_shape)
            eye_index: list = [slice(None)] * len(variables)
            for i in range(n):
                eye_index[dashed[0]] = eye_index[dashed[1]] = i
                block[tuple(eye_index)] = 1.0
            table[tuple(index)] = block
            continue
        try:
            nums = np.array([float(x) for x in raw.split()])
        except ValueError:
            raise DataFormatError(
                f"{here}: <{tag}> must hold numbers{', identity or uniform' if probability else ''}"
                f", got {raw[:60]!r}"
            ) from None
        n_expected = int(np.prod([variables[ax].n for ax in dashed])) if dashed else 1
        if nums.size != n_expected:
            raise DataFormatError(
                f"{here}: <{tag}> has {nums.size} numbers, expected {n_expected} "
                f"(one per combination of the '-' variables)"
            )
        shape = [variables[ax].n if ax in dashed else 1 for ax in range(len(variables))]
        table[tuple(index)] = nums.reshape(shape) if dashed else nums[0]


def _params(el: ET.Element, where: str) -> list[ET.Element]:
    param = el.find("Parameter")
    if param is None:
        raise DataFormatError(f"{where}: missing <Parameter>")
    ptype = param.get("type", "TBL").strip()
    if ptype != "TBL":
        raise DataFormatError(
            f"{where}: Parameter type {ptype!r} is not supported (only TBL; APPL has no DD)"
        )
    return param.findall("Entry")


def _product_names(vs: list[_Var]) -> list[str] | None:
    if not vs:
        return None
    if len(vs) == 1:
        return list(vs[0].values)
    return ["_".join(c) for c in itertools.product(*[v.values for v in vs])]


class _Parser:
    """One parse: the declared variables, then one method per section of the file.

    The joint axes of every table are: actions..., previous states..., current states..., observations...
    """

    def __init__(self, root: ET.Element, source: str):
        self.root, self.source = root, source
        self.variables: dict[str, _Var] = {}
        self.states: list[tuple[_Var, _Var]] = []
        self.obs_vars: list[_Var] = []
        self.act_vars: list[_Var] = []
        self.reward_vars: list[str] = []

    def run(self) -> TabularPOMDP:
        discount = self._discount()
        self._declare_variables()
        self.axes = self.act_vars + [p for p, _ in self.states] + [c for _, c in self.states] + self.obs_vars
        self.ax_of = {v.name: i for i, v in enumerate(self.axes)}
        self.nS = int(np.prod([p.n for p, _ in self.states]))
        self.nA = int(np.prod([a.n for a in self.act_vars]))
        b0 = self._initial_belief()
        T = self._transitions()
        O, observed = self._observations()
        R = self._rewards(T)
        obs_name_vars = self.obs_vars + observed
        return TabularPOMDP(
            T=np.ascontiguousarray(T),
            O=np.ascontiguousarray(O),
            R=R,
            b0=b0,
            discount=discount,
            state_names=_product_names([p for p, _ in self.states]),
            action_names=_product_names(self.act_vars),
            observation_names=_product_names(obs_name_vars) if obs_name_vars else ["none"],
            meta={
                "source": self.source,
                "format": "pomdpx",
                "state_variables": [p.name for p, _ in self.states],
                "fully_observed": [c.name for c in observed],
            },
        )

    # -- declarations ----------------------------------------------------------------------------------------
    def _discount(self) -> float:
        try:
            discount = float(_text(self.root.find("Discount")))
        except ValueError:
            raise DataFormatError(f"{self.source}: <Discount> must be a number in (0, 1]") from None
        if not 0.0 < discount <= 1.0:
            raise DataFormatError(f"{self.source}: <Discount> must lie in (0, 1], got {discount}")
        return discount

    def _declare_variables(self) -> None:
        source = self.source
        var_el = self.root.find("Variable")
        if var_el is None:
            raise DataFormatError(f"{source}: missing <Variable>")
        for el in var_el:
            where = f"{source}: <{el.tag}>"
            if el.tag == "StateVar":
                prev, curr = el.get("vnamePrev"), el.get("vnameCurr")
                if not prev or not curr:
                    raise DataFormatError(f"{where}: needs vnamePrev and vnameCurr attributes")
                vals = _values(el, "s", where)
                fo = el.get("fullyObs", "false").strip().lower() == "true"
                pv = _Var(prev, "prev", vals, len(self.states), fo)
                cv = _Var(curr, "curr", vals, len(self.states), fo)
                self.states.append((pv, cv))
                self.variables[prev], self.variables[curr] = pv, cv
            elif el.tag in ("ObsVar", "ActionVar"):
                kind, prefix, group = (
                    ("obs", "o", self.obs_vars) if el.tag == "ObsVar" else ("action", "a", self.act_vars)
                )
                v = _Var(el.get("vname", ""), kind, _values(el, prefix, where))
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

    # -- tables ----------------------------------------------------------------------------------------------
    def _lift(self, table: np.ndarray, vs: list[_Var]) -> np.ndarray:
        """Broadcastable view of ``table`` (axes ``vs``) over the joint axes."""
        order = sorted(range(len(vs)), key=lambda i: self.ax_of[vs[i].name])
        t = np.transpose(table, order)
        shape = [1] * len(self.axes)
        for i in order:
            shape[self.ax_of[vs[i].name]] = vs[i].n
        return t.reshape(shape)

    def _parents(self, el: ET.Element, where: str, *, null_allowed: bool) -> list[_Var]:
        names = _text(el.find("Parent")).split()
        if null_allowed and names == ["null"]:
            names = []
        for p in names:
            if p not in self.variables:
                raise DataFormatError(f"{where}: parent {p!r} is not a declared variable")
        return [self.variables[p] for p in names]

    def _cond_probs(self, section: str, kind: str) -> dict[str, tuple[np.ndarray, list[_Var]]]:
        """The ``CondProb`` tables of ``section`` (each row checked and renormalised) by variable name."""
        sec = self.root.find(section)
        if sec is None:
            raise DataFormatError(f"{self.source}: missing <{section}>")
        out = {}
        for j, cp in enumerate(sec.findall("CondProb"), start=1):
            where = f"{self.source}: <{section}> CondProb {j}"
            vname = _text(cp.find("Var"))
            if vname not in self.variables or self.variables[vname].kind != kind:
                raise DataFormatError(f"{where}: <Var> {vname!r} is not a declared {kind} variable")
            vs = [*self._parents(cp, where, null_allowed=True), self.variables[vname]]
            table = np.zeros([v.n for v in vs])
            _fill_table(table, vs, _params(cp, where), "ProbTable", where, probability=True)
            _check_rows(table, vs, vname, where)
            out[vname] = (table, vs)
        return out

    def _initial_belief(self) -> np.ndarray:
        """``b0``: the product over the previous-state variables of their initial tables."""
        init = self._cond_probs("InitialStateBelief", "prev")
        b = np.ones([p.n for p, _ in self.states])
        prev_axes = {p.name: i for i, (p, _) in enumerate(self.states)}
        for p, _ in self.states:
            if p.name not in init:
                raise DataFormatError(f"{self.source}: <InitialStateBelief> has no CondProb for {p.name!r}")
            table, vs = init[p.name]
            if any(v.kind != "prev" for v in vs):
                raise DataFormatError(
                    f"{self.source}: <InitialStateBelief> CondProb of {p.name!r} may only depend on other state "
                    "variables"
                )
            order = sorted(range(len(vs)), key=lambda i: prev_axes[vs[i].name])
            shape = [1] * len(self.states)
            for i in order:
                shape[prev_axes[vs[i].name]] = vs[i].n
            b = b * np.transpose(table, order).reshape(shape)
        return b.reshape(-1)

    def _transitions(self) -> np.ndarray:
        """``T[a, s, s']``: the product of the current-state variables' tables."""
        trans = self._cond_probs("StateTransitionFunction", "curr")
        joint = np.ones([v.n if v.kind in ("action", "prev", "curr") else 1 for v in self.axes])
        for _, c in self.states:
            if c.name not in trans:
                raise DataFormatError(
                    f"{self.source}: <StateTransitionFunction> has no CondProb for {c.name!r}"
                )
            table, vs = trans[c.name]
            if any(v.kind == "obs" for v in vs):
                raise DataFormatError(
                    f"{self.source}: transition of {c.name!r} cannot depend on observations"
                )
            joint = joint * self._lift(table, vs)
        return joint.reshape(self.nA, self.nS, self.nS)

    def _observations(self) -> tuple[np.ndarray, list[_Var]]:
        """``O[a, s', o]`` over the observation variables and the fully observed state variables."""
        obs = self._cond_probs("ObsFunction", "obs") if self.obs_vars else {}
        observed = [c for _, c in self.states if c.fully_observed]
        obs_shape = [v.n for v in self.obs_vars] + [c.n for c in observed]
        nZ = int(np.prod(obs_shape)) if obs_shape else 1
        joint = np.ones([v.n if v.kind in ("action", "curr", "obs") else 1 for v in self.axes])
        for v in self.obs_vars:
            if v.name not in obs:
                raise DataFormatError(f"{self.source}: <ObsFunction> has no CondProb for {v.name!r}")
            table, vs = obs[v.name]
            if any(x.kind == "prev" for x in vs):
                raise DataFormatError(
                    f"{self.source}: observation {v.name!r} may depend only on actions and next states"
                )
            joint = joint * self._lift(table, vs)
        nA, nS = self.nA, self.nS
        joint = joint.reshape(nA, nS, -1)  # (a, s', o-vars)
        self.obs_given_next = joint  # P(o-vars | a, s'), for rewards that depend on observations
        if observed:
            curr_shape = [c.n for _, c in self.states]
            sub = np.stack(np.unravel_index(np.arange(nS), curr_shape), axis=1)  # (nS, n_state_vars)
            obs_idx = [c.state for c in observed]
            extra = np.ravel_multi_index(tuple(sub[:, obs_idx].T), [c.n for c in observed])
            n_extra = int(np.prod([c.n for c in observed]))
            onehot = np.zeros((nS, n_extra))
            onehot[np.arange(nS), extra] = 1.0
            joint = (joint[:, :, :, None] * onehot[None, :, None, :]).reshape(nA, nS, nZ)
        return joint, observed

    def _rewards(self, T: np.ndarray) -> np.ndarray:
        """``R[s, a]``: the sum of the ``Func`` tables, folded into expectations over ``s'`` and ``o``."""
        nA, nS, axes = self.nA, self.nS, self.axes
        n_as, n_ass = len(self.act_vars) + len(self.states), len(self.act_vars) + 2 * len(self.states)
        R = np.zeros((nS, nA))
        rsec = self.root.find("RewardFunction")
        for j, fn in enumerate(rsec.findall("Func") if rsec is not None else [], start=1):
            where = f"{self.source}: <RewardFunction> Func {j}"
            vname = _text(fn.find("Var"))
            if self.reward_vars and vname not in self.reward_vars:
                raise DataFormatError(f"{where}: <Var> {vname!r} is not a declared RewardVar")
            vs = self._parents(fn, where, null_allowed=False)
            table = np.zeros([v.n for v in vs])
            _fill_table(table, vs, _params(fn, where), "ValueTable", where, probability=False)
            full = np.broadcast_to(
                self._lift(table, vs), [v.n if any(v is x for x in vs) else 1 for v in axes]
            )
            kinds = {v.kind for v in vs}
            if "obs" in kinds:
                r4 = np.broadcast_to(full, [v.n for v in axes]).reshape(nA, nS, nS, -1)
                ro = np.broadcast_to(self.obs_given_next[:, None, :, :], r4.shape)
                R += np.einsum("ast,asto->sa", T, ro * r4)
            elif "curr" in kinds:
                r3 = np.broadcast_to(full.reshape(full.shape[:n_ass]), [v.n for v in axes[:n_ass]])
                R += np.einsum("ast,ast->sa", T, r3.reshape(nA, nS, nS))
            else:
                r2 = np.broadcast_to(full.reshape(full.shape[:n_as]), [v.n for v in axes[:n_as]])
                R += r2.reshape(nA, nS).T
        return R


def _check_rows(table: np.ndarray, vs: list[_Var], vname: str, where: str) -> None:
    """Refuse a conditional table whose rows are not distributions; renormalise printed roundings in place."""
    sums = table.sum(axis=-1)
    off_one = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if np.any(off_one) or np.any(table < 0):
        bad = tuple(int(i) for i in np.argwhere(off_one)[0]) if np.any(off_one) else ()
        ctx = ", ".join(f"{v.name}={v.values[i]}" for v, i in zip(vs[:-1], bad, strict=False))
        raise DataFormatError(
            f"{where}: P({vname} | {ctx or 'parents'}) must be >= 0 and sum to 1"
            + (f" (sums to {sums[bad]:.6g})" if bad or len(vs) == 1 else "")
        )
    off = np.abs(sums - 1.0) > 1e-12  # renormalise printed roundings, keep exact rows bit-exact
    if np.any(off):
        table[off] /= sums[off][..., None]


def parse_pomdpx(text: str, source: str = "<string>") -> TabularPOMDP:
    """Parse the text of a ``.pomdpx`` file and flatten it into a :class:`TabularPOMDP`.

    Parameters
    ----------
    text : str
        The file's content.
    source : str, default "<string>"
        Its name, for messages.

    Raises
    ------
    DataFormatError
        Naming the file and the element (and entry) that was wrong.
    """
    try:
        root = ET.fromstring(text.lstrip())
    except ET.ParseError as exc:
        raise DataFormatError(f"{source}: not well-formed XML ({exc})") from exc
    if root.tag != "pomdpx":
        raise DataFormatError(f"{source}: root element is <{root.tag}>, expected <pomdpx>")
    return _Parser(root, source).run()


def read_pomdpx(path: str | Path) -> TabularPOMDP:
    """Read a ``.pomdpx`` file. See :func:`parse_pomdpx`."""
    return parse_pomdpx(*read_model_text(path))


def _names(names: Any, n: int, prefix: str) -> tuple[str, list[str]]:
    valid = valid_names(names, n)
    if valid is not None:
        return f"<ValueEnum>{escape(' '.join(valid))}</ValueEnum>", valid
    return f"<NumValues>{n}</NumValues>", [f"{prefix}{i}" for i in range(n)]


def _cond_prob(
    section: str, var: str, parents: str, P: np.ndarray, an: list[str], rows: list[str], cols: list[str]
) -> str:
    """One ``CondProb`` section with an ``Entry`` per nonzero ``P[a, row, col]``."""
    entries = "".join(
        f"<Entry><Instance>{an[a]} {rows[r]} {cols[c]}</Instance><ProbTable>{format_float(P[a, r, c])}"
        "</ProbTable></Entry>\n"
        for a in range(P.shape[0])
        for r, c in np.argwhere(P[a] != 0)
    )
    return (
        f'<{section}><CondProb><Var>{var}</Var><Parent>{parents}</Parent><Parameter type="TBL">\n'
        f"{entries}</Parameter></CondProb></{section}>\n"
    )


def write_pomdpx(
    model: TabularPOMDP, path: str | Path, *, description: str = "written by trim-pomdp"
) -> Path:
    """Write a flat ``.pomdpx`` (one state variable, one ``Entry`` per nonzero) that APPL ``pomdpsol`` reads.

    Parameters
    ----------
    model : TabularPOMDP
        The model; its names are written when they are valid identifiers, else numbered values.
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
    T, O, R = (np.asarray(x, float) for x in (model.T, model.O, model.R))
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
        w(_cond_prob("StateTransitionFunction", "state1", "action state0", T, an, sn, sn))
        w(_cond_prob("ObsFunction", "observation", "action state1", O, an, sn, on))
        w('<RewardFunction><Func><Var>reward</Var><Parent>action state0</Parent><Parameter type="TBL">\n')
        w(
            "".join(
                f"<Entry><Instance>{an[a]} {sn[s]}</Instance><ValueTable>{ff(R[s, a])}</ValueTable></Entry>\n"
                for s, a in np.argwhere(R != 0)
            )
        )
        w("</Parameter></Func></RewardFunction>\n</pomdpx>\n")
    return path
