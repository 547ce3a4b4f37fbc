"""The shipped defaults: TRIM parameters estimated from ProcessBench and the shipped observation model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from trim_pomdp.exceptions import DataFormatError
from trim_pomdp.pomdp.params import TrimParams

__all__ = ["DEFAULT_PARAMS_FILE", "default_observation_model", "default_params_path", "load_default_params"]

#: File name of the shipped parameters in ``trim_pomdp/data``.
DEFAULT_PARAMS_FILE = "default_params.json"


def default_params_path() -> Path:
    """Path of ``trim_pomdp/data/default_params.json``."""
    return Path(str(resources.files("trim_pomdp") / "data" / DEFAULT_PARAMS_FILE))


def load_default_params(**changes: Any) -> TrimParams:
    """The shipped :class:`TrimParams` (weak Qwen2.5-7B-Instruct, strong Qwen2.5-72B-Instruct on
    ProcessBench).

    Keyword arguments override fields, e.g. ``load_default_params(lam=1e-4)``.
    """
    path = default_params_path()
    if not path.is_file():
        raise DataFormatError(f"the shipped parameters {path} are missing; reinstall trim-pomdp")
    params = TrimParams.from_json(path)
    return params.replace(**changes) if changes else params


def default_observation_model() -> Any:
    """The shipped binned observation model (see
    :func:`trim_pomdp.observation_models.observation.load_shipped_observation_model`).
    """
    from trim_pomdp.observation_models.observation import load_shipped_observation_model

    return load_shipped_observation_model()
