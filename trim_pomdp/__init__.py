"""trim-pomdp: step-level routing between a cheap and an expensive LLM in multi-step reasoning (TRIM).

The public API is re-exported lazily so that ``import trim_pomdp`` stays light: it never imports torch,
transformers, vllm, anthropic, juliacall or matplotlib (a test checks it).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .constants import ACTIONS, HIDDEN_CLASSES

#: public name -> module that defines it (imported on first attribute access)
_LAZY: dict[str, str] = {
    "AlphaVectorPolicy": "trim_pomdp.solvers.base",
    "SolveInfo": "trim_pomdp.solvers.base",
    "TabularPOMDP": "trim_pomdp.solvers.tabular",
}

__all__ = ["__version__", "ACTIONS", "HIDDEN_CLASSES", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trim_pomdp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
