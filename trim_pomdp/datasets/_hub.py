"""Reading one split of a Hugging Face hub dataset, with one clear error when the hub cannot be reached.

Every loader in :mod:`trim_pomdp.datasets` reads a local folder when it is given one and falls back to the hub
(through the ``datasets`` package, installed by the ``data`` extra) otherwise. This module is that fallback,
written once: it imports ``datasets`` lazily, and turns the errors of an offline machine or of a split that
does not exist into one-line errors that say what to pass instead.

Without network, ``datasets`` retries for tens of seconds before it gives up. So before asking it, one TCP
connection to the hub's host (``HF_ENDPOINT``, default huggingface.co) is tried with a short timeout; when that
fails the loader stops at once with the offline message. The check is skipped when the Hugging Face offline mode
is on (``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1``: ``datasets`` then reads its cache) or a proxy is
configured (the proxy, not a direct connection, decides there).
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import BackendUnavailableError, InvalidParameterError

__all__ = ["HUB_PROBE_TIMEOUT", "hub_unreachable", "load_hub_split"]

#: Seconds the connection check before a hub load may take.
HUB_PROBE_TIMEOUT = 3.0

_TRUE = ("1", "true", "yes", "on")


def hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT) -> OSError | None:
    """Why the Hugging Face hub cannot be reached (the connection error), or None when it can or may be.

    None also when the offline mode is on or a proxy is set (see the module docstring): then there is nothing a
    direct connection could tell.
    """
    if any(os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return None
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return exc
    return None


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
        ``datasets`` is not installed, or the hub cannot be reached (checked first, in at most
        :data:`HUB_PROBE_TIMEOUT` seconds; the cause is kept as ``__cause__``).
    InvalidParameterError
        The dataset has no such split.
    """
    datasets = require("datasets", "data", f"loading {what} from the Hugging Face hub")
    down = hub_unreachable()
    if down is not None:
        raise BackendUnavailableError(
            f"could not load {what}: the Hugging Face hub is not reachable ({down}); without network, "
            f"{offline_hint} (or set HF_HUB_OFFLINE=1 to use a copy already in the Hugging Face cache)"
        ) from down
    args = (path, config) if config else (path,)
    try:
        return datasets.load_dataset(*args, split=split)
    except ValueError as exc:  # unknown split
        raise InvalidParameterError(f"{path} has no split {split!r}: {exc}") from exc
    except ConnectionError as exc:  # offline, or the hub is down
        raise BackendUnavailableError(
            f"could not load {what} from the Hugging Face hub ({exc}); without network, {offline_hint}"
        ) from exc
