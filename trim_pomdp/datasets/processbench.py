"""ProcessBench loading, step labelling, scored-items files and the flat step table.

ProcessBench (Zheng et al., 2024; hub ``Qwen/ProcessBench``) holds 3,400 step-by-step solutions of math problems
with a human label per solution: the 0-based index of the earliest erroneous step, or ``-1`` when every step is
correct. TRIM labels every step with a hidden class (:data:`trim_pomdp.constants.HIDDEN_CLASSES`):

- ``S0`` (index 0): every step so far is correct (steps before the label, or every step when the label is -1);
- ``S2`` (index 2): the labelled step itself — the first error, prior steps correct;
- ``S1`` (index 1): any step after the first error.

A *scored-items* file is JSONL: one ProcessBench item per line (its fields) plus ``"prm_scores"``, one PRM
probability in [0, 1] per step; optionally ``"simulated"`` (bool) and ``"prm"`` (the scorer's name).
:func:`step_table` flattens scored items into the per-step arrays that observation models are fitted on.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import BackendUnavailableError, DataFormatError, InvalidParameterError

__all__ = [
    "HUB_DATASET",
    "SPLITS",
    "ProcessBenchItem",
    "ScoredItem",
    "StepTable",
    "load_processbench",
    "load_scored_items",
    "parse_item",
    "predicted_error_index",
    "processbench_metrics",
    "save_scored_items",
    "scored_item_ids",
    "step_classes",
    "step_table",
]

#: The four ProcessBench splits, in the order of the paper's tables.
SPLITS: tuple[str, ...] = ("gsm8k", "math", "olympiadbench", "omnimath")

#: Hugging Face hub dataset id of ProcessBench.
HUB_DATASET = "Qwen/ProcessBench"

_ITEM_FIELDS = ("id", "generator", "problem", "steps", "final_answer_correct", "label")


@dataclass
class ProcessBenchItem:
    """One ProcessBench solution.

    Attributes
    ----------
    id : str
        Item id, e.g. ``"gsm8k-0"``.
    generator : str
        The model that wrote the solution.
    problem : str
        The problem statement.
    steps : list of str
        The solution's steps.
    final_answer_correct : bool
        Whether the final answer is right (it can be right despite an erroneous step).
    label : int
        0-based index of the earliest erroneous step; ``-1`` when every step is correct.
    split : str
        One of :data:`SPLITS` (or any name for user data).
    """

    id: str
    generator: str
    problem: str
    steps: list[str]
    final_answer_correct: bool
    label: int
    split: str

    @property
    def n_steps(self) -> int:
        """Number of steps."""
        return len(self.steps)

    @property
    def classes(self) -> np.ndarray:
        """Hidden class of every step (see :func:`step_classes`)."""
        return step_classes(self.label, len(self.steps))

    def to_dict(self) -> dict:
        """The item as a JSON-ready dict (ProcessBench's fields plus ``split``)."""
        return {
            "id": self.id,
            "generator": self.generator,
            "problem": self.problem,
            "steps": list(self.steps),
            "final_answer_correct": bool(self.final_answer_correct),
            "label": int(self.label),
            "split": self.split,
        }


def step_classes(label: int, n_steps: int) -> np.ndarray:
    """Hidden class of every step of a solution from its ProcessBench label.

    Parameters
    ----------
    label : int
        0-based index of the earliest erroneous step, or ``-1`` if all steps are correct.
    n_steps : int
        Number of steps.

    Returns
    -------
    ndarray of int, shape (n_steps,)
        0 (S0) before the label, 2 (S2) at the label, 1 (S1) after it; all 0 when ``label == -1``.
    """
    label = int(label)
    n_steps = int(n_steps)
    if n_steps < 0:
        raise InvalidParameterError(f"n_steps must be >= 0, got {n_steps}")
    if label != -1 and not 0 <= label < n_steps:
        raise InvalidParameterError(f"label must be -1 or a step index in [0, {n_steps - 1}], got {label}")
    z = np.zeros(n_steps, dtype=np.int64)
    if label >= 0:
        z[label] = 2
        z[label + 1 :] = 1
    return z


def _where(source: str, index: int | None, item_id: object = None) -> str:
    parts = [source]
    if index is not None:
        parts.append(f"item {index}")
    if item_id is not None:
        parts.append(f"(id {item_id!r})")
    return " ".join(parts)


def parse_item(
    record: object, split: str, *, source: str = "<data>", index: int | None = None
) -> ProcessBenchItem:
    """Validate one raw ProcessBench record (a dict) and turn it into a :class:`ProcessBenchItem`.

    Raises
    ------
    DataFormatError
        Naming ``source``, the item index/id and the offending field.
    """
    if not isinstance(record, dict):
        raise DataFormatError(f"{_where(source, index)}: expected a JSON object, got {type(record).__name__}")
    item_id = record.get("id")
    where = _where(source, index, item_id)
    missing = [f for f in _ITEM_FIELDS if f not in record]
    if missing:
        raise DataFormatError(
            f"{where}: missing field(s) {missing}; a ProcessBench item needs {list(_ITEM_FIELDS)}"
        )
    steps = record["steps"]
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise DataFormatError(f"{where}: field 'steps' must be a list of strings")
    if len(steps) == 0:
        raise DataFormatError(f"{where}: field 'steps' is empty")
    label = record["label"]
    if isinstance(label, bool) or not isinstance(label, int):
        raise DataFormatError(f"{where}: field 'label' must be an integer, got {label!r}")
    if not (label == -1 or 0 <= label < len(steps)):
        raise DataFormatError(
            f"{where}: field 'label' = {label} is outside [-1, {len(steps) - 1}] for {len(steps)} steps"
        )
    fac = record["final_answer_correct"]
    if not isinstance(fac, bool):
        raise DataFormatError(f"{where}: field 'final_answer_correct' must be true/false, got {fac!r}")
    for name in ("id", "generator", "problem"):
        if not isinstance(record[name], str):
            raise DataFormatError(
                f"{where}: field {name!r} must be a string, got {type(record[name]).__name__}"
            )
    return ProcessBenchItem(
        id=record["id"],
        generator=record["generator"],
        problem=record["problem"],
        steps=list(steps),
        final_answer_correct=fac,
        label=int(label),
        split=str(record.get("split", split)),
    )


def _check_splits(splits: str | Sequence[str]) -> list[str]:
    if isinstance(splits, str):
        splits = [splits]
    splits = list(splits)
    if not splits:
        raise InvalidParameterError(f"splits is empty; choose from {list(SPLITS)}")
    return splits


def _load_local_split(data_dir: Path, split: str) -> list[ProcessBenchItem]:
    path = data_dir / f"{split}.json"
    if not path.is_file():
        alt = data_dir / f"{split}.jsonl"
        if alt.is_file():
            path = alt
        else:
            raise FileNotFoundError(
                f"ProcessBench split {split!r} not found: expected {path} (or {alt.name}). "
                f"Point --data-dir at a folder with {', '.join(s + '.json' for s in SPLITS)}, "
                f"or omit it to download {HUB_DATASET} from the Hugging Face hub."
            )
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        records = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path} line {lineno}: invalid JSON ({exc.msg})") from exc
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})"
            ) from exc
        if not isinstance(records, list):
            raise DataFormatError(
                f"{path}: expected a JSON list of ProcessBench items, got {type(records).__name__}"
            )
    return [parse_item(rec, split, source=str(path), index=i) for i, rec in enumerate(records)]


def _load_hub_split(split: str, dataset: str = HUB_DATASET) -> list[ProcessBenchItem]:
    datasets = require("datasets", "data", "loading ProcessBench from the Hugging Face hub")
    try:
        ds = datasets.load_dataset(dataset, split=split)
    except ValueError as exc:  # unknown split
        raise InvalidParameterError(f"{dataset} has no split {split!r}: {exc}") from exc
    except ConnectionError as exc:  # offline, or the hub is down
        raise BackendUnavailableError(
            f"could not load ProcessBench split {split!r} from the Hugging Face hub ({exc}); without network, "
            f"pass data_dir (--data-dir DIR on the command line): a folder holding {split}.json "
            f"(the dataset/ folder of github.com/QwenLM/ProcessBench)"
        ) from exc
    source = f"{dataset}[{split}]"
    return [parse_item(dict(rec), split, source=source, index=i) for i, rec in enumerate(ds)]


def load_processbench(
    splits: str | Sequence[str] = SPLITS, data_dir: str | os.PathLike | None = None
) -> list[ProcessBenchItem]:
    """Load ProcessBench items.

    Parameters
    ----------
    splits : str or sequence of str
        Splits to load, default all four (:data:`SPLITS`).
    data_dir : path-like, optional
        A folder holding ``<split>.json`` (a JSON list of items, as in the ProcessBench repository) or
        ``<split>.jsonl``. When omitted, the splits are loaded from the hub dataset ``Qwen/ProcessBench`` through
        ``datasets`` (installed by the ``data`` extra).

    Returns
    -------
    list of ProcessBenchItem
        In split order, then file order.

    Raises
    ------
    FileNotFoundError
        A split's file is missing from ``data_dir``.
    DataFormatError
        A file or item is malformed (the message names the file, the item and the field).
    """
    out: list[ProcessBenchItem] = []
    for split in _check_splits(splits):
        if data_dir is not None:
            out.extend(_load_local_split(Path(data_dir), split))
        else:
            out.extend(_load_hub_split(split))
    return out


# --------------------------------------------------------------------------------------------------- scored items


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
    """

    item: ProcessBenchItem
    prm_scores: list[float]
    simulated: bool = False
    prm: str | None = field(default=None)

    def __post_init__(self) -> None:
        _check_scores(self.prm_scores, len(self.item.steps), f"scored item {self.item.id!r}")

    def to_dict(self) -> dict:
        """The JSONL record: the item's fields plus ``prm_scores``, ``simulated`` and (if set) ``prm``."""
        rec = self.item.to_dict()
        rec["prm_scores"] = [float(x) for x in self.prm_scores]
        rec["simulated"] = bool(self.simulated)
        if self.prm is not None:
            rec["prm"] = self.prm
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


def save_scored_items(path: str | os.PathLike, items: Iterable[ScoredItem], append: bool = False) -> Path:
    """Write scored items as JSONL, one item per line.

    Parameters
    ----------
    path : path-like
        Output file; parent folders are created.
    items : iterable of ScoredItem
    append : bool
        Append to an existing file instead of overwriting it (for resumable scoring: each finished batch is
        appended and flushed, so an interrupted run loses at most the batch in flight).

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Repair a torn last line (an interrupted write) before appending, so the file stays valid JSONL.
    if append and path.exists() and path.stat().st_size > 0:
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
        if last != b"\n":
            _drop_torn_tail(path)
    with path.open("a" if append else "w", encoding="utf-8") as fh:
        for si in items:
            fh.write(json.dumps(si.to_dict(), ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return path


def _drop_torn_tail(path: Path) -> None:
    data = path.read_bytes()
    cut = data.rfind(b"\n")
    path.write_bytes(data[: cut + 1] if cut >= 0 else b"")


def _parse_scored_line(line: str, where: str) -> ScoredItem:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(rec, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if "prm_scores" not in rec:
        raise DataFormatError(f"{where}: missing field 'prm_scores' (one PRM score per step)")
    if "split" not in rec:
        raise DataFormatError(f"{where}: missing field 'split'")
    item = parse_item(rec, rec["split"], source=where)
    _check_scores(rec["prm_scores"], len(item.steps), f"{where} (id {item.id!r})")
    simulated = rec.get("simulated", False)
    if not isinstance(simulated, bool):
        raise DataFormatError(f"{where}: field 'simulated' must be true/false, got {simulated!r}")
    return ScoredItem(item, [float(x) for x in rec["prm_scores"]], simulated=simulated, prm=rec.get("prm"))


def load_scored_items(path: str | os.PathLike, *, ignore_torn_tail: bool = False) -> list[ScoredItem]:
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
        A line is not valid JSON or misses a field, or its ``prm_scores`` has the wrong length, a NaN or a value
        outside [0, 1]; the message names the file, the line number and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"scored-items file {path} does not exist (make one with `trim-pomdp score-processbench`)"
        )
    out: list[ScoredItem] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if ignore_torn_tail and not line.endswith("\n"):
                break
            if not line.strip():
                continue
            out.append(_parse_scored_line(line, f"{path} line {lineno}"))
    return out


def scored_item_ids(path: str | os.PathLike) -> set[tuple[str, str]]:
    """``(split, id)`` of every complete line of a scored-items file (empty if it does not exist).

    Used to resume scoring: a torn last line (an interrupted write) is ignored.
    """
    path = Path(path)
    done: set[tuple[str, str]] = set()
    if not path.is_file():
        return done
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "id" in rec and "prm_scores" in rec:
                done.add((str(rec.get("split", "")), str(rec["id"])))
    return done


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
        accuracy (in percent) on erroneous samples, "correct" on fully correct ones, and "f1" their harmonic mean.
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
