"""Lazy import of optional dependencies with an actionable error message."""

from __future__ import annotations

import importlib
from types import ModuleType

from trim_pomdp.exceptions import BackendUnavailableError

__all__ = ["require"]


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`BackendUnavailableError` naming the extra that provides it.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"torch"``.
    extra : str
        The ``trim-pomdp`` extra that installs it, e.g. ``"hf"``.
    feature : str, optional
        What needs it, for the message (e.g. ``"the transformers PRM backend"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - message path tested via a missing fake module
        what = f"{feature} requires" if feature else "this feature requires"
        raise BackendUnavailableError(
            f"{what} the Python package {module!r}, which is not installed. "
            f"Install it with: pip install 'trim-pomdp[{extra}]'"
        ) from exc
