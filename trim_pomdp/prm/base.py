"""The interface every PRM backend implements (transformers here; vLLM and others in their own modules)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["PRMBackend"]


@runtime_checkable
class PRMBackend(Protocol):
    """Scores the steps of solutions: P(step correct) in [0, 1] per step.

    ``score(problem, steps)`` returns one score per step of one solution; ``score_batch`` does the same for many
    ``(problem, steps)`` pairs, in input order.
    """

    def score(self, problem: str, steps: Sequence[str]) -> list[float]: ...

    def score_batch(self, solutions: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]: ...
