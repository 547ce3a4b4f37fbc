"""Names shared across the package: hidden classes and actions of the TRIM-POMDP.

Index conventions used everywhere in arrays: hidden class ``z`` in ``HIDDEN_CLASSES`` order
(0 = S0, 1 = S1, 2 = S2) and action ``a`` in ``ACTIONS`` order (0 = continue, 1 = regenerate).
"""

from __future__ import annotations

__all__ = ["ACTIONS", "CLASS_DESCRIPTIONS", "CONTINUE", "HIDDEN_CLASSES", "REGENERATE", "S0", "S1", "S2"]

#: Hidden correctness classes, in array order.
HIDDEN_CLASSES: tuple[str, str, str] = ("S0", "S1", "S2")
S0, S1, S2 = 0, 1, 2

CLASS_DESCRIPTIONS = {
    "S0": "prefix and the newest step are all correct",
    "S1": "an earlier accepted step was wrong (irrecoverable)",
    "S2": "prefix correct but the newest step is wrong (recoverable by regenerating it)",
}

#: Router actions, in array order.
ACTIONS: tuple[str, str] = ("continue", "regenerate")
CONTINUE, REGENERATE = 0, 1
