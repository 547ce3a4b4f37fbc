"""What the ``.pomdp`` and ``.pomdpx`` readers and writers share: names, numbers, row sums, reading a file."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp.exceptions import DataFormatError, ResourceLimitError

__all__ = [
    "BLOCK_CHARS",
    "NAME_RE",
    "ROW_SUM_TOLERANCE",
    "Deadline",
    "format_float",
    "model_blocks",
    "read_model_text",
    "valid_names",
]

#: A state, action or observation name that both formats accept (and APPL's parsers read back).
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")

#: Rows of T, O and the start vector whose sum is off 1 by at most this much are renormalised (classic files
#: print 0.333333 three times); larger deviations are errors.
ROW_SUM_TOLERANCE = 1e-4


def format_float(x: float) -> str:
    """Shortest exact decimal of ``x`` in positional notation with a digit on both sides of the point."""
    s = np.format_float_positional(float(x), unique=True, trim="0")
    if s.startswith("-."):
        s = "-0" + s[1:]
    elif s.startswith("."):
        s = "0" + s
    return s


def valid_names(names: Sequence[Any] | None, n: int, reserved: Collection[str] = ()) -> list[str] | None:
    """``names`` as strings if there are ``n`` distinct valid ones (none of them ``reserved``), else ``None``.

    Writers fall back to numbered values when the model's names cannot be written.
    """
    if not names or len(names) != n:
        return None
    out = [str(x) for x in names]
    if len(set(out)) != n or not all(NAME_RE.match(x) and x not in reserved for x in out):
        return None
    return out


def read_model_text(path: str | Path) -> tuple[str, str]:
    """The text of a model file (undecodable bytes replaced) and its name for messages.

    Raises
    ------
    DataFormatError
        When the file cannot be read.
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8", errors="replace"), str(path)
    except OSError as exc:
        raise DataFormatError(f"cannot read {path}: {exc}") from exc


#: Characters read from a model file at a time (then completed to the end of the line).
BLOCK_CHARS = 1 << 16


@contextlib.contextmanager
def model_blocks(path: str | Path, size: int = BLOCK_CHARS) -> Iterator[tuple[Iterator[str], str]]:
    """The text of a model file in blocks of whole lines, read lazily, and its name for messages.

    Each block holds about ``size`` characters and ends with a newline (the last one may not); newlines are
    universal (``\\r\\n`` and ``\\r`` read as ``\\n``) and undecodable bytes are replaced. Readers take
    many lines at once from a block without holding the whole file.

    Raises
    ------
    DataFormatError
        When the file cannot be opened.
    """
    path = Path(path)
    try:
        fh = path.open("r", encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataFormatError(f"cannot read {path}: {exc}") from exc

    def blocks() -> Iterator[str]:
        while block := fh.read(size):
            yield block if block.endswith("\n") else block + fh.readline()

    with fh:
        yield blocks(), str(path)


class Deadline:
    """A ``time.perf_counter()`` value after which reading stops (``None``: never)."""

    def __init__(self, at: float | None):
        self.at = at

    def check(self, where: str) -> None:
        """Raise :class:`ResourceLimitError` naming ``where`` once the deadline has passed."""
        if self.at is not None and time.perf_counter() > self.at:
            raise ResourceLimitError(
                f"{where}: the time limit ran out while reading the model; raise the time limit"
            )
