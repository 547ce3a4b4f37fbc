"""Step generator protocols and the result of one generation call.

A *step generator* writes the next reasoning step of a partial solution. The partial solution is the list of
the steps accepted so far; on the wire it is always the exact string ``"\\n\\n".join(steps) + "\\n\\n"`` (or
``""``), so each call re-sends the same text prefix plus the newest step, which is what server-side prefix
caching needs.

Weak (M_w) and strong (M_s) generators share one interface; they differ in how they continue a partial
solution (literal continuation for the weak model, user-turn continuation for Claude 4.6+, see the backends).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from trim_pomdp.datasets.answers import marks_final_answer

__all__ = [
    "FINISH_REASONS",
    "MIN_STEP_TOKENS",
    "STEP_SEPARATOR",
    "StepGenerator",
    "StepResult",
    "StrongStepGenerator",
    "ends_solution",
    "settle_finish",
    "solution_prefix",
    "split_first_step",
    "step_cap",
]

#: steps are separated by one blank line
STEP_SEPARATOR = "\n\n"

#: ``step``: ended at a step boundary; ``eos``: the model ended the solution; ``length``: hit the per-step
#: token cap (the step may stop mid-sentence); ``empty``: the model produced only whitespace (treated as the end
#: of the solution)
FINISH_REASONS = ("step", "eos", "length", "empty")

#: The smallest output budget a step is asked for with: below it no model is called (the solution's token budget
#: or the server's context is then used up).
MIN_STEP_TOKENS = 16


def solution_prefix(steps: list[str] | tuple[str, ...]) -> str:
    """The exact text of a partial solution: steps joined by ``"\\n\\n"`` plus a trailing ``"\\n\\n"``."""
    return "".join(s + STEP_SEPARATOR for s in steps)


def split_first_step(text: str) -> tuple[str, bool]:
    """Cut ``text`` at its first blank line.

    Returns the first step (leading blank lines skipped, trailing whitespace removed) and whether a blank line
    was found after it (i.e. whether the text went on past the step).
    """
    body = text.lstrip("\n")
    idx = body.find(STEP_SEPARATOR)
    if idx < 0:
        return body.rstrip(), False
    return body[:idx].rstrip(), True


def step_cap(max_tokens_per_step: int, max_tokens: int | None) -> int:
    """The output cap of one call: the generator's per-step cap, lowered to the solution's remaining budget."""
    cap = min(max_tokens_per_step, max_tokens) if max_tokens else max_tokens_per_step
    return max(1, int(cap))


def settle_finish(text: str, finish: str) -> str:
    """``finish``, or ``"empty"`` for a whitespace-only step that the token cap did not cut."""
    return "empty" if not text.strip() and finish != "length" else finish


def ends_solution(text: str, finish: str) -> bool:
    """Whether a step ends the solution: the model stopped (``eos``, ``empty``) or it marks its final answer
    (a non-empty ``\\boxed{}``, or GSM8K's ``#### N``; a step that only mentions "within \\boxed{}" does not)."""
    return finish in ("eos", "empty") or marks_final_answer(text)


@dataclass
class StepResult:
    """One generated step.

    Attributes
    ----------
    text : str
        The step, without the ``"\\n\\n"`` separator (and without trailing whitespace).
    tokens : int
        Output tokens of the step as reported by the backend (``usage.output_tokens`` / ``completion_tokens``,
        or the tokenizer count for local backends). For the strong model this is the cost charged to the
        query.
    finish : str
        One of :data:`FINISH_REASONS`.
    final : bool
        Whether the solution ends with this step (EOS or a complete ``\\boxed{}`` answer).
    model : str
        The model that wrote it.
    latency_s : float
        Wall time of the call (0 for a cache hit's own lookup time is not counted here; see ``cached``).
    cached : bool
        Whether it came from the cache.
    billed_tokens : int or None
        Output tokens billed by the provider when they differ from ``tokens`` (e.g. text generated past the
        step boundary and discarded); ``None`` when equal or unknown.
    attempts : int
        Calls made (1 + retries).
    extra : dict
        Backend specifics (stop reason, ...), JSON-serialisable.
    """

    text: str
    tokens: int
    finish: str
    final: bool
    model: str
    latency_s: float = 0.0
    cached: bool = False
    billed_tokens: int | None = None
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepResult:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


@runtime_checkable
class StepGenerator(Protocol):
    """Writes the next step of a partial solution.

    Attributes
    ----------
    model : str
        Model identifier (part of cache keys and records).
    """

    model: str

    def cache_params(self) -> dict[str, Any]:
        """Everything besides the problem and the prefix that determines the output (sampling parameters,
        prompt format, step mode): part of the cache key."""
        ...

    async def generate_step(
        self, problem: str, steps: list[str], *, max_tokens: int | None = None
    ) -> StepResult:
        """Generate the step that follows ``steps`` (the accepted steps so far) for ``problem``."""
        ...

    async def aclose(self) -> None:
        """Release clients / connections."""
        ...


#: The strong model's generator has the same interface; the name documents intent at call sites.
StrongStepGenerator = StepGenerator
