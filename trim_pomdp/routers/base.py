"""The step-level ``Router`` protocol.

A router is told each step's observation and answers ``"continue"`` or ``"regenerate"``. Routers do no I/O and
never call a model: the caller owns the generation loop.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from trim_pomdp.types import BatchObservation, StepObservation

__all__ = ["ACTION_NAMES", "BatchRouter", "Router"]

ACTION_NAMES = ("continue", "regenerate")


@runtime_checkable
class Router(Protocol):
    """One query at a time.

    Call :meth:`reset` before each query, then :meth:`decide` once per proposed step. After it returns, the
    router's :attr:`last_decision` says what it decided from (belief, features, ...).
    """

    def reset(self) -> None: ...

    def decide(self, obs: StepObservation) -> str:
        """``"continue"`` or ``"regenerate"`` for the proposal described by ``obs``."""
        ...

    @property
    def last_decision(self) -> dict[str, Any]: ...


@runtime_checkable
class BatchRouter(Protocol):
    """Optional vectorised form, used by the evaluation and training code for speed.

    ``reset_batch(n)`` then ``decide_batch(obs)`` returning an int array (0 = continue, 1 = regenerate) for
    the rows of ``obs`` (inactive rows are ignored).
    """

    def reset_batch(self, n: int) -> None: ...

    def decide_batch(self, obs: BatchObservation) -> np.ndarray: ...
