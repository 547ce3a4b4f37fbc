"""The per-step arrays an observation model is fitted on, checked once.

Fitting takes any *StepTable-like* object: attributes ``r`` (the step's PRM score), ``m`` (the minimum score of
the earlier steps, NaN at ``t = 1``), ``z`` (hidden class 0, 1 or 2), ``t`` (1-based step index) and optionally
``item_index`` (which solution each step belongs to, for folds by item). :class:`~trim_pomdp.datasets.scored.StepTable`
is one; :func:`table_arrays` validates such an object and returns its arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError

__all__ = ["StepArrays", "table_arrays"]


@dataclass
class StepArrays:
    """Validated per-step arrays (see the module docstring); ``z`` and ``t`` are int64."""

    r: np.ndarray
    m: np.ndarray
    z: np.ndarray
    t: np.ndarray
    item_index: np.ndarray | None


def table_arrays(table: Any) -> StepArrays:
    """Validate a StepTable-like object (attributes ``r, m, z, t`` and optionally ``item_index``).

    Raises
    ------
    InvalidParameterError
        On mismatched lengths, scores outside [0, 1], unknown classes, ``t < 1`` or a missing ``m`` at
        ``t >= 2``.
    """
    try:
        r = np.asarray(table.r, dtype=float).ravel()
        m = np.asarray(table.m, dtype=float).ravel()
        z = np.asarray(table.z).ravel()
        t = np.asarray(table.t).ravel()
    except AttributeError as exc:
        raise InvalidParameterError(
            f"the step table must have attributes r, m, z, t (like StepTable from step_table()); {exc}"
        ) from exc
    item = getattr(table, "item_index", None)
    item = None if item is None else np.asarray(item).ravel()
    n = r.size
    for name, arr in (("m", m), ("z", z), ("t", t)) + ((("item_index", item),) if item is not None else ()):
        if arr.size != n:
            raise InvalidParameterError(f"step table: {name} has {arr.size} entries but r has {n}")
    if n == 0:
        raise InvalidParameterError("step table is empty: no scored steps to fit")
    if not np.all(np.isfinite(r)) or r.min() < 0 or r.max() > 1:
        bad = int(np.flatnonzero(~(np.isfinite(r) & (r >= 0) & (r <= 1)))[0])
        raise InvalidParameterError(f"step table: r[{bad}] = {r[bad]!r} is not a probability in [0, 1]")
    if not np.all(np.isin(z, (0, 1, 2))):
        bad = int(np.flatnonzero(~np.isin(z, (0, 1, 2)))[0])
        raise InvalidParameterError(f"step table: z[{bad}] = {z[bad]!r}; classes are 0 (S0), 1 (S1), 2 (S2)")
    if not np.all(t >= 1):
        bad = int(np.flatnonzero(~(t >= 1))[0])
        raise InvalidParameterError(f"step table: t[{bad}] = {t[bad]!r}; steps are 1-based")
    later = t >= 2
    ok_m = np.isfinite(m) & (m >= 0) & (m <= 1)
    if not np.all(ok_m[later]):
        bad = int(np.flatnonzero(later & ~ok_m)[0])
        raise InvalidParameterError(f"step table: m[{bad}] = {m[bad]!r} at t = {t[bad]} must be in [0, 1]")
    return StepArrays(r, m, z.astype(np.int64), t.astype(np.int64), item)
