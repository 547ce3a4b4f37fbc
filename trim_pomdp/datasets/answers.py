"""Final-answer extraction (``\\boxed{...}``) and checking against a reference answer.

Checking uses `math-verify <https://github.com/huggingface/Math-Verify>`_ (symbolic equivalence of LaTeX /
plain expressions) when it is installed, and falls back to a conservative string normaliser otherwise (and
whenever math-verify cannot parse either side), so a missing extra degrades gracefully instead of failing a
run.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

__all__ = ["answers_match", "check_answer", "extract_boxed", "has_boxed", "normalize_answer"]

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
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def has_boxed(text: str) -> bool:
    """Whether ``text`` contains a complete ``\\boxed{...}`` (balanced braces)."""
    return bool(_boxed_spans(text)) if "\\boxed" in text or "\\fbox" in text else False


def extract_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` in ``text`` (nested braces handled), or ``None``."""
    spans = _boxed_spans(text)
    return spans[-1].strip() if spans else None


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


def check_answer(solution: str, reference: str) -> tuple[str | None, bool]:
    """Extract the final ``\\boxed{}`` answer of ``solution`` and check it against ``reference``.

    Returns
    -------
    (answer, correct) : tuple
        The extracted answer (``None`` when the solution has no boxed answer, which counts as wrong).
    """
    ans = extract_boxed(solution)
    if ans is None:
        return None, False
    return ans, answers_match(ans, str(reference))
