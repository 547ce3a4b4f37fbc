"""The protocol a PRM backend implements.

A PRM backend scores the steps of whole solutions, synchronously and in batches: it is what this package's PRMs
are (:class:`~trim_pomdp.prm.transformers_backend.TransformersPRM`,
:class:`~trim_pomdp.prm.vllm_backend.VLLMPoolingPRM`) and what ``trim-pomdp score-processbench`` drives. The
generation loop does not call a backend directly: it awaits a
:class:`~trim_pomdp.generation.scoring.StepScorer` (one solution prefix at a time, asynchronously), and
:class:`~trim_pomdp.generation.scoring.BatchedPRM` is the adapter that turns any backend into one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["PRMBackend"]


@runtime_checkable
class PRMBackend(Protocol):
    """What a PRM backend implements: P(step correct) in [0, 1] for every step of a solution.

    ``score(problem, steps)`` returns one score per step of one solution; ``score_batch`` does the same for many
    ``(problem, steps)`` pairs, in input order (a backend batches them as its hardware prefers).
    """

    def score(self, problem: str, steps: Sequence[str]) -> list[float]:
        """One score per step of one solution."""
        ...

    def score_batch(self, solutions: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """One list of scores per ``(problem, steps)``, in input order."""
        ...
