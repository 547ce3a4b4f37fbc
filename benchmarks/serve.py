"""Endpoint benchmark: what ``trim-pomdp serve`` adds per request, and its throughput, against the same loop in-process.

The upstreams are the project's fast local wire fakes (a fake vLLM server for the weak model and the PRM's
``/pooling``, a second one for the strong model), answering after ``--latency`` seconds (0 by default), in a
process of their own. Every problem is solved by the same stepwise loop (``solve_problem``) with the same backends
and the ``thr:0.5`` router, two ways:

- **served**: ``trim-pomdp serve`` in its own process, asked by the official ``openai`` SDK (``AsyncOpenAI``) from
  this process, one request per problem;
- **in-process**: ``solve_problem`` called directly in this process, on the same upstreams.

1. Overhead per request: one problem at a time; per problem the served latency (as the client sees it) and the
   in-process wall time; p50/p99 of each, of their paired difference, and the ratio of the medians.
2. Throughput at 64 and 256 concurrent clients: ``--requests`` problems (default 4 × concurrency) with that many
   in flight; requests per second both ways and their ratio.

Each measurement is repeated ``--repeats`` times (medians reported). The server, its client and the fakes share
this machine's cores, so the numbers say what the endpoint costs here, under the load recorded with them.

Usage: ``python benchmarks/serve.py [--latency 0] [--overhead-requests 200] [--repeats 3] [--out FILE]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import default_out, machine, write_result  # noqa: E402  (benchmarks/ is on sys.path when run)

from tests._support.servers.fake import FakeOpenAIServer  # noqa: E402
from tests.serve._server import NumberedSteps  # noqa: E402
from trim_pomdp.datasets.problems import Problem  # noqa: E402
from trim_pomdp.generation.backends.factory import build_prm, build_strong, build_weak  # noqa: E402
from trim_pomdp.generation.loop import LoopConfig, solve_problem  # noqa: E402
from trim_pomdp.generation.scoring import BatchedPRM  # noqa: E402
from trim_pomdp.routers.threshold import ThresholdRouter  # noqa: E402


def _fakes(latency: float, q: Any) -> None:
    # the scripted solver of `What is A + B?` (3 steps; the weak model errs at step 2 when 3 divides A + B)
    weak = FakeOpenAIServer(NumberedSteps(weak=True), delay_s=latency).start()
    strong = FakeOpenAIServer(NumberedSteps(weak=False, words_per_step=12), delay_s=latency).start()
    q.put((weak.url, strong.url))
    while True:
        time.sleep(3600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def question(i: int) -> str:
    return f"What is {i} + {i + 1}?"


def quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


class InProcess:
    """The loop called directly, on the same upstreams and backends as the server."""

    def __init__(self, weak_url: str, strong_url: str, max_batch: int) -> None:
        self.weak = build_weak(weak_url, model_name="weak", max_retries=2)
        self.strong = build_strong("big", url=strong_url, max_retries=2)
        self.backend, name = build_prm(weak_url)
        self.prm = BatchedPRM(self.backend, name, max_batch=max_batch)
        self.config = LoopConfig(policy="thr", knob=0.5)
        self.routers: list[ThresholdRouter] = []

    async def solve(self, i: int) -> float:
        router = self.routers.pop() if self.routers else ThresholdRouter(0.5)
        t0 = time.perf_counter()
        trace = await solve_problem(
            Problem(f"q{i}", question(i), ""), self.weak, self.strong, self.prm, router, self.config
        )
        wall = time.perf_counter() - t0
        self.routers.append(router)
        assert trace["stop"] == "final"
        return wall

    async def aclose(self) -> None:
        await self.weak.aclose()
        await self.strong.aclose()
        await self.backend.aclose()


class Served:
    """The endpoint in its own process and an openai SDK client."""

    def __init__(self, weak_url: str, strong_url: str) -> None:
        self.port = _free_port()
        args = [
            sys.executable, "-m", "trim_pomdp", "serve", "--router", "thr:0.5", "--weak", weak_url,
            "--weak-model", "weak", "--prm", weak_url, "--strong", "big", "--strong-url", strong_url,
            "--port", str(self.port), "--max-in-flight", "1024", "--max-retries", "2", "--log-level", "warning",
        ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.log = tempfile.TemporaryFile()  # a pipe nobody reads would block the server once full
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        self.url = f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        import openai

        self.client = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key="x", max_retries=0, timeout=300)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"serve exited: {self.log.read().decode()[-2000:]}")
            try:
                await self.client.models.list()
                return
            except Exception:
                await asyncio.sleep(0.2)
        raise RuntimeError("serve did not start")

    async def solve(self, i: int) -> float:
        t0 = time.perf_counter()
        r = await self.client.chat.completions.create(
            model="trim-thr/k=0.5", messages=[{"role": "user", "content": question(i)}]
        )
        wall = time.perf_counter() - t0
        assert r.choices[0].finish_reason == "stop"
        return wall

    async def aclose(self) -> None:
        await self.client.close()
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


async def overhead(served: Served, local: InProcess, n: int) -> dict[str, Any]:
    """One problem at a time, alternating the two ways on the same problem."""
    for i in range(10):  # warm-up: connections, imports, first-call costs
        await served.solve(i)
        await local.solve(i)
    s, p = [], []
    for i in range(n):
        s.append(await served.solve(i))
        p.append(await local.solve(i))
    diff = [a - b for a, b in zip(s, p, strict=True)]
    return {
        "requests": n,
        "served_ms": {"p50": 1e3 * quantile(s, 0.5), "p99": 1e3 * quantile(s, 0.99)},
        "in_process_ms": {"p50": 1e3 * quantile(p, 0.5), "p99": 1e3 * quantile(p, 0.99)},
        "overhead_ms": {"p50": 1e3 * quantile(diff, 0.5), "p99": 1e3 * quantile(diff, 0.99)},
        "ratio_p50": quantile(s, 0.5) / quantile(p, 0.5),
        "ratio_p99": quantile(s, 0.99) / quantile(p, 0.99),
    }


async def _gather(solve: Any, n: int, concurrency: int) -> float:
    pending = iter(range(n))

    async def worker() -> None:
        for i in pending:
            await solve(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


async def throughput(served: Served, local: InProcess, n: int, concurrency: int) -> dict[str, Any]:
    await _gather(served.solve, concurrency, concurrency)  # warm-up: open the connections
    await _gather(local.solve, concurrency, concurrency)
    rs = await _gather(served.solve, n, concurrency)
    rp = await _gather(local.solve, n, concurrency)
    return {
        "concurrency": concurrency,
        "requests": n,
        "served_rps": rs,
        "in_process_rps": rp,
        "ratio": rs / rp,
    }


async def one_repeat(weak_url: str, strong_url: str, args: argparse.Namespace) -> dict[str, Any]:
    served = Served(weak_url, strong_url)
    local = InProcess(weak_url, strong_url, max_batch=16)
    try:
        await served.start()
        out: dict[str, Any] = {"overhead": await overhead(served, local, args.overhead_requests)}
        out["throughput"] = [
            await throughput(served, local, args.requests or 4 * c, c) for c in args.concurrency
        ]
        return out
    finally:
        await served.aclose()
        await local.aclose()


def _median(runs: list[dict[str, Any]], *path: Any) -> float:
    vals = []
    for r in runs:
        v: Any = r
        for k in path:
            v = v[k]
        vals.append(float(v))
    return statistics.median(vals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.0, help="Seconds each fake upstream call takes.")
    ap.add_argument("--overhead-requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--requests", type=int, default=None, help="Problems per throughput run (default 4 × C).")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(default_out(__file__)))
    args = ap.parse_args()
    q: Any = mp.Queue()
    fakes = mp.Process(target=_fakes, args=(args.latency, q), daemon=True)
    fakes.start()
    try:
        weak_url, strong_url = q.get(timeout=60)
        machine_before = machine()
        runs = [asyncio.run(one_repeat(weak_url, strong_url, args)) for _ in range(args.repeats)]
    finally:
        fakes.kill()
    result = {
        "latency_s": args.latency,
        "router": "thr:0.5",
        "machine_before": machine_before,
        "runs": runs,
        "overhead_median": {
            "served_p50_ms": _median(runs, "overhead", "served_ms", "p50"),
            "served_p99_ms": _median(runs, "overhead", "served_ms", "p99"),
            "in_process_p50_ms": _median(runs, "overhead", "in_process_ms", "p50"),
            "in_process_p99_ms": _median(runs, "overhead", "in_process_ms", "p99"),
            "overhead_p50_ms": _median(runs, "overhead", "overhead_ms", "p50"),
            "overhead_p99_ms": _median(runs, "overhead", "overhead_ms", "p99"),
            "ratio_p50": _median(runs, "overhead", "ratio_p50"),
            "ratio_p99": _median(runs, "overhead", "ratio_p99"),
        },
        "throughput_median": [
            {
                "concurrency": c,
                "served_rps": _median(runs, "throughput", k, "served_rps"),
                "in_process_rps": _median(runs, "throughput", k, "in_process_rps"),
                "ratio": _median(runs, "throughput", k, "ratio"),
            }
            for k, c in enumerate(args.concurrency)
        ],
    }
    m = machine()
    print(f"machine: {m['platform']}, {m['cpus']} CPUs, load {m['load_average_1_5_15']}")
    o = result["overhead_median"]
    print(f"per request, one at a time (median of {args.repeats} runs of {args.overhead_requests}):")
    print(f"  served     p50 {o['served_p50_ms']:8.2f} ms   p99 {o['served_p99_ms']:8.2f} ms")
    print(f"  in-process p50 {o['in_process_p50_ms']:8.2f} ms   p99 {o['in_process_p99_ms']:8.2f} ms")
    print(f"  overhead   p50 {o['overhead_p50_ms']:8.2f} ms   p99 {o['overhead_p99_ms']:8.2f} ms")
    print(f"  ratio served / in-process: p50 {o['ratio_p50']:.3f}, p99 {o['ratio_p99']:.3f}")
    for t in result["throughput_median"]:
        print(
            f"  {t['concurrency']:4d} concurrent: served {t['served_rps']:7.1f} req/s, in-process "
            f"{t['in_process_rps']:7.1f} req/s, ratio {t['ratio']:.3f}"
        )
    write_result(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
