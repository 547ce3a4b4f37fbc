"""The paper's λ grids for the RL routers, per dataset family, and their default training budget.

The paper (Appendix B) trains TRIM-Agg at λ "ranging from 3×10⁻⁴ to 8×10⁻⁵ for AIME and from 8×10⁻⁴ to 3×10⁻⁴ for
MATH, at regular intervals". The number of points is not given; six evenly spaced values per family are used
here. A dataset (or a simulator split) belongs to the family of comparable difficulty, as in the paper's
cross-dataset evaluation (routers trained on AIME, evaluated on OlympiadBench and Minerva Math):

=========  ==================================================  ======================================
family     datasets and ProcessBench splits                    λ grid
=========  ==================================================  ======================================
``math``   ``math``, ``math500``, ``gsm8k``                    8e-4, 7e-4, 6e-4, 5e-4, 4e-4, 3e-4
``aime``   ``aime``, ``aime24``, ``olympiadbench``,            3e-4, 2.56e-4, 2.12e-4, 1.68e-4,
           ``omnimath``, ``minerva``                           1.24e-4, 8e-5
=========  ==================================================  ======================================

The budget is a convergence criterion (:class:`~trim_pomdp.routers.rl.convergence.Convergence`: train until the
return on a fixed held-out batch stops improving) under a cap of :data:`DEFAULT_MAX_TIMESTEPS` steps.
"""

from __future__ import annotations

import numpy as np

from trim_pomdp.exceptions import InvalidParameterError
from trim_pomdp.registry import did_you_mean
from trim_pomdp.routers.rl.convergence import Convergence

__all__ = [
    "DATASET_FAMILIES",
    "DEFAULT_CONVERGENCE",
    "DEFAULT_MAX_TIMESTEPS",
    "LAMBDA_GRIDS",
    "default_lambdas",
    "family_of",
]


def _grid(hi: float, lo: float, n: int = 6) -> tuple[float, ...]:
    return tuple(float(f"{x:.3g}") for x in np.linspace(hi, lo, n))


#: The paper's λ range per family, six evenly spaced values from the cheapest regenerations down.
LAMBDA_GRIDS: dict[str, tuple[float, ...]] = {"math": _grid(8e-4, 3e-4), "aime": _grid(3e-4, 8e-5)}

#: Which family's grid a dataset or simulator split uses.
DATASET_FAMILIES: dict[str, str] = {
    "math": "math",
    "math500": "math",
    "gsm8k": "math",
    "aime": "aime",
    "aime24": "aime",
    "olympiadbench": "aime",
    "omnimath": "aime",
    "minerva": "aime",
}

#: Train until the held-out return has not improved by 1e-3 for 5 evaluations 20k steps apart (and at least 100k
#: steps were trained), on 2000 held-out episodes.
DEFAULT_CONVERGENCE = Convergence()
#: The cap on PPO steps per λ when the held-out return keeps improving.
DEFAULT_MAX_TIMESTEPS = 1_000_000


def family_of(name: str | None) -> str:
    """The family (``"math"`` or ``"aime"``) of a dataset or split name; ``None`` means ``math``.

    Raises
    ------
    InvalidParameterError
        For a name of no known family (the message lists them).
    """
    if name is None:
        return "math"
    key = str(name).lower()
    if key in LAMBDA_GRIDS:
        return key
    if key not in DATASET_FAMILIES:
        raise InvalidParameterError(
            f"no λ grid for {name!r}{did_you_mean(key, DATASET_FAMILIES)}: pass the λ values, or name one of "
            f"{', '.join(DATASET_FAMILIES)} (families {', '.join(LAMBDA_GRIDS)})"
        )
    return DATASET_FAMILIES[key]


def default_lambdas(name: str | None) -> tuple[float, ...]:
    """The paper's λ grid for a dataset or simulator split (see the module docstring)."""
    return LAMBDA_GRIDS[family_of(name)]
