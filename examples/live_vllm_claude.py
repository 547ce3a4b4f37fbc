"""TRIM live: a served weak model, a strong model (Claude or any OpenAI-compatible server), a PRM and a router.

Start the servers first (one GPU each is plenty for 1.5B/7B models):

    vllm serve Qwen/Qwen2.5-Math-1.5B-Instruct --port 8000 --enable-prefix-caching
    vllm serve Qwen/Qwen2.5-Math-PRM-7B --port 8001        # pooling (reward) runner, auto-detected
    export ANTHROPIC_API_KEY=...

then

    python examples/live_vllm_claude.py --problems 20 --router thr:0.6 --out runs/live

The strong model can be any OpenAI-compatible server instead of Claude (``--strong-url URL --strong NAME``),
and the PRM a local model folder or hub id instead of a pooling server (``--prm PATH_OR_ID``); the weak server
can be any OpenAI-compatible one too (vLLM, SGLang, TGI, llama.cpp, ``transformers serve``: step and end
detection adapt to it). With a small model on a CPU, for example:

    transformers serve ./smollm2-135m --port 8000 --device cpu
    python examples/live_vllm_claude.py --dataset gsm8k --weak-url http://localhost:8000 \
        --weak-model ./smollm2-135m --weak-template auto --strong-url http://localhost:8000 \
        --strong ./smollm2-135m --prm ./tiny-prm --problems 3 --out runs/smol

``--router`` also takes a `trim-pomdp solve` output directory (BeliefRouter). The run is resumable and its
records feed `trim-pomdp metrics runs/live/records.jsonl`. ``--offline`` replaces the servers by the local fake
servers of the test suite (scripted "What is A + B?" problems), to see the whole path work without GPUs or keys.
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
    ap.add_argument("--weak-template", default="qwen", help="qwen | auto | FILE (see trim-pomdp run --help)")
    ap.add_argument("--prm", default="http://localhost:8001", help="a pooling server URL or a local PRM")
    ap.add_argument("--prm-model", default="Qwen/Qwen2.5-Math-PRM-7B", help="the served PRM's name")
    ap.add_argument("--strong", default="claude-sonnet-4-6")
    ap.add_argument("--strong-url", default=None, help="an OpenAI-compatible strong model (else Claude)")
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
        from tests._support.servers.fake import FakeAnthropicServer, FakeOpenAIServer, ScriptedMathModel

        oai, ant = FakeOpenAIServer().start(), FakeAnthropicServer().start()
        big = FakeOpenAIServer(ScriptedMathModel(weak=False)).start()  # an OpenAI-compatible strong model
        servers = [oai, ant, big]
        args.weak_url, args.prm = oai.url + "/v1", oai.url
        if args.strong_url is None:
            os.environ["ANTHROPIC_API_KEY"], os.environ["ANTHROPIC_BASE_URL"] = ant.api_key, ant.url
        else:
            args.strong_url = big.url
        problems = [Problem(f"q{i}", f"What is {i} + {i + 1}?", str(2 * i + 1)) for i in range(args.problems)]
    else:
        problems = load_dataset(args.dataset)[: args.problems]

    router = resolve_router(args.router)
    cache = Cache(Path(args.out) / "cache.sqlite")  # model and PRM calls: reruns and λ sweeps reuse them
    # the same backends as `trim-pomdp run --weak URL --strong-url URL --prm URL_OR_MODEL` (Claude: the key from
    # ANTHROPIC_API_KEY)
    weak = CachedGenerator(
        build_weak(args.weak_url, model_name=args.weak_model, template=args.weak_template), cache
    )
    strong = CachedGenerator(build_strong(args.strong, url=args.strong_url), cache)
    prm_backend, prm_name = build_prm(
        args.prm, model_name=args.prm_model, device="cpu" if args.offline else None
    )
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
                "prm": prm_name,
            },
            on_result=show,
        )
    finally:
        await weak.aclose()
        await strong.aclose()
        if hasattr(prm_backend, "aclose"):
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
