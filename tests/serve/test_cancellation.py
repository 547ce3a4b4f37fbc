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
