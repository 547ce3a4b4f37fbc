"""TRIM live: a vLLM-served weak model, Claude as the strong model, a PRM and a router, via the library API.

Start the servers first (one GPU each is plenty for 1.5B/7B models):

    vllm serve Qwen/Qwen2.5-Math-1.5B-Instruct --port 8000 --enable-prefix-caching
    vllm serve Qwen/Qwen2.5-Math-PRM-7B --port 8001        # pooling (reward) runner, auto-detected
    export ANTHROPIC_API_KEY=...

then

    python examples/live_vllm_claude.py --problems 20 --router thr:0.6 --out runs/live

``--router`` also takes a `trim-pomdp solve` output directory (BeliefRouter). The run is resumable and its
records feed `trim-pomdp metrics runs/live/records.jsonl`. ``--offline`` replaces the three servers by the
local fake servers of the test suite (scripted "What is A + B?" problems), to see the whole path work without
GPUs or keys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from trim_pomdp.generation import (
    BatchedPRM,
    Cache,
    CachedGenerator,
    LoopConfig,
    Problem,
    build_prm,
    build_strong,
    build_weak,
    load_dataset,
    run_loop,
)
from trim_pomdp.routers.spec import resolve_router


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weak-url", default="http://localhost:8000/v1")
    ap.add_argument("--weak-model", default="Qwen/Qwen2.5-Math-1.5B-Instruct")
    ap.add_argument("--prm-url", default="http://localhost:8001")
    ap.add_argument("--prm-model", default="Qwen/Qwen2.5-Math-PRM-7B")
    ap.add_argument("--strong", default="claude-sonnet-4-6")
    ap.add_argument("--dataset", default="math500")
    ap.add_argument("--problems", type=int, default=20)
    ap.add_argument("--router", default="thr:0.6")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--out", default="runs/live")
    ap.add_argument("--offline", action="store_true", help="use the test suite's local fake servers")
    args = ap.parse_args()

    servers = []
    if args.offline:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests._support.servers.fake import FakeAnthropicServer, FakeOpenAIServer

        oai, ant = FakeOpenAIServer().start(), FakeAnthropicServer().start()
        servers = [oai, ant]
        args.weak_url, args.prm_url = oai.url + "/v1", oai.url
        os.environ["ANTHROPIC_API_KEY"], os.environ["ANTHROPIC_BASE_URL"] = ant.api_key, ant.url
        problems = [Problem(f"q{i}", f"What is {i} + {i + 1}?", str(2 * i + 1)) for i in range(args.problems)]
    else:
        problems = load_dataset(args.dataset)[: args.problems]

    router = resolve_router(args.router)
    cache = Cache(Path(args.out) / "cache.sqlite")  # model and PRM calls: reruns and λ sweeps reuse them
    # the same backends as `trim-pomdp run --weak URL --prm URL` (Claude: the key from ANTHROPIC_API_KEY)
    weak = CachedGenerator(build_weak(args.weak_url, model_name=args.weak_model), cache)
    strong = CachedGenerator(build_strong(args.strong), cache)
    prm_backend, prm_name = build_prm(args.prm_url, model_name=args.prm_model)
    prm = BatchedPRM(prm_backend, prm_name, cache=cache)

    def show(trace: dict) -> None:
        acts = "".join("R" if s.get("action") == "regenerate" else "." for s in trace["steps"])
        print(
            f"{trace['query_id']:>24}  {'✓' if trace['correct'] else '✗'}  steps {acts:<30} "
            f"strong tokens {trace['strong_tokens']}"
        )

    try:
        summary = await run_loop(
            problems,
            weak,
            strong,
            prm,
            router.factory,
            LoopConfig(
                concurrency=args.concurrency, mode=router.mode, policy=router.policy, knob=router.knob
            ),
            args.out,
            settings={
                "router": args.router,
                "weak": args.weak_model,
                "strong": args.strong,
                "prm": args.prm_model,
            },
            on_result=show,
        )
    finally:
        await weak.aclose()
        await strong.aclose()
        await prm_backend.aclose()
        for s in servers:
            s.stop()
    print(
        f"accuracy {summary.accuracy:.3f} over {summary.finished} problems, "
        f"{summary.strong_tokens / max(1, summary.finished):.1f} strong tokens per problem; "
        f"records in {args.out}/records.jsonl"
    )


if __name__ == "__main__":
    asyncio.run(main())
