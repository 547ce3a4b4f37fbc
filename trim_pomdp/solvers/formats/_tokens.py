"""The tokens of a Cassandra ``.pomdp`` text, and its one-line entries taken a run of lines at a time.

The parser in :mod:`~trim_pomdp.solvers.formats.cassandra` reads statements token by token from
:class:`Tokens`. Large files are nearly all one-line entries (``T: a : s : s' p``, ``O: a : s' : o p``,
``R: a : s : s' : o r``, with names, numbers or ``*``), and tokenizing those one at a time in Python is what
made reading slow; so between statements :meth:`Tokens.entry_run` finds the next run of such lines (and blank
lines) with one regular-expression match and splits all of it at once. Any other line goes through the
tokens, with the same meaning: the run grammar accepts only lines the statement grammar reads as one entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import numpy as np

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.solvers.formats._common import BLOCK_CHARS, Deadline

__all__ = ["KEYWORDS", "Tokens", "text_blocks"]

KEYWORDS = {"discount", "values", "states", "actions", "observations", "start", "T", "O", "R"}

#: Blanks within one line (``\s`` would run on into the next line).
_BLANK = r"[^\S\n]*"
#: A name, number or ``*``: what ``str.split`` gives once colons are spaced out and comments cut off.
_WORD = r"[^\s:#]+"


def _entry_line() -> str:
    """One line of a run: a one-line ``T:``/``O:`` or ``R:`` entry, or nothing (comments end a run: the parser
    cuts them off)."""
    index = rf"{_BLANK}{_WORD}{_BLANK}"
    last = rf"{_BLANK}{_WORD}[^\S\n]+{_WORD}{_BLANK}"
    return rf"{_BLANK}(?:[TO]{_BLANK}:{index}:{index}:{last}|R{_BLANK}:{index}:{index}:{index}:{last})?\n"


#: A run of whole lines that are one-line entries or blank.
_RUN_RE = re.compile(rf"(?:{_entry_line()})*")
#: Line breaks of ``str.splitlines`` other than ``\n``.
_OTHER_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def text_blocks(text: str, size: int = BLOCK_CHARS) -> Iterator[str]:
    """``text`` in blocks of about ``size`` characters that end with whole lines (as ``str.splitlines`` splits).

    Blocks bound what a run of entries holds at a time, as when a file is read block by block.
    """
    if _OTHER_BREAKS.search(text):
        text = "\n".join(text.splitlines())
    start = 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


class Tokens:
    """Whitespace/colon tokens of a ``.pomdp`` text, read line by line, with their 1-based line numbers.

    Tokens are buffered only for the statement being parsed (positions stay valid until :meth:`compact`);
    :meth:`raw_line` and :meth:`entry_run` hand out whole lines while the buffer is empty.

    Parameters
    ----------
    blocks : iterable of str
        The text in blocks of whole lines (:func:`text_blocks`,
        :func:`~trim_pomdp.solvers.formats._common.model_blocks`).
    source : str
        The file's name, for messages.
    deadline : Deadline
        Checked once per block and every 65,536 lines.
    """

    def __init__(self, blocks: Iterable[str], source: str, deadline: Deadline):
        self.source, self.deadline = source, deadline
        self._blocks: Iterator[str] = iter(blocks)
        self._text, self._off = "", 0
        self.lineno = 0
        self.toks: list[str] = []
        self.lines: list[int] = []
        self.pos = 0
        self.eof = False

    def _more(self) -> bool:
        """Whether text is left, moving on to the next block when this one is used up."""
        while self._off >= len(self._text):
            block = next(self._blocks, None)
            if block is None:
                self.eof = True
                return False
            self._text, self._off = block, 0
            self.deadline.check(f"{self.source}: reading line {self.lineno + 1}")
        return True

    def raw_line(self) -> str | None:
        """The next line without its comment (``None`` at the end); only while no token is buffered."""
        if not self._more():
            return None
        text, off = self._text, self._off
        end = text.find("\n", off)
        end = len(text) if end < 0 else end
        line = text[off:end]
        self._off = end + 1
        self.lineno += 1
        if not self.lineno & 0xFFFF:
            self.deadline.check(f"{self.source}: reading line {self.lineno}")
        return line.split("#", 1)[0] if "#" in line else line

    def entry_run(self) -> tuple[list[list[str]], int]:
        """The tokens of the next lines while they are one-line entries or blank, one list per line (``T``/``O``,
        a, s, s'|o, value; ``R``, a, s, s', o, value; or empty), and the number of the first of them; only while
        no token is buffered."""
        if not self._more():
            return [], self.lineno + 1
        run = _RUN_RE.match(self._text, self._off)
        end = run.end() if run else self._off
        if end == self._off:
            return [], self.lineno + 1
        # the run grammar leaves exactly these tokens: no colon inside a word, no comment
        lines = self._text[self._off : end - 1].replace(":", " ").split("\n")
        first = self.lineno + 1
        self._off, self.lineno = end, self.lineno + len(lines)
        return list(map(str.split, lines)), first

    def push(self, line: str) -> None:
        """Tokenize ``line`` (already read with :meth:`raw_line`) into the buffer."""
        for tok in line.replace(":", " : ").split():
            self.toks.append(tok)
            self.lines.append(self.lineno)

    def _fill(self, k: int) -> bool:
        while len(self.toks) - self.pos <= k:
            line = self.raw_line()
            if line is None:
                return False
            self.push(line)
        return True

    def compact(self) -> None:
        """Forget consumed tokens (between statements)."""
        if self.pos:
            del self.toks[: self.pos], self.lines[: self.pos]
            self.pos = 0

    def error(self, expected: str, pos: int | None = None) -> DataFormatError:
        pos = self.pos if pos is None else pos
        if pos < len(self.toks) or self._fill(pos - self.pos):
            where, got = f"line {self.lines[pos]}", repr(self.toks[pos])
        else:
            where, got = f"line {self.lines[-1] if self.lines else max(self.lineno, 1)}", "end of file"
        return DataFormatError(f"{self.source}: {where}: expected {expected}, got {got}")

    def at_end(self) -> bool:
        return not self._fill(0)

    def peek(self, k: int = 0) -> str | None:
        return self.toks[self.pos + k] if self._fill(k) else None

    def next(self, expected: str) -> str:
        if not self._fill(0):
            raise self.error(expected)
        self.pos += 1
        return self.toks[self.pos - 1]

    def expect(self, literal: str) -> None:
        if self.peek() != literal:
            raise self.error(repr(literal))
        self.pos += 1

    def statement_start(self, k: int = 0) -> bool:
        """Whether the token at offset ``k`` begins a statement (``key :`` or ``start include|exclude :``)."""
        tok = self.peek(k)
        if tok not in KEYWORDS:
            return False
        if self.peek(k + 1) == ":":
            return True
        return tok == "start" and self.peek(k + 1) in ("include", "exclude") and self.peek(k + 2) == ":"

    def number(self, expected: str = "a number") -> float:
        pos = self.pos
        tok = self.next(expected)
        try:
            return float(tok)
        except ValueError:
            raise self.error(expected, pos) from None

    def numbers(self, n: int, what: str) -> np.ndarray:
        out = np.empty(n)
        for i in range(n):
            out[i] = self.number(f"{what} (number {i + 1} of {n})")
        return out

    def until_statement(self) -> list[tuple[str, int]]:
        out = []
        while not self.at_end() and not self.statement_start():
            out.append((self.toks[self.pos], self.pos))
            self.pos += 1
        return out
