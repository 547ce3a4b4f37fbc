"""ProcessBench: loading its items and labelling every step with a hidden class.

ProcessBench (Zheng et al., 2024; hub ``Qwen/ProcessBench``) holds 3,400 step-by-step solutions of math problems
with a human label per solution: the 0-based index of the earliest erroneous step, or ``-1`` when every step is
correct. TRIM labels every step with a hidden class (:data:`trim_pomdp.constants.HIDDEN_CLASSES`):

- ``S0`` (index 0): every step so far is correct (steps before the label, or every step when the label is -1);
- ``S2`` (index 2): the labelled step itself — the first error, prior steps correct;
- ``S1`` (index 1): any step after the first error.

Items with PRM scores, their files and the flat step table are in :mod:`trim_pomdp.datasets.scored`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp._internal.jsonl import iter_jsonl, read_text
from trim_pomdp.datasets._hub import load_hub_split
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError

__all__ = ["HUB_DATASET", "SPLITS", "ProcessBenchItem", "load_processbench", "parse_item", "step_classes"]

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

    def to_dict(self) -> dict[str, Any]:
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
    records: list[Any]
    if path.suffix == ".jsonl":
        records = [rec for _, rec in iter_jsonl(path, what="ProcessBench split", torn_tail="error")]
    else:
        try:
            records = json.loads(read_text(path, "ProcessBench split"))
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
    ds = load_hub_split(
        dataset,
        split,
        what=f"ProcessBench split {split!r}",
        offline_hint=(
            f"pass data_dir (--data-dir DIR on the command line): a folder holding {split}.json "
            "(the dataset/ folder of github.com/QwenLM/ProcessBench)"
        ),
    )
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
