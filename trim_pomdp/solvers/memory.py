"""Memory limits of model readers and solvers: estimate a size before allocating it, refuse it clearly.

A model file of a few hundred bytes can declare 20,000 states or a variable with 10⁸ values; read naively, it
asks for tens of gigabytes before anything checks it. Every reader and the point-based solver therefore count
what they are about to allocate (table cells, entries, alpha vectors) against one :class:`MemoryBudget` and
raise :class:`~trim_pomdp.exceptions.ResourceLimitError`, naming the size and the limit, before the allocation.

The limit is :data:`DEFAULT_MEMORY_LIMIT` (4 GiB) unless the ``TRIM_POMDP_MEMORY_LIMIT`` environment variable
or a ``memory_limit=`` argument says otherwise; sizes are given in bytes or with a unit (``"512M"``, ``"8G"``).
"""

from __future__ import annotations

import math
import os
import re

from trim_pomdp.exceptions import InvalidParameterError, ResourceLimitError

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "MEMORY_LIMIT_ENV",
    "MemoryBudget",
    "format_bytes",
    "parse_memory_limit",
]

#: Environment variable holding the default memory limit (bytes, or a size such as ``"8G"``).
MEMORY_LIMIT_ENV = "TRIM_POMDP_MEMORY_LIMIT"

#: The limit when neither an argument nor :data:`MEMORY_LIMIT_ENV` gives one: 4 GiB.
DEFAULT_MEMORY_LIMIT = 4 * 1024**3

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def format_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KiB"``; ``5e12`` → ``"4.5 TiB"``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover - the loop returns


def parse_memory_limit(value: int | float | str | None) -> int:
    """The limit in bytes: ``value`` itself, else the ``TRIM_POMDP_MEMORY_LIMIT`` variable, else 4 GiB.

    Parameters
    ----------
    value : int, float, str or None
        Bytes, or a size with a binary unit (``"512M"``, ``"8G"``, ``"1.5GiB"``).

    Raises
    ------
    InvalidParameterError
        When the value is not a positive size.
    """
    source = "memory_limit"
    if value is None:
        env = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
        if not env:
            return DEFAULT_MEMORY_LIMIT
        value, source = env, MEMORY_LIMIT_ENV
    if isinstance(value, bool):
        raise InvalidParameterError(f"{source} must be a size in bytes or like '8G', got {value!r}")
    if isinstance(value, (int, float)):
        n = float(value)
    else:
        m = _SIZE_RE.match(str(value))
        if m is None:
            raise InvalidParameterError(
                f"{source} must be a size in bytes or like '512M', '8G', got {value!r}"
            )
        n = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not (math.isfinite(n) and n >= 1):
        raise InvalidParameterError(f"{source} must be a positive size, got {value!r}")
    return int(n)


class MemoryBudget:
    """A running count of the bytes a reader or solver has committed to, against a limit.

    Parameters
    ----------
    limit : int, float, str or None
        See :func:`parse_memory_limit`.
    source : str
        What is being read or solved, for messages (e.g. the file name).
    """

    def __init__(self, limit: int | float | str | None = None, source: str = "the model"):
        self.limit = parse_memory_limit(limit)
        self.source = source
        self.used = 0

    def check(self, n_bytes: float, what: str) -> None:
        """Raise unless ``n_bytes`` more would stay within the limit (nothing is charged).

        Raises
        ------
        ResourceLimitError
            Naming ``what``, its size, the limit and how to raise it.
        """
        if self.used + float(n_bytes) > self.limit:
            raise ResourceLimitError(
                f"{self.source}: {what} needs about {format_bytes(n_bytes)}"
                + (f" (on top of {format_bytes(self.used)} already held)" if self.used else "")
                + f", over the memory limit of {format_bytes(self.limit)}; raise it with memory_limit= "
                f"(--memory-limit on the command line) or the {MEMORY_LIMIT_ENV} environment variable"
            )

    def charge(self, n_bytes: float, what: str) -> None:
        """:meth:`check`, then count ``n_bytes`` as used."""
        self.check(n_bytes, what)
        self.used += int(n_bytes)

    def release(self, n_bytes: float) -> None:
        """Count ``n_bytes`` as freed again (temporary arrays)."""
        self.used = max(0, self.used - int(n_bytes))
