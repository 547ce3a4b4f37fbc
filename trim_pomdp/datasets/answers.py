"""Final-answer extraction and checking against a reference answer.

The final answer of a solution is found by the first of its answer formats that finds one (all three by
default, in this order):

``boxed``
    the last non-empty ``\\boxed{...}`` (or ``\\fbox{...}``); an empty ``\\boxed{}`` (a step that only says
    "within \\boxed{}") is not an answer;
``hash``
    GSM8K's ``#### 18`` (the last such line);
``answer-is``
    the last "The answer is 18" / "The final answer is: 18" (up to the end of its line).

Checking uses `math-verify <https://github.com/huggingface/Math-Verify>`_ (symbolic equivalence of LaTeX /
plain expressions) when it is installed, and falls back to a conservative string normaliser otherwise (and
whenever math-verify cannot parse either side), so a missing extra degrades gracefully instead of failing a
run.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

from trim_pomdp.exceptions import InvalidParameterError

__all__ = [
    "ANSWER_FORMATS",
    "answers_match",
    "check_answer",
    "extract_answer",
    "extract_boxed",
    "has_boxed",
    "marks_final_answer",
    "normalize_answer",
    "parse_answer_formats",
]

#: The answer formats, in the order they are tried by default (see the module docstring).
ANSWER_FORMATS = ("boxed", "hash", "answer-is")

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _boxed_spans(text: str) -> list[str]:
    out: list[str] = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                i += 2
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            i += 1
        if depth == 0 and text[m.end() : i - 1].strip():
            out.append(text[m.end() : i - 1])
    return out


def has_boxed(text: str) -> bool:
    """Whether ``text`` contains a complete, non-empty ``\\boxed{...}`` (balanced braces)."""
    return bool(_boxed_spans(text)) if "\\boxed" in text or "\\fbox" in text else False


def extract_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty ``\\boxed{...}`` in ``text`` (nested braces handled), or ``None``."""
    spans = _boxed_spans(text)
    return spans[-1].strip() if spans else None


_HASH = re.compile(r"^[ \t]*####[ \t]*(\S[^\n]*)$", re.MULTILINE)
_ANSWER_IS = re.compile(r"\b(?:the\s+)?(?:final\s+)?answer\s+is\s*:?[ \t]*([^\n]+)", re.IGNORECASE)


def _clean_tail(value: str) -> str | None:
    """An answer written in prose: without markdown emphasis, ``$`` signs and a closing period."""
    v = value
    for _ in range(2):  # "**18**." and "$18$." alike
        v = re.sub(r"^\$+|\$+$", "", v.strip().strip("*").rstrip(".").strip()).strip()
    return v or None


def _from_hash(text: str) -> str | None:
    found = _HASH.findall(text)
    return _clean_tail(found[-1]) if found else None


_NUMBER_THEN_WORDS = re.compile(r"^(\\?\$?-?\d[\d,]*(?:\.\d+)?)\s+[A-Za-z][A-Za-z\s]*$")


def marks_final_answer(text: str) -> bool:
    """Whether ``text`` marks its final answer unambiguously: a non-empty ``\\boxed{}`` or GSM8K's ``#### N``.

    ("The answer is ..." does not count: a step may say it on the way.)
    """
    return has_boxed(text) or _from_hash(text) is not None


def _from_answer_is(text: str) -> str | None:
    found = _ANSWER_IS.findall(text)
    value = _clean_tail(found[-1]) if found else None
    m = _NUMBER_THEN_WORDS.match(value) if value else None
    return m.group(1) if m else value  # "18 eggs per day" -> "18"


_EXTRACTORS = {"boxed": extract_boxed, "hash": _from_hash, "answer-is": _from_answer_is}


def parse_answer_formats(spec: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """Answer formats from a comma list (``"boxed,hash"``) or a sequence; ``None`` gives :data:`ANSWER_FORMATS`.

    Raises
    ------
    InvalidParameterError
        A name that is not one of :data:`ANSWER_FORMATS`, or an empty list.
    """
    if spec is None:
        return ANSWER_FORMATS
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    bad = [n for n in names if n not in _EXTRACTORS]
    if bad or not names:
        raise InvalidParameterError(
            f"answer formats {spec!r}: use a comma list of {', '.join(ANSWER_FORMATS)} (e.g. boxed,hash)"
        )
    return tuple(dict.fromkeys(names))


def extract_answer(text: str, formats: tuple[str, ...] = ANSWER_FORMATS) -> tuple[str | None, str | None]:
    """The final answer of ``text`` and the format that found it (the first of ``formats`` that finds one).

    Returns ``(None, None)`` when no format finds an answer.
    """
    for name in formats:
        found = _EXTRACTORS[name](text)
        if found:
            return found, name
    return None, None


_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
_UNITS = re.compile(
    r"\s*(?:\\[,;!: ]|~)*\s*(?:units?|degrees?|cm|m|km|kg|g|s|sec|seconds?|minutes?|hours?|days?|"
    r"dollars?|cents?|"
    r"inches|inch|feet|foot|ft|miles?|meters?|sq|square)\b\.?$"
)


def normalize_answer(ans: str) -> str:
    """A conservative normal form of a math answer string for exact comparison.

    Removes ``$``, ``\\left``/``\\right``, spacing commands, ``\\text{}`` wrappers, a leading ``x =``,
    trailing units and periods, thousands separators in plain integers, ``^\\circ`` and ``\\%``;
    ``\\dfrac``/``\\tfrac`` → ``\\frac``; numbers are canonicalised (``27.0`` → ``27``, ``0.50`` → ``0.5``).
    """
    s = str(ans).strip()
    s = s.replace("$", "").replace("\\left", "").replace("\\right", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\displaystyle", "")
    s = re.sub(r"\\[,;!: ]", "", s).replace("~", "")
    s = (
        s.replace("^\\circ", "")
        .replace("^{\\circ}", "")
        .replace("\\circ", "")
        .replace("\\%", "")
        .replace("%", "")
    )
    for _ in range(3):
        s = _TEXT_CMD.sub(r"\1", s)
    s = re.sub(r"^[a-zA-Z]\s*=\s*", "", s.strip())
    s = _UNITS.sub("", s).strip().rstrip(".").strip()
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    s = re.sub(r"\s+", "", s)
    if re.fullmatch(r"-?\d+(\.\d+)?", s):
        num = float(s)
        s = str(int(num)) if num == int(num) and abs(num) < 1e15 else repr(num)
    m = re.fullmatch(r"\\frac\{?(-?\d+)\}?\{?(\d+)\}?", s)
    if m:
        s = f"{int(m.group(1))}/{int(m.group(2))}"
    return s


@lru_cache(maxsize=1)
def _math_verify():
    try:
        import math_verify

        return math_verify
    except ImportError:  # pragma: no cover - depends on the environment
        return None


@lru_cache(maxsize=20000)
def answers_match(predicted: str, reference: str) -> bool:
    """Whether two extracted answers are equivalent.

    Exact match after :func:`normalize_answer` first; then math-verify's symbolic check on ``$...$``-wrapped
    forms (its timeouts use ``SIGALRM``, so off the main thread they are disabled).
    """
    if predicted is None or reference is None:
        return False
    a, b = normalize_answer(predicted), normalize_answer(reference)
    if a and a == b:
        return True
    mv = _math_verify()
    if mv is None:
        return False
    main = threading.current_thread() is threading.main_thread()
    ptimeout = 5 if main else None
    try:
        gold = mv.parse(f"${reference}$", parsing_timeout=ptimeout)
        pred = mv.parse(f"${predicted}$", parsing_timeout=ptimeout)
        if not gold or not pred:
            return False
        return bool(mv.verify(gold, pred, timeout_seconds=ptimeout))
    except Exception:  # math-verify raises on pathological input only when asked; be safe
        return False


def check_answer(
    solution: str, reference: str, formats: tuple[str, ...] = ANSWER_FORMATS
) -> tuple[str | None, bool]:
    """Extract the final answer of ``solution`` (see :func:`extract_answer`) and check it against ``reference``.

    Returns
    -------
    (answer, correct) : tuple
        The extracted answer (``None`` when no format finds one, which counts as wrong).
    """
    ans, _ = extract_answer(solution, formats)
    if ans is None:
        return None, False
    return ans, answers_match(ans, str(reference))
