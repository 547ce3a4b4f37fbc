"""Reading one split of a Hugging Face hub dataset, with one clear error when the hub cannot be reached.

Every loader in :mod:`trim_pomdp.datasets` reads a local folder when it is given one and falls back to the hub
(through the ``datasets`` package, installed by the ``data`` extra) otherwise. This module is that fallback,
written once: it imports ``datasets`` lazily, and turns the errors of an offline machine or of a split that
does not exist into one-line errors that say what to pass instead.
"""

from __future__ import annotations

from typing import Any

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import BackendUnavailableError, InvalidParameterError

__all__ = ["load_hub_split"]


def load_hub_split(path: str, split: str, *, config: str | None = None, what: str, offline_hint: str) -> Any:
    """One split of the hub dataset ``path`` (``config`` optional), as ``datasets`` returns it.

    Parameters
    ----------
    path : str
        Hub dataset id, e.g. ``"Qwen/ProcessBench"``.
    split : str
        The split to load.
    config : str, optional
        The dataset's configuration name, when it has several.
    what : str
        What is being loaded, for messages (e.g. ``"ProcessBench split 'math'"``).
    offline_hint : str
        How to do without the hub (the local folder to pass), appended to the offline error.

    Raises
    ------
    BackendUnavailableError
        ``datasets`` is not installed, or the hub cannot be reached (the cause is kept as ``__cause__``).
    InvalidParameterError
        The dataset has no such split.
    """
    datasets = require("datasets", "data", f"loading {what} from the Hugging Face hub")
    args = (path, config) if config else (path,)
    try:
        return datasets.load_dataset(*args, split=split)
    except ValueError as exc:  # unknown split
        raise InvalidParameterError(f"{path} has no split {split!r}: {exc}") from exc
    except ConnectionError as exc:  # offline, or the hub is down
        raise BackendUnavailableError(
            f"could not load {what} from the Hugging Face hub ({exc}); without network, {offline_hint}"
        ) from exc
