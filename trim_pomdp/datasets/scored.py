"""Scored items: ProcessBench solutions with one PRM score per step, their JSONL files and the flat step table.

A *scored-items* file is JSONL: one ProcessBench item per line (its fields and ``"split"``) plus
``"prm_scores"``, one PRM probability in [0, 1] per step; optionally ``"simulated"`` (bool) and ``"prm"`` (the
scorer's name). Any other field of a record is kept (:attr:`ScoredItem.extra`) and written back by
:func:`save_scored_items`. Two of them mean something here: ``"final_answer_correct_known"`` and
``"step_labels_known"`` (both true when absent); where one is false, the matching core field
(``final_answer_correct``, or ``label``) is a placeholder, not data, and the functions that need it refuse such
items (:func:`require_step_labels`, :func:`require_outcomes`). Each ``(split, id)`` may appear once per file.

Scoring appends one batch of lines at a time, so an interrupted run leaves at most one torn last line, which the
readers here skip when asked and the next append removes.

:func:`select_splits` keeps the items of some splits (any names: ProcessBench's, PRMBench's, a user's),
:func:`step_table` flattens scored items into the per-step arrays that observation models are fitted on, and
:func:`processbench_metrics` computes ProcessBench's own accuracies from the scores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.jsonl import JsonlWriter, iter_jsonl
from trim_pomdp.datasets.processbench import ProcessBenchItem, parse_item, step_classes
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError

__all__ = [
    "ScoredItem",
    "StepTable",
    "load_scored_items",
    "predicted_error_index",
    "processbench_metrics",
    "require_outcomes",
    "require_step_labels",
    "save_scored_items",
    "scored_item_ids",
    "select_splits",
    "split_names",
    "step_table",
]

_WHAT = "scored-items file"
#: Record fields that are not :attr:`ScoredItem.extra` (the item's own fields and the scorer's).
_CORE_FIELDS = frozenset(
    (
        "id",
        "generator",
        "problem",
        "steps",
        "final_answer_correct",
        "label",
        "split",
        "prm_scores",
        "simulated",
        "prm",
    )
)


@dataclass
class ScoredItem:
    """A ProcessBench item with one PRM score per step.

    Attributes
    ----------
    item : ProcessBenchItem
    prm_scores : list of float
        P(step correct) from the PRM, one per step, in [0, 1].
    simulated : bool
        True when the scores come from :class:`~trim_pomdp.prm.synthetic.SyntheticPRM`.
    prm : str, optional
        Name of the scorer (model id or ``"synthetic"``).
    extra : dict
        Every other field of the record, kept as read and written back by :meth:`to_dict` (for instance
        ``final_answer_correct_known``, ``step_labels_known`` or a data set's own metadata).
    """

    item: ProcessBenchItem
    prm_scores: list[float]
    simulated: bool = False
    prm: str | None = field(default=None)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_scores(self.prm_scores, len(self.item.steps), f"scored item {self.item.id!r}")
        clash = sorted(set(self.extra) & _CORE_FIELDS)
        if clash:
            raise InvalidParameterError(f"scored item {self.item.id!r}: extra fields {clash} are core fields")

    @property
    def final_answer_correct_known(self) -> bool:
        """Whether ``item.final_answer_correct`` is data (the record's ``final_answer_correct_known``, default true)."""
        return self.extra.get("final_answer_correct_known", True) is not False

    @property
    def step_labels_known(self) -> bool:
        """Whether ``item.label`` is a real first-error label (the record's ``step_labels_known``, default true)."""
        return self.extra.get("step_labels_known", True) is not False

    def to_dict(self) -> dict[str, Any]:
        """The JSONL record: the item's fields, ``prm_scores``, ``simulated``, ``prm`` (if set) and the extras."""
        rec = self.item.to_dict()
        rec["prm_scores"] = [float(x) for x in self.prm_scores]
        rec["simulated"] = bool(self.simulated)
        if self.prm is not None:
            rec["prm"] = self.prm
        rec.update(self.extra)
        return rec


def _check_scores(scores: object, n_steps: int, where: str) -> None:
    if not isinstance(scores, (list, tuple, np.ndarray)):
        raise DataFormatError(
            f"{where}: field 'prm_scores' must be a list of numbers, got {type(scores).__name__}"
        )
    if len(scores) != n_steps:
        raise DataFormatError(
            f"{where}: field 'prm_scores' has {len(scores)} values but the item has {n_steps} steps "
            "(one score per step is required)"
        )
    for k, x in enumerate(scores):
        if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
            raise DataFormatError(f"{where}: field 'prm_scores'[{k}] = {x!r} is not a number")
        if math.isnan(float(x)):
            raise DataFormatError(f"{where}: field 'prm_scores'[{k}] is NaN")
        if not 0.0 <= float(x) <= 1.0:
            raise DataFormatError(f"{where}: field 'prm_scores'[{k}] = {float(x)!r} is outside [0, 1]")


def save_scored_items(
    path: str | os.PathLike[str], items: Iterable[ScoredItem], append: bool = False
) -> Path:
    """Write scored items as JSONL, one item per line.

    Parameters
    ----------
    path : path-like
        Output file; parent folders are created.
    items : iterable of ScoredItem
    append : bool
        Append to an existing file instead of overwriting it (for resumable scoring: each finished batch is
        appended and synced to disk, so an interrupted run loses at most the batch in flight). A torn last
        line left by an interrupted write is removed first, so the file stays valid JSONL.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    with JsonlWriter(path, append=append) as writer:
        for si in items:
            writer.write(si.to_dict())
    fd = os.open(path, os.O_RDONLY)  # one sync for the whole batch, not one per line
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _parse_scored(rec: dict[str, Any], where: str) -> ScoredItem:
    if "prm_scores" not in rec:
        raise DataFormatError(f"{where}: missing field 'prm_scores' (one PRM score per step)")
    if "split" not in rec:
        raise DataFormatError(f"{where}: missing field 'split'")
    item = parse_item(rec, rec["split"], source=where)
    _check_scores(rec["prm_scores"], len(item.steps), f"{where} (id {item.id!r})")
    simulated = rec.get("simulated", False)
    if not isinstance(simulated, bool):
        raise DataFormatError(f"{where}: field 'simulated' must be true/false, got {simulated!r}")
    prm = rec.get("prm")
    if prm is not None and not isinstance(prm, str):
        raise DataFormatError(f"{where}: field 'prm' must be a string, got {prm!r}")
    for flag in ("final_answer_correct_known", "step_labels_known"):
        if flag in rec and not isinstance(rec[flag], bool):
            raise DataFormatError(f"{where}: field {flag!r} must be true/false, got {rec[flag]!r}")
    extra = {k: v for k, v in rec.items() if k not in _CORE_FIELDS}
    return ScoredItem(item, [float(x) for x in rec["prm_scores"]], simulated=simulated, prm=prm, extra=extra)


def _complete_records(path: Path, skip_torn: bool) -> Iterable[tuple[int, dict[str, Any]]]:
    """``(line, record)`` of a scored-items file; with ``skip_torn``, without an unparsable torn last line.

    A last line that parses counts as complete even without its newline, as it does for the writer (which then
    only adds the newline before appending), so a resumed run neither loses nor repeats it.
    """
    yield from iter_jsonl(path, what=_WHAT, torn_tail="drop" if skip_torn else "error")


def load_scored_items(path: str | os.PathLike[str], *, ignore_torn_tail: bool = False) -> list[ScoredItem]:
    """Read a scored-items JSONL file written by :func:`save_scored_items` (or by any tool in that format).

    Parameters
    ----------
    path : path-like
    ignore_torn_tail : bool
        Skip a last line without a trailing newline (an interrupted write, which resumed scoring repairs)
        instead of failing on it.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DataFormatError
        A line is not valid JSON or misses a field, or its ``prm_scores`` has the wrong length, a NaN or a
        value outside [0, 1], or an item (split and id) appears twice, or the file is not UTF-8 text; the
        message names the file, the line number and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"scored-items file {path} does not exist (make one with `trim-pomdp score-processbench`)"
        )
    out: list[ScoredItem] = []
    seen: dict[tuple[str, str], int] = {}
    for lineno, rec in _complete_records(path, skip_torn=ignore_torn_tail):
        si = _parse_scored(rec, f"{path}, line {lineno}")
        key = (si.item.split, si.item.id)
        if key in seen:
            raise DataFormatError(
                f"{path}, line {lineno}: item {si.item.id!r} of split {si.item.split!r} already appeared on line "
                f"{seen[key]}; every item may appear once (a duplicate would be counted twice): remove one of them"
            )
        seen[key] = lineno
        out.append(si)
    return out


def scored_item_ids(path: str | os.PathLike[str]) -> set[tuple[str, str]]:
    """``(split, id)`` of every complete line of a scored-items file (empty if it does not exist).

    Used to resume scoring: a torn last line (an interrupted write) is ignored, and so are lines without an
    ``id`` or ``prm_scores``; a line that is not JSON raises :class:`DataFormatError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        return set()
    return {
        (str(rec.get("split", "")), str(rec["id"]))
        for _, rec in _complete_records(path, skip_torn=True)
        if "id" in rec and "prm_scores" in rec
    }


# ------------------------------------------------------------------------------------------- selecting the items


def split_names(items: Iterable[ScoredItem]) -> list[str]:
    """The splits of ``items``, in order of first appearance."""
    return list(dict.fromkeys(si.item.split for si in items))


def select_splits(
    items: Sequence[ScoredItem],
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    *,
    source: str = "the scored items",
) -> list[ScoredItem]:
    """The items of the splits ``include`` (default every split present) minus those in ``exclude``.

    Split names are whatever the items hold (ProcessBench's four, ``"prmbench"``, a user's own).

    Raises
    ------
    InvalidParameterError
        A split of ``include`` that no item has (the message lists the splits present), or a selection that
        leaves no item.
    """
    present = split_names(items)
    if include:
        missing = [s for s in include if s not in present]
        if missing:
            raise InvalidParameterError(
                f"{source} hold no items of split(s) {', '.join(map(repr, missing))}; the splits present are "
                f"{', '.join(map(repr, present)) or 'none (no items)'}"
            )
    keep = set(include or present) - set(exclude)
    chosen = [si for si in items if si.item.split in keep]
    if not chosen:
        raise InvalidParameterError(
            f"no items left in {source}: the splits present are {', '.join(map(repr, present)) or 'none'}"
            + (f" and {', '.join(map(repr, sorted(exclude)))} excluded" if exclude else "")
            + "; choose others with --split / --exclude-split"
        )
    return chosen


def _placeholders(items: Sequence[ScoredItem], flag: str) -> list[ScoredItem]:
    return [si for si in items if getattr(si, flag) is False]


def require_step_labels(items: Sequence[ScoredItem], source: str = "the scored items") -> None:
    """Raise :class:`DataFormatError` when an item's first-error label is a placeholder (``step_labels_known: false``).

    Step-supervised fitting reads each step's class from the label, so a placeholder label would silently label
    every step of a wrong solution as correct.
    """
    bad = _placeholders(items, "step_labels_known")
    if bad:
        raise DataFormatError(
            f"{source}: {len(bad)} of {len(items)} records say step_labels_known: false (first: id "
            f"{bad[0].item.id!r}), so their 'label' is a placeholder and cannot supervise a fit on step classes; "
            "fit them from final-answer correctness instead (--supervision outcome)"
        )


def require_outcomes(items: Sequence[ScoredItem], source: str = "the scored items") -> None:
    """Raise :class:`DataFormatError` when an item's final-answer verdict is a placeholder
    (``final_answer_correct_known: false``)."""
    bad = _placeholders(items, "final_answer_correct_known")
    if bad:
        raise DataFormatError(
            f"{source}: {len(bad)} of {len(items)} records say final_answer_correct_known: false (first: id "
            f"{bad[0].item.id!r}), so their 'final_answer_correct' is a placeholder, not a verdict; use data with "
            "graded final answers (or --supervision steps where the records have step labels)"
        )


# ------------------------------------------------------------------------------------------------------ step table


@dataclass
class StepTable:
    """Every step of a set of scored items as flat arrays (length = total number of steps).

    Attributes
    ----------
    r : ndarray of float
        PRM score of the step.
    m : ndarray of float
        ``min(r_1 … r_{t-1})`` over the item's earlier steps; NaN at ``t = 1``.
    z : ndarray of int
        Hidden class (0 = S0, 1 = S1, 2 = S2).
    t : ndarray of int
        1-based step index within the item.
    item_index : ndarray of int
        Index of the step's item in the list given to :func:`step_table`.
    split : ndarray of str
        The item's split.
    """

    r: np.ndarray
    m: np.ndarray
    z: np.ndarray
    t: np.ndarray
    item_index: np.ndarray
    split: np.ndarray

    def __len__(self) -> int:
        return int(self.r.shape[0])

    def counts(self) -> dict[str, int]:
        """Number of steps per hidden class, ``{"S0": n, "S1": n, "S2": n}``."""
        c = np.bincount(self.z, minlength=3)
        return {"S0": int(c[0]), "S1": int(c[1]), "S2": int(c[2])}

    def select(self, mask: np.ndarray) -> StepTable:
        """The rows where ``mask`` is true."""
        mask = np.asarray(mask)
        return StepTable(
            self.r[mask], self.m[mask], self.z[mask], self.t[mask], self.item_index[mask], self.split[mask]
        )


def step_table(scored_items: Sequence[ScoredItem]) -> StepTable:
    """Flatten scored items into a :class:`StepTable`.

    Parameters
    ----------
    scored_items : sequence of ScoredItem

    Returns
    -------
    StepTable
    """
    rs, ms, zs, ts, idx, splits = [], [], [], [], [], []
    for i, si in enumerate(scored_items):
        r = np.asarray(si.prm_scores, dtype=float)
        n = r.shape[0]
        if n != len(si.item.steps):
            raise DataFormatError(f"scored item {si.item.id!r}: {n} scores for {len(si.item.steps)} steps")
        m = np.full(n, np.nan)
        if n > 1:
            m[1:] = np.minimum.accumulate(r)[:-1]
        rs.append(r)
        ms.append(m)
        zs.append(step_classes(si.item.label, n))
        ts.append(np.arange(1, n + 1, dtype=np.int64))
        idx.append(np.full(n, i, dtype=np.int64))
        splits.append(np.full(n, si.item.split, dtype=object))
    if not rs:
        empty_f = np.zeros(0)
        empty_i = np.zeros(0, dtype=np.int64)
        return StepTable(
            empty_f, empty_f.copy(), empty_i, empty_i.copy(), empty_i.copy(), np.zeros(0, dtype=object)
        )
    return StepTable(
        r=np.concatenate(rs),
        m=np.concatenate(ms),
        z=np.concatenate(zs),
        t=np.concatenate(ts),
        item_index=np.concatenate(idx),
        split=np.concatenate(splits).astype(str),
    )


# ------------------------------------------------------------------------------------------------- the protocol


def predicted_error_index(scores: Sequence[float], threshold: float = 0.5) -> int:
    """ProcessBench's prediction from step scores: the first step with score < ``threshold``, or -1 if none."""
    s = np.asarray(scores, dtype=float)
    below = np.flatnonzero(s < threshold)
    return int(below[0]) if below.size else -1


def processbench_metrics(
    scored_items: Sequence[ScoredItem], threshold: float = 0.5
) -> dict[str, dict[str, float]]:
    """ProcessBench accuracies (Zheng et al. 2024, §4.1) per split.

    A sample is right iff its predicted earliest-error index (:func:`predicted_error_index`) equals its label.

    Returns
    -------
    dict
        ``{split: {"error": %, "correct": %, "f1": %, "n_error": int, "n_correct": int}}`` where "error" is the
        accuracy (in percent) on erroneous samples, "correct" on fully correct ones, and "f1" their harmonic
        mean.
    """
    tallies: dict[str, list[int]] = {}
    for si in scored_items:
        t = tallies.setdefault(si.item.split, [0, 0, 0, 0])  # err right, err n, corr right, corr n
        right = predicted_error_index(si.prm_scores, threshold) == si.item.label
        if si.item.label >= 0:
            t[0] += right
            t[1] += 1
        else:
            t[2] += right
            t[3] += 1
    out: dict[str, dict[str, float]] = {}
    for split, (er, en, cr, cn) in tallies.items():
        err = 100.0 * er / en if en else float("nan")
        corr = 100.0 * cr / cn if cn else float("nan")
        f1 = 2 * err * corr / (err + corr) if en and cn and (err + corr) > 0 else float("nan")
        out[split] = {"error": err, "correct": corr, "f1": f1, "n_error": en, "n_correct": cn}
    return out
