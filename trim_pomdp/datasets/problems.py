"""Loaders for the math evaluation sets used by ``trim-pomdp run``.

Every loader returns a list of :class:`Problem` (``id``, ``problem``, ``answer``). Sources, in order:

1. a local folder (``data_dir``, or the environment variable ``TRIM_POMDP_EVAL_DATA``) holding the sets as
   files (``math500.jsonl``, ``aime24_test.jsonl``, ``aime_1983_2024.csv``, ``gsm8k_test.jsonl``,
   ``minerva_math_test.jsonl``, ``olympiadbench_test.jsonl``; see :data:`LOCAL_FILES`);
2. otherwise the Hugging Face hub through ``datasets`` (``pip install 'trim-pomdp[data]'``), see :data:`HUB`.

Any other JSONL / JSON / CSV file can be given as a path (``FILE``): each row needs a problem field
(``problem``/``question``/``Question``) and an answer field (``answer``/``final_answer``/``Answer``); a
GSM8K-style ``#### N`` tail or a ``\\boxed{}`` in ``solution`` also work.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trim_pomdp._internal.jsonl import iter_jsonl, read_text
from trim_pomdp.datasets._hub import load_hub_split
from trim_pomdp.datasets.answers import extract_boxed
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError

__all__ = ["DATASETS", "HUB", "Problem", "load_dataset", "load_problems_file", "local_dataset_file", "shard"]

DATASETS = ("math500", "aime", "aime24", "gsm8k", "minerva", "olympiadbench")

#: local file names tried for each dataset, first match wins
LOCAL_FILES: dict[str, tuple[str, ...]] = {
    "math500": ("math500.jsonl", "math500/test.jsonl"),
    "aime": ("aime_1983_2024.csv", "aime24_test.jsonl", "aime24/test.jsonl"),
    "aime24": ("aime24_test.jsonl", "aime24/test.jsonl"),
    "gsm8k": ("gsm8k_test.jsonl", "gsm8k/test.jsonl"),
    "minerva": ("minerva_math_test.jsonl", "minerva_math/test.jsonl"),
    "olympiadbench": ("olympiadbench_test.jsonl", "olympiadbench/test.jsonl"),
}

#: hub sources: (dataset path, config, split)
HUB: dict[str, tuple[str, str | None, str]] = {
    "math500": ("HuggingFaceH4/MATH-500", None, "test"),
    "aime": ("HuggingFaceH4/aime_2024", None, "train"),
    "aime24": ("HuggingFaceH4/aime_2024", None, "train"),
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "minerva": ("math-ai/minervamath", None, "test"),
    "olympiadbench": ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"),
}


@dataclass(frozen=True)
class Problem:
    """One evaluation problem: a stable ``id`` (unique in its dataset), the text and the reference answer."""

    id: str
    problem: str
    answer: str


def _first(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        v = row.get(k)
        if v is not None and v != "" and str(v) != "None":
            return v
    return None


def _row_to_problem(row: dict[str, Any], index: int, where: str, prefix: str = "") -> Problem:
    text = _first(row, ("problem", "question", "Question", "prompt"))
    if text is None:
        raise DataFormatError(f"{where}: row {index} has no problem field (problem / question / Question)")
    context = row.get("context")
    if context and str(context) != "None":
        text = f"{context}\n\n{text}"
    answer = _first(row, ("final_answer", "answer", "Answer", "gt", "ground_truth"))
    if isinstance(answer, str) and answer.lstrip().startswith("[") and "final_answer" in row:
        try:
            answer = json.loads(answer)
        except json.JSONDecodeError:
            pass
    if isinstance(answer, list):
        answer = ", ".join(str(a).strip().strip("$") for a in answer)
    if isinstance(answer, str) and "####" in answer:
        answer = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if answer is None:
        sol = row.get("solution")
        if isinstance(sol, list):
            sol = "\n".join(map(str, sol))
        answer = extract_boxed(sol) if isinstance(sol, str) else None
    if answer is None:
        raise DataFormatError(
            f"{where}: row {index} has no answer "
            "(answer / final_answer / Answer, or a \\boxed{} in solution)"
        )
    if isinstance(answer, float) and answer == int(answer):
        answer = int(answer)
    rid = _first(row, ("unique_id", "id", "ID", "idx"))
    qid = f"{prefix}{rid if rid is not None else index}"
    return Problem(id=str(qid), problem=str(text), answer=str(answer).strip())


def load_problems_file(path: str | os.PathLike, id_prefix: str = "") -> list[Problem]:
    """Load problems from a JSONL, JSON (list of objects) or CSV file.

    The AIME 1983–2024 CSV (whose first line is a title) is recognised. Duplicate ids raise
    :class:`DataFormatError` naming them.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidParameterError(f"dataset file {p} does not exist")
    rows: list[dict[str, Any]]
    if p.suffix == ".csv":
        lines = read_text(p, "problems file").splitlines(keepends=True)
        if lines and "," not in lines[0] and len(lines) > 1:  # title line (aime_1983_2024.csv)
            lines = lines[1:]
        rows = list(csv.DictReader(io.StringIO("".join(lines))))
    elif p.suffix == ".json":
        try:
            data = json.loads(read_text(p, "problems file"))
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{p}: not valid JSON ({exc})") from exc
        if isinstance(data, dict):
            data = data.get("data") or data.get("problems") or list(data.values())
        if not isinstance(data, list):
            raise DataFormatError(f"{p}: expected a list of objects")
        rows = data
    else:
        rows = [row for _, row in iter_jsonl(p, what="problems file", torn_tail="error")]
    problems = [_row_to_problem(r, i, str(p), id_prefix) for i, r in enumerate(rows)]
    _check_unique_ids(problems, str(p))
    return problems


def _check_unique_ids(problems: list[Problem], where: str) -> None:
    """Raise :class:`DataFormatError` naming the ids that more than one problem has.

    Records, traces and resuming all key a problem by its id, so two problems with one id would be run once and
    counted twice (or the other way round).
    """
    rows: dict[str, list[int]] = {}
    for i, q in enumerate(problems):
        rows.setdefault(q.id, []).append(i)
    dupes = [(qid, r) for qid, r in rows.items() if len(r) > 1]
    if dupes:
        shown = "; ".join(f"{qid!r} in rows {', '.join(map(str, r[:4]))}" for qid, r in dupes[:3])
        more = f" (and {len(dupes) - 3} more ids)" if len(dupes) > 3 else ""
        raise DataFormatError(
            f"{where}: {len(dupes)} problem ids appear more than once: {shown}{more}; give every problem its own "
            "id (or drop the id field, and the rows are numbered)"
        )


def _local_dir(data_dir: str | os.PathLike | None) -> Path | None:
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("TRIM_POMDP_EVAL_DATA")
    return Path(env) if env else None


def local_dataset_file(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The file :func:`load_dataset` reads for ``name``, or ``None`` when it would load it from the hub.

    A path that is not a file and names no dataset is returned as it is (loading it then says what is wrong).
    """
    if name not in DATASETS:
        return Path(name)
    folder = _local_dir(data_dir)
    if folder is not None:
        for fname in LOCAL_FILES[name]:
            if (folder / fname).is_file():
                return folder / fname
        if data_dir is not None:
            return folder  # load_dataset reports the missing file
    return None


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> list[Problem]:
    """Load a named evaluation set (:data:`DATASETS`) or a problems file.

    Parameters
    ----------
    name : str
        ``math500``, ``aime`` (AIME 1983–2024 when the CSV is available, else AIME 2024), ``aime24``,
        ``gsm8k``, ``minerva``, ``olympiadbench``, or a path to a JSONL/JSON/CSV file.
    data_dir : path, optional
        Folder with local copies (see module docstring). Without it, the hub is used.
    """
    if name not in DATASETS:
        if Path(name).is_file():
            return load_problems_file(name)
        raise InvalidParameterError(
            f"unknown dataset {name!r}: use one of {', '.join(DATASETS)} or the path of a JSONL/JSON/CSV file"
        )
    folder = _local_dir(data_dir)
    if folder is not None:
        for fname in LOCAL_FILES[name]:
            if (folder / fname).is_file():
                return load_problems_file(folder / fname)
        if data_dir is not None:
            raise InvalidParameterError(
                f"no local file for {name!r} in {folder} (looked for {', '.join(LOCAL_FILES[name])})"
            )
    path, config, split = HUB[name]
    ds = load_hub_split(
        path,
        split,
        config=config,
        what=repr(name),
        offline_hint=(
            "pass --data-dir DIR (or set TRIM_POMDP_EVAL_DATA) to a folder holding "
            + " or ".join(LOCAL_FILES[name])
        ),
    )
    problems = [_row_to_problem(dict(r), i, f"hub:{path}") for i, r in enumerate(ds)]
    _check_unique_ids(problems, f"hub:{path}")
    return problems


def shard(items: list, spec: str | tuple[int, int] | None) -> list:
    """Items of shard ``K/N`` (1-based ``K``): every ``N``-th item starting at ``K-1``; ``None`` returns all.

    The shards interleave, so that each has a similar mix of difficulties.
    """
    if spec is None:
        return list(items)
    if isinstance(spec, str):
        try:
            k_s, n_s = spec.split("/")
            k, n = int(k_s), int(n_s)
        except ValueError as exc:
            raise InvalidParameterError(f"shard must look like K/N (e.g. 2/8), got {spec!r}") from exc
    else:
        k, n = spec
    if not (n >= 1 and 1 <= k <= n):
        raise InvalidParameterError(f"shard K/N needs 1 <= K <= N, got {k}/{n}")
    return list(items[k - 1 :: n])
