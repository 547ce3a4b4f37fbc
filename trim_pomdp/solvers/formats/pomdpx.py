"""Read and write APPL ``.pomdpx`` files (factored XML), flattening factored models into a tabular POMDP.

Supported (everything the APPL examples use with ``type="TBL"`` parameters): ``Discount``; ``StateVar``
(``vnamePrev``/``vnameCurr``, ``fullyObs``, ``NumValues`` or ``ValueEnum``), ``ObsVar``, ``ActionVar``,
``RewardVar``; ``InitialStateBelief``, ``StateTransitionFunction`` and ``ObsFunction`` as ``CondProb``s and
``RewardFunction`` as ``Func``s (several add up); ``Entry``/``Instance`` with value names or indices, ``*``
(every value, one number broadcast) and ``-`` (every value, one number per combination, row-major in the order
of
the dashes), ``ProbTable``/``ValueTable`` with numbers, ``identity`` or ``uniform``. Later entries override
earlier ones; anything not given is 0. The decision-diagram ``DD`` parameter type is not supported (APPL does
not support it either).

Flattening: the joint state is the product of the state variables (first declared varies slowest), the joint
observation the product of the observation variables; a ``fullyObs="true"`` state variable is appended to the
observation (its next value is observed exactly), which keeps the flat model equivalent to the
mixed-observability
one except that its *initial* value is not observed. Rewards that depend on next-state or observation
variables
are folded into their expectation ``R[s, a]``.

The writer emits flat models with one state variable (``ValueEnum`` of the model's names when they are valid
identifiers, else ``NumValues``) and one ``Entry`` per nonzero, like POMDPXFiles.jl.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.formats.cassandra import ROW_SUM_TOLERANCE, format_float
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = ["parse_pomdpx", "read_pomdpx", "write_pomdpx"]

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


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


def parse_pomdpx(text: str, source: str = "<string>") -> TabularPOMDP:
    """Parse the text of a ``.pomdpx`` file and flatten it into a :class:`TabularPOMDP`.

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
    try:
        discount = float(_text(root.find("Discount")))
    except ValueError:
        raise DataFormatError(f"{source}: <Discount> must be a number in (0, 1]") from None
    if not 0.0 < discount <= 1.0:
        raise DataFormatError(f"{source}: <Discount> must lie in (0, 1], got {discount}")
    var_el = root.find("Variable")
    if var_el is None:
        raise DataFormatError(f"{source}: missing <Variable>")
    variables: dict[str, _Var] = {}
    states: list[tuple[_Var, _Var]] = []
    obs_vars: list[_Var] = []
    act_vars: list[_Var] = []
    reward_vars: list[str] = []
    for el in var_el:
        where = f"{source}: <{el.tag}>"
        if el.tag == "StateVar":
            prev, curr = el.get("vnamePrev"), el.get("vnameCurr")
            if not prev or not curr:
                raise DataFormatError(f"{where}: needs vnamePrev and vnameCurr attributes")
            vals = _values(el, "s", where)
            fo = el.get("fullyObs", "false").strip().lower() == "true"
            pv = _Var(prev, "prev", vals, len(states), fo)
            cv = _Var(curr, "curr", vals, len(states), fo)
            states.append((pv, cv))
            variables[prev], variables[curr] = pv, cv
        elif el.tag == "ObsVar":
            v = _Var(el.get("vname", ""), "obs", _values(el, "o", where))
            obs_vars.append(v)
            variables[v.name] = v
        elif el.tag == "ActionVar":
            v = _Var(el.get("vname", ""), "action", _values(el, "a", where))
            act_vars.append(v)
            variables[v.name] = v
        elif el.tag == "RewardVar":
            reward_vars.append(el.get("vname", ""))
        else:
            raise DataFormatError(f"{where}: unknown variable kind (StateVar, ObsVar, ActionVar, RewardVar)")
    if not states or not act_vars:
        raise DataFormatError(f"{source}: needs at least one <StateVar> and one <ActionVar>")

    # Joint axes: actions..., prev states..., curr states..., observations...
    axes = act_vars + [p for p, _ in states] + [c for _, c in states] + obs_vars
    ax_of = {v.name: i for i, v in enumerate(axes)}

    def lift(table: np.ndarray, vs: list[_Var]) -> np.ndarray:
        """Broadcastable view of ``table`` (axes ``vs``) over the joint axes."""
        order = sorted(range(len(vs)), key=lambda i: ax_of[vs[i].name])
        t = np.transpose(table, order)
        shape = [1] * len(axes)
        for i in order:
            shape[ax_of[vs[i].name]] = vs[i].n
        return t.reshape(shape)

    def cond_probs(section: str, kind: str) -> dict[str, tuple[np.ndarray, list[_Var]]]:
        sec = root.find(section)
        if sec is None:
            raise DataFormatError(f"{source}: missing <{section}>")
        out = {}
        for j, cp in enumerate(sec.findall("CondProb"), start=1):
            where = f"{source}: <{section}> CondProb {j}"
            vname = _text(cp.find("Var"))
            if vname not in variables or variables[vname].kind != kind:
                raise DataFormatError(f"{where}: <Var> {vname!r} is not a declared {kind} variable")
            parents_txt = _text(cp.find("Parent")).split()
            parents = [] if parents_txt in ([], ["null"]) else parents_txt
            for p in parents:
                if p not in variables:
                    raise DataFormatError(f"{where}: parent {p!r} is not a declared variable")
            vs = [variables[p] for p in parents] + [variables[vname]]
            table = np.zeros([v.n for v in vs])
            _fill_table(table, vs, _params(cp, where), "ProbTable", where, probability=True)
            sums = table.sum(axis=-1)
            if np.any(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE) or np.any(table < 0):
                bad = (
                    tuple(int(i) for i in np.argwhere(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)[0])
                    if np.any(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
                    else ()
                )
                ctx = ", ".join(f"{v.name}={v.values[i]}" for v, i in zip(vs[:-1], bad, strict=False))
                raise DataFormatError(
                    f"{where}: P({vname} | {ctx or 'parents'}) must be >= 0 and sum to 1"
                    + (f" (sums to {sums[bad]:.6g})" if bad or not parents else "")
                )
            off = np.abs(sums - 1.0) > 1e-12  # renormalise printed roundings, keep exact rows bit-exact
            if np.any(off):
                table[off] /= sums[off][..., None]
            out[vname] = (table, vs)
        return out

    nS = int(np.prod([p.n for p, _ in states]))
    nA = int(np.prod([a.n for a in act_vars]))
    # initial belief: product over prev state variables
    init = cond_probs("InitialStateBelief", "prev")
    b = np.ones([p.n for p, _ in states])
    prev_axes = {p.name: i for i, (p, _) in enumerate(states)}
    for p, _ in states:
        if p.name not in init:
            raise DataFormatError(f"{source}: <InitialStateBelief> has no CondProb for {p.name!r}")
        table, vs = init[p.name]
        if any(v.kind != "prev" for v in vs):
            raise DataFormatError(
                f"{source}: <InitialStateBelief> CondProb of {p.name!r} may only depend on "
                "other state variables"
            )
        order = sorted(range(len(vs)), key=lambda i: prev_axes[vs[i].name])
        shape = [1] * len(states)
        for i in order:
            shape[prev_axes[vs[i].name]] = vs[i].n
        b = b * np.transpose(table, order).reshape(shape)
    b0 = b.reshape(-1)

    trans = cond_probs("StateTransitionFunction", "curr")
    joint_t = np.ones([v.n if v.kind in ("action", "prev", "curr") else 1 for v in axes])
    for _, c in states:
        if c.name not in trans:
            raise DataFormatError(f"{source}: <StateTransitionFunction> has no CondProb for {c.name!r}")
        table, vs = trans[c.name]
        if any(v.kind == "obs" for v in vs):
            raise DataFormatError(f"{source}: transition of {c.name!r} cannot depend on observations")
        joint_t = joint_t * lift(table, vs)
    T = joint_t.reshape(nA, nS, nS)

    obs = cond_probs("ObsFunction", "obs") if obs_vars else {}
    observed = [c for _, c in states if c.fully_observed]
    obs_shape = [v.n for v in obs_vars] + [c.n for c in observed]
    nZ = int(np.prod(obs_shape)) if obs_shape else 1
    joint_o = np.ones([v.n if v.kind in ("action", "curr", "obs") else 1 for v in axes])
    for v in obs_vars:
        if v.name not in obs:
            raise DataFormatError(f"{source}: <ObsFunction> has no CondProb for {v.name!r}")
        table, vs = obs[v.name]
        if any(x.kind == "prev" for x in vs):
            raise DataFormatError(
                f"{source}: observation {v.name!r} may depend only on actions and next states"
            )
        joint_o = joint_o * lift(table, vs)
    joint_o = joint_o.reshape(nA, nS, -1)  # (a, s', o-vars)
    if observed:
        curr_shape = [c.n for _, c in states]
        sub = np.stack(np.unravel_index(np.arange(nS), curr_shape), axis=1)  # (nS, n_state_vars)
        obs_idx = [c.state for c in observed]
        extra = np.ravel_multi_index(tuple(sub[:, obs_idx].T), [c.n for c in observed])
        n_extra = int(np.prod([c.n for c in observed]))
        onehot = np.zeros((nS, n_extra))
        onehot[np.arange(nS), extra] = 1.0
        joint_o = (joint_o[:, :, :, None] * onehot[None, :, None, :]).reshape(nA, nS, nZ)
    O = joint_o

    R = np.zeros((nS, nA))
    rsec = root.find("RewardFunction")
    for j, fn in enumerate(rsec.findall("Func") if rsec is not None else [], start=1):
        where = f"{source}: <RewardFunction> Func {j}"
        vname = _text(fn.find("Var"))
        if reward_vars and vname not in reward_vars:
            raise DataFormatError(f"{where}: <Var> {vname!r} is not a declared RewardVar")
        parents = _text(fn.find("Parent")).split()
        for p in parents:
            if p not in variables:
                raise DataFormatError(f"{where}: parent {p!r} is not a declared variable")
        vs = [variables[p] for p in parents]
        table = np.zeros([v.n for v in vs])
        _fill_table(table, vs, _params(fn, where), "ValueTable", where, probability=False)
        full = np.broadcast_to(lift(table, vs), [v.n if any(v is x for x in vs) else 1 for v in axes])
        kinds = {v.kind for v in vs}
        if "obs" in kinds:
            shape = [v.n for v in axes]
            r4 = np.broadcast_to(full, shape).reshape(nA, nS, nS, -1)
            ro = np.broadcast_to(joint_o_raw(joint_t, obs_vars, obs, axes, lift, nA, nS), r4.shape)
            R += np.einsum("ast,asto->sa", T, ro * r4)
        elif "curr" in kinds:
            r3 = np.broadcast_to(
                full.reshape(full.shape[: len(act_vars) + 2 * len(states)]),
                [v.n for v in axes[: len(act_vars) + 2 * len(states)]],
            ).reshape(nA, nS, nS)
            R += np.einsum("ast,ast->sa", T, r3)
        else:
            r2 = np.broadcast_to(
                full.reshape(full.shape[: len(act_vars) + len(states)]),
                [v.n for v in axes[: len(act_vars) + len(states)]],
            ).reshape(nA, nS)
            R += r2.T

    def product_names(vs: list[_Var]) -> list[str] | None:
        if not vs:
            return None
        if len(vs) == 1:
            return list(vs[0].values)
        return ["_".join(c) for c in itertools.product(*[v.values for v in vs])]

    obs_name_vars = obs_vars + observed
    return TabularPOMDP(
        T=np.ascontiguousarray(T),
        O=np.ascontiguousarray(O),
        R=R,
        b0=b0,
        discount=discount,
        state_names=product_names([p for p, _ in states]),
        action_names=product_names(act_vars),
        observation_names=product_names(obs_name_vars) if obs_name_vars else ["none"],
        meta={
            "source": source,
            "format": "pomdpx",
            "state_variables": [p.name for p, _ in states],
            "fully_observed": [c.name for c in observed],
        },
    )


def joint_o_raw(joint_t, obs_vars, obs, axes, lift, nA, nS):
    """P(o-vars | a, s') broadcast over (a, s, s', o) for rewards that depend on observations."""
    joint = np.ones([v.n if v.kind in ("action", "curr", "obs") else 1 for v in axes])
    for v in obs_vars:
        table, vs = obs[v.name]
        joint = joint * lift(table, vs)
    joint = joint.reshape(nA, nS, -1)
    return joint[:, None, :, :]


def read_pomdpx(path: str | Path) -> TabularPOMDP:
    """Read a ``.pomdpx`` file. See :func:`parse_pomdpx`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataFormatError(f"cannot read {path}: {exc}") from exc
    return parse_pomdpx(text, str(path))


def _names(names, n: int, prefix: str) -> tuple[str, list[str]]:
    valid = (
        names is not None
        and len(names) == n
        and len(set(map(str, names))) == n
        and all(_NAME_RE.match(str(x)) for x in names)
    )
    if valid:
        names = [str(x) for x in names]
        return f"<ValueEnum>{escape(' '.join(names))}</ValueEnum>", names
    return f"<NumValues>{n}</NumValues>", [f"{prefix}{i}" for i in range(n)]


def write_pomdpx(
    model: TabularPOMDP, path: str | Path, *, description: str = "written by trim-pomdp"
) -> Path:
    """Write a flat ``.pomdpx`` (one state variable, one ``Entry`` per nonzero) that APPL ``pomdpsol`` reads.

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
        w(
            "<StateTransitionFunction><CondProb><Var>state1</Var><Parent>action state0</Parent>"
            '<Parameter type="TBL">\n'
        )
        for a in range(A):
            w(
                "".join(
                    f"<Entry><Instance>{an[a]} {sn[s]} {sn[sp]}</Instance><ProbTable>{ff(T[a, s, sp])}"
                    "</ProbTable></Entry>\n"
                    for s, sp in np.argwhere(T[a] != 0)
                )
            )
        w("</Parameter></CondProb></StateTransitionFunction>\n")
        w(
            "<ObsFunction><CondProb><Var>observation</Var><Parent>action state1</Parent>"
            '<Parameter type="TBL">\n'
        )
        for a in range(A):
            w(
                "".join(
                    f"<Entry><Instance>{an[a]} {sn[sp]} {on[o]}</Instance><ProbTable>{ff(O[a, sp, o])}"
                    "</ProbTable></Entry>\n"
                    for sp, o in np.argwhere(O[a] != 0)
                )
            )
        w("</Parameter></CondProb></ObsFunction>\n")
        w('<RewardFunction><Func><Var>reward</Var><Parent>action state0</Parent><Parameter type="TBL">\n')
        w(
            "".join(
                f"<Entry><Instance>{an[a]} {sn[s]}</Instance><ValueTable>{ff(R[s, a])}</ValueTable></Entry>\n"
                for s, a in np.argwhere(R != 0)
            )
        )
        w("</Parameter></Func></RewardFunction>\n</pomdpx>\n")
    return path
