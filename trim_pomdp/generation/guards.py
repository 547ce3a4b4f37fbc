"""The repetition guard of the generation loop: degenerate steps are not accepted.

Small models loop. Two patterns are caught, on the step the loop is about to accept (after routing):

``repeat``
    the step says what the step before it said: the same words, ignoring case, spacing, punctuation and a
    leading "Step N:" label ("Step 4: The answer is 150." after "Step 3: The answer is 150."); a step that is
    nothing but such a label is compared as written ("1." after "1." is a repeat: SmolLM2 on GSM8K);
``loop``
    the step ends in a loop: a piece of at least :data:`MIN_LOOP_CHARS` characters written
    :data:`LOOP_REPEATS` times in a row ("3. 3. 3. 3. ..." cut at the token cap).

Policy (``LoopConfig.repetition="stop"``, the default): such a step is not accepted; the problem stops there
with ``stop: "repetition"``, its answer is read from the steps accepted before, and the rejected step stays in
the trace under ``rejected`` (its tokens count as spent). ``repetition="off"`` accepts every step.
"""

from __future__ import annotations

import re

__all__ = ["LOOP_REPEATS", "MIN_LOOP_CHARS", "REPETITION_POLICIES", "degenerate", "step_key"]

#: What the loop does with a degenerate step: ``stop`` the problem before accepting it, or ``off`` (accept it).
REPETITION_POLICIES = ("stop", "off")

#: A loop is a piece of at least this many characters ...
MIN_LOOP_CHARS = 8
#: ... written this many times in a row at the end of a step.
LOOP_REPEATS = 3

_LABEL = re.compile(r"^\s*(?:step\s*\d+\s*[:.)-]|\d+\s*[.)])\s*", re.IGNORECASE)
_NOT_WORD = re.compile(r"[\W_]+")


def step_key(text: str) -> str:
    """What a step says, for comparing steps: lower case, no "Step N:" label, only letters and digits.

    A step that is only a label ("1.", "Step 3:") keeps it: it says that label.
    """
    lower = text.lower()
    body = _NOT_WORD.sub(" ", _LABEL.sub("", lower)).strip()
    return body or _NOT_WORD.sub(" ", lower).strip()


def _ends_in_loop(text: str) -> bool:
    s = " ".join(text.split())
    n = len(s)
    for size in range(MIN_LOOP_CHARS, n // LOOP_REPEATS + 1):
        unit = s[n - size :]
        if all(s[n - (k + 1) * size : n - k * size] == unit for k in range(1, LOOP_REPEATS)):
            return True
    return False


def degenerate(text: str, previous: str | None) -> str | None:
    """``"repeat"``, ``"loop"`` (see the module docstring) or ``None`` for a step the loop may accept."""
    key = step_key(text)
    if previous is not None and key and key == step_key(previous):
        return "repeat"
    if _ends_in_loop(text):
        return "loop"
    return None
