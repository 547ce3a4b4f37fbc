"""Cancelling a request's task makes no further upstream call: PRM prefixes waiting for a batch are dropped."""

from __future__ import annotations

import asyncio

from trim_pomdp.generation.backends._common import MicroBatcher


def test_cancelled_items_never_reach_the_batch_function():
    seen: list[list[str]] = []

    async def fn(items):
        seen.append(list(items))
        return [f"scored {x}" for x in items]

    async def main():
        batcher = MicroBatcher(fn, max_batch=8, max_wait_s=0.05)
        kept = asyncio.ensure_future(batcher.submit("kept"))
        dropped = asyncio.ensure_future(batcher.submit("dropped"))
        await asyncio.sleep(0.01)  # both wait for the batch to fill
        dropped.cancel()
        assert await kept == "scored kept"
        alone = asyncio.ensure_future(batcher.submit("alone"))
        await asyncio.sleep(0.01)
        alone.cancel()
        await asyncio.sleep(0.1)  # the batch window passes: nothing is left to send
        return batcher

    batcher = asyncio.run(main())
    assert seen == [["kept"]]
    assert batcher.items == 1


def test_failures_map_to_openai_errors_without_secrets():
    from trim_pomdp.exceptions import DataFormatError, ZeroLikelihoodError
    from trim_pomdp.generation.backends._common import ContextFullError, GenerationError, IncompleteReplyError
    from trim_pomdp.serve.config import ServeConfig
    from trim_pomdp.serve.engine import Engine
    from trim_pomdp.serve.metrics import ServeMetrics
    from trim_pomdp.serve.upstreams import Upstreams

    engine = Engine(ServeConfig(routers=("weak",)), {}, Upstreams(), ServeMetrics(), ["key-0123456789"])
    cases = [
        (GenerationError("weak step failed: key-0123456789 refused"), 502, "upstream_error"),
        (IncompleteReplyError("the stream was cut"), 502, "upstream_error"),
        (ContextFullError("no context left"), 502, "upstream_error"),
        (DataFormatError("the PRM returned nan"), 502, "upstream_error"),
        (ConnectionResetError("reset"), 502, "upstream_error"),
        (TimeoutError(), 504, "upstream_timeout"),
        (ZeroLikelihoodError("no class explains it"), 500, "server_error"),
    ]
    for exc, status, kind in cases:
        err = engine.error_of(exc)
        assert (err.status, err.type) == (status, kind), exc
        assert "key-0123456789" not in err.message
    wrapped = GenerationError("strong step failed after 3 attempt(s): timeout after 2 s")
    wrapped.__cause__ = TimeoutError()
    assert engine.error_of(wrapped).status == 504


def test_served_models_take_the_run_settings_the_prm_timeout_and_retries_included():
    """serve builds its models with the run's factory (one ModelSettings): --timeout and --max-retries reach
    the PRM as they do in `trim-pomdp run` (serve's own copy of the builders used to drop them)."""
    from trim_pomdp.generation.backends.factory import ModelSettings
    from trim_pomdp.generation.experiment import RunConfig
    from trim_pomdp.serve.config import ServeConfig
    from trim_pomdp.serve.upstreams import build_upstreams

    assert issubclass(ServeConfig, ModelSettings) and issubclass(RunConfig, ModelSettings)
    url = "http://127.0.0.1:9/v1"  # nothing is called while building
    config = ServeConfig(
        routers=("thr:0.5",), weak=url, weak_model="m", strong="m2", strong_url=url, prm="http://127.0.0.1:9",
        timeout=2.5, max_retries=1,
    )  # fmt: skip
    ups = build_upstreams(config, ["route"])
    assert ups.prm is not None and ups.prm.backend.timeout == 2.5
    assert (ups.prm.retry.timeout, ups.prm.retry.max_retries) == (2.5, 1)
