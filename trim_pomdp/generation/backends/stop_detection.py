"""How an OpenAI-compatible server tells a step boundary from the end of the solution.

A step is asked for with ``stop=["\\n\\n"]``. Every server then answers ``finish_reason="stop"`` both when the
model ended the solution (EOS) and when the separator matched, and most remove the matched stop string from the
text, so ``finish_reason`` alone cannot tell them apart. Each server family documents its own way:

=================  =============================================================================================
``stop_reason``    vLLM: ``choices[0].stop_reason`` is the matched stop string, and ``null`` (or a stop token
                   id) for EOS
``matched_stop``   SGLang: ``choices[0].matched_stop`` is the matched stop string, or the EOS token id (an int)
``finish_reason``  TGI's OpenAI routes: ``finish_reason`` is ``"stop_sequence"`` for a stop string, ``"stop"``
                   for EOS
``stop_in_text``   ``transformers serve``: the matched stop string is kept in ``text`` (at its end, or followed
                   by the rest of the token it ended in), so a step without it ended at EOS
``stream``         none of these (llama.cpp's and llama-cpp-python's servers, the OpenAI API, ...): no stop
                   string is sent; the reply is streamed and cut at the first blank line on the client, and a
                   stream that ends by itself ended at EOS
=================  =============================================================================================

``auto`` (the default) reads the way off the first answer when it carries one of the documented fields or the
separator itself; otherwise it asks the server once: it takes the probe prompt's greedy continuation, then
asks again with a piece of that continuation as the stop string, and looks at how the server reports the match.
A server whose report shows none of the above is run in ``stream`` mode. In ``stream`` mode a step's token count
is the number of streamed text chunks (one per token on vLLM, llama.cpp and TGI) when the stream was cut, and
the server's ``usage`` when it ran to its end; ``tokens_exact`` in the step's trace says which.

:func:`context_limit` reads the server's "maximum context length" error, so that a step can be asked for again
with ``max_tokens`` lowered to the context that is left.
"""

from __future__ import annotations

import re
from typing import Any

from trim_pomdp.generation.base import STEP_SEPARATOR

__all__ = [
    "SERVER_REPORTS",
    "STEP_DETECTIONS",
    "classify_stop",
    "context_limit",
    "probe_stop_string",
    "report_from_probe",
    "report_from_response",
]

#: The ways a server reports the stop that ended a completion (see the module docstring).
SERVER_REPORTS = ("stop_reason", "matched_stop", "finish_reason", "stop_in_text")

#: What ``step_detection=`` accepts: ``auto``, one of :data:`SERVER_REPORTS`, or ``stream``.
STEP_DETECTIONS = ("auto", *SERVER_REPORTS, "stream")


def _went_on(raw: str) -> bool:
    """Whether ``raw`` holds the separator after its first non-blank text (a complete step)."""
    return STEP_SEPARATOR in raw.lstrip("\n")


def report_from_response(fields: dict[str, Any], raw: str, finish_reason: str | None) -> str | None:
    """The server's report read off one answer, or ``None`` when this answer does not show it.

    Parameters
    ----------
    fields : dict
        The choice's fields beyond the OpenAI schema (``model_extra`` of the SDK's choice).
    raw : str
        The text of the choice as the server sent it.
    finish_reason : str or None
    """
    if "stop_reason" in fields:
        return "stop_reason"
    if "matched_stop" in fields:
        return "matched_stop"
    if finish_reason == "stop_sequence":
        return "finish_reason"
    if finish_reason == "stop" and _went_on(raw):
        return "stop_in_text"
    return None


def classify_stop(report: str, raw: str, finish_reason: str | None, fields: dict[str, Any]) -> str:
    """``"step"``, ``"eos"`` or ``"length"`` for one answer of a server whose report is ``report``.

    A separator inside the text always makes a step (the server returned text past the boundary, or the stop
    string itself); otherwise the server's own report decides.
    """
    if _went_on(raw):
        return "step"
    if finish_reason == "length":
        return "length"
    if report == "stop_reason":
        reason = fields.get("stop_reason")
        return "eos" if reason is None or isinstance(reason, int) else "step"
    if report == "matched_stop":
        return "step" if isinstance(fields.get("matched_stop"), str) else "eos"
    if report == "finish_reason":
        return "step" if finish_reason == "stop_sequence" else "eos"
    if report == "stop_in_text":
        return "eos"
    raise ValueError(f"no stop report {report!r}; one of {SERVER_REPORTS}")


def separator_matched(report: str, raw: str, finish_reason: str | None, fields: dict[str, Any]) -> bool:
    """Whether the server says that the separator itself ended this answer (a blank line before any text)."""
    if not raw.strip() and STEP_SEPARATOR in raw:
        return True
    if report == "stop_reason":
        return fields.get("stop_reason") == STEP_SEPARATOR
    if report == "matched_stop":
        return fields.get("matched_stop") == STEP_SEPARATOR
    if report == "finish_reason":
        return finish_reason == "stop_sequence"
    return False


def probe_stop_string(continuation: str) -> str | None:
    """A stop string for the probe: two characters of ``continuation`` after its first non-blank one.

    ``None`` when the continuation is too short to hold one (the probe is then inconclusive).
    """
    start = len(continuation) - len(continuation.lstrip())
    for i in range(start + 1, len(continuation) - 1):
        piece = continuation[i : i + 2]
        if piece.strip() and not piece[0].isspace():
            return piece
    return None


def report_from_probe(stop: str, raw: str, finish_reason: str | None, fields: dict[str, Any]) -> str:
    """The server's report from its answer to a request whose stop string ``stop`` was sure to match.

    ``stream`` when the answer shows the match in no documented way (or shows no match at all).
    """
    if fields.get("stop_reason") == stop:
        return "stop_reason"
    if fields.get("matched_stop") == stop:
        return "matched_stop"
    if finish_reason == "stop_sequence":
        return "finish_reason"
    if finish_reason == "stop" and stop in raw:
        # kept in the text; a server that checks stop strings on decoded tokens (transformers serve) goes on to
        # the end of the token the match ended in: asked to stop at "o ", SmolLM2 answers "To solve"
        return "stop_in_text"
    return "stream"


_CONTEXT = re.compile(
    r"(?:maximum context length is|context window of|context length of|context size is)\s*(\d+)", re.I
)
_PROMPT = re.compile(
    r"(?:\((\d+) in the messages|(?:contains at least|has|resulted in)\s+(\d+)\s+(?:input )?tokens"
    r"|prompt (?:has|is)\s+(\d+)\s+tokens)",
    re.I,
)


def context_limit(message: str, body: Any = None) -> tuple[int, int | None] | None:
    """``(context length, prompt tokens)`` from a server's "maximum context length" error, else ``None``.

    Reads vLLM's and OpenAI's messages ("This model's maximum context length is 512 tokens. However, you
    requested 600 tokens (88 in the messages, 512 in the completion)" and the newer "... your prompt contains
    at least 88 input tokens"), llama.cpp's error fields (``n_ctx``, ``n_prompt_tokens``) and llama-cpp-python's
    "exceed context window of 512". The prompt tokens are ``None`` when the message does not give them.
    """
    error = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("n_ctx"), int):
        prompt = error.get("n_prompt_tokens")
        return int(error["n_ctx"]), int(prompt) if isinstance(prompt, int) else None
    m = _CONTEXT.search(message or "")
    if not m:
        return None
    p = _PROMPT.search(message)
    prompt = next((int(g) for g in p.groups() if g), None) if p else None
    return int(m.group(1)), prompt
