"""``trim-pomdp serve``: TRIM behind an OpenAI-compatible HTTP endpoint (FastAPI + uvicorn, the ``serve`` extra).

Clients send ``POST /v1/chat/completions`` with ``model="trim-pomdp/lambda=0.0005"`` (one model id per loaded
router, listed by ``GET /v1/models``); the last user message is the problem, and the answer is the solution the
TRIM loop wrote for it, step by step (streamed as server-sent events on request). Every request runs through the
one stepwise loop of ``trim-pomdp run`` (:func:`trim_pomdp.generation.loop.solve_problem`).

- :mod:`~trim_pomdp.serve.config`: settings, served routers and their model ids, secrets;
- :mod:`~trim_pomdp.serve.protocol`: the OpenAI wire format (requests, answers, chunks, errors);
- :mod:`~trim_pomdp.serve.engine`: one request through the loop (admission, deadline, cancellation);
- :mod:`~trim_pomdp.serve.upstreams`: the weak and strong models and the PRM;
- :mod:`~trim_pomdp.serve.metrics`: the Prometheus metrics;
- :mod:`~trim_pomdp.serve.app`: the FastAPI app and the server.

FastAPI, uvicorn and prometheus-client are imported only when an app is created.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ApiError",
    "ServeConfig",
    "ServedRouter",
    "create_app",
    "load_routers",
    "model_id",
    "prepare",
    "run_server",
]

_LAZY = {
    "ApiError": "protocol",
    "ServeConfig": "config",
    "ServedRouter": "config",
    "load_routers": "config",
    "model_id": "config",
    "create_app": "app",
    "prepare": "app",
    "run_server": "app",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
