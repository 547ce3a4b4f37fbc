"""JSON Lines: the one reader and the one appending writer of every ``.jsonl`` file trim-pomdp reads or writes.

Long runs append one whole line per finished unit of work with a single ``write`` followed by a flush, so a run
killed at any moment leaves at most one torn last line (no trailing newline). Readers drop such a line (the work
it held is redone on resume) and :func:`repair_torn_tail` truncates it before appending again. Any other
unreadable line is an error that names the file and the line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trim_pomdp._internal.artifacts import to_jsonable
from trim_pomdp.exceptions import DataFormatError

__all__ = ["JsonlWriter", "iter_jsonl", "read_jsonl", "read_text", "repair_torn_tail"]


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """The UTF-8 text of ``path``; a file that is not UTF-8 raises :class:`DataFormatError` naming the line."""
    p = Path(path)
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataFormatError(
            f"{p}, line {line}: the {what} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None


def iter_jsonl(
    path: str | os.PathLike[str], *, what: str = "JSONL file", torn_tail: str = "drop"
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for every non-blank line of a JSONL file.

    Parameters
    ----------
    path : path-like
    what : str
        What the file is, for messages.
    torn_tail : {"drop", "error"}
        What to do with a last line that has no newline and does not parse (an interrupted write).

    Raises
    ------
    DataFormatError
        A line that is not valid JSON or not a JSON object (other than a dropped torn tail), or text that is not
        UTF-8; the message names the file and the line.
    """
    p = Path(path)
    text = read_text(p, what)
    lines = text.split("\n")
    torn = bool(text) and not text.endswith("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if torn and i == len(lines) - 1 and torn_tail == "drop":
                return
            raise DataFormatError(
                f"{p}, line {i + 1}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(obj, dict):
            raise DataFormatError(f"{p}, line {i + 1}: expected a JSON object, got {type(obj).__name__}")
        yield i + 1, obj


def read_jsonl(path: str | os.PathLike[str], *, what: str = "JSONL file") -> list[dict[str, Any]]:
    """Every object of a JSONL file (``[]`` when it does not exist), dropping a torn last line."""
    p = Path(path)
    if not p.exists():
        return []
    return [obj for _, obj in iter_jsonl(p, what=what)]


def repair_torn_tail(path: str | os.PathLike[str]) -> None:
    """Make a file end on a line boundary before appending to it, consistently with :func:`iter_jsonl`.

    A last line without its newline that does not parse is a write interrupted by a kill: it is cut off (its work
    is redone). One that parses is a complete record whose newline is missing (a file written by hand): it is kept
    and the newline added.
    """
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return
    with open(p, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
    data = p.read_bytes()
    cut = data.rfind(b"\n") + 1
    try:
        json.loads(data[cut:].decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        with open(p, "r+b") as fh:
            fh.truncate(cut)
    else:
        with open(p, "ab") as fh:
            fh.write(b"\n")


class JsonlWriter:
    """Append-only JSONL writer: one ``write`` and a flush per line (and an ``fsync`` when asked).

    Parameters
    ----------
    path : path-like
        The file; parent folders are created and a torn last line is repaired first.
    fsync : bool, default False
        Also ``fsync`` after every line (survives a power cut, not only a killed process).
    append : bool, default True
        Keep the existing lines; ``False`` truncates the file.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False, append: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if append:
            repair_torn_tail(self.path)
        self._fh = open(self.path, "a" if append else "w", encoding="utf-8")
        self.fsync = fsync

    def write(self, obj: Any) -> None:
        """Append one object as one line."""
        self._fh.write(json.dumps(to_jsonable(obj), ensure_ascii=False) + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file."""
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
