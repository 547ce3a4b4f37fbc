"""PRM scoring throughput of the transformers backend vs a bare batched forward pass (GPU benchmark).

A randomly initialised model with Qwen2.5-Math-PRM-7B's configuration (Qwen2, 28 layers, hidden 3584, 28 heads
/ 4 KV heads, vocabulary 152064; a 2-label token-classification head), in bf16, built on the device with no
download. Inputs: N synthetic solutions (a problem of ~60–120 words and 2–12 steps of ~20–80 words each, with
a word-level tokenizer that knows ``<extra_0>``), the same for every measurement.

Measured, each as the median of ``--repeats`` timed passes after one warm-up pass:

* ``bare``: the model's forward on the pre-tokenised inputs, batched exactly as the backend batches them
  (sorted by length, ``--batch-size`` per pass, right padding) — the upper bound;
* ``score_batch``: :meth:`TransformersPRM.score_batch` (prompt rendering, tokenisation, forward, score
  extraction);
* ``loop``: the generation loop's path — every solution submitted concurrently to
  :class:`trim_pomdp.generation.BatchedPRM`, which batches them for ``score_batch``.

The ratio (throughput / bare throughput) is the number to read; target ≥ 0.9. ``--smoke`` runs a tiny config
on the CPU in seconds (for CI and machines without a GPU).

Usage: ``python benchmarks/prm_gpu.py`` (GPU; writes ``benchmark-results/prm_gpu.json``; finishes in well
under 5 minutes on one H100/H200) or ``python benchmarks/prm_gpu.py --smoke --out /tmp/prm_smoke.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from _common import default_out, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T_START = time.perf_counter()

CHAT = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen/Qwen2.5-Math-PRM-7B config.json (architecture fields), written out so nothing is downloaded
PRM_7B = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    max_position_embeddings=4096,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    hidden_act="silu",
    tie_word_embeddings=False,
    num_labels=2,
)
TINY = dict(
    vocab_size=4096,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    num_labels=2,
)


def make_tokenizer(transformers, n_words: int):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[PAD]": 1, "system": 2, "user": 3, "assistant": 4}
    for i in range(n_words):
        vocab[f"w{i}"] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", eos_token="<|im_end|>"
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<extra_0>"]})
    tok.chat_template = CHAT
    return tok


def make_solutions(n: int, n_words: int, scale: float, seed: int = 0) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(f"w{rng.randrange(n_words)}" for _ in range(max(1, int(k * scale))))

    return [
        (words(rng.randint(60, 120)), [words(rng.randint(20, 80)) for _ in range(rng.randint(2, 12))])
        for _ in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny config on the CPU")
    ap.add_argument("--n", type=int, default=None, help="solutions (default 192; smoke 24)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(default_out(__file__)), help="JSON result path")
    args = ap.parse_args()

    import torch
    import transformers

    from trim_pomdp.generation import BatchedPRM
    from trim_pomdp.prm.transformers_backend import TransformersPRM

    device = args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if not args.smoke and not device.startswith("cuda"):
        # the 7B configuration in float32 needs ~30 GB of host memory: refuse it before building anything
        sys.exit(
            f"prm_gpu.py: the 7B configuration needs a GPU (device {device!r}; torch sees "
            f"{'a GPU' if torch.cuda.is_available() else 'none'}): run with --smoke for the tiny CPU configuration"
        )
    if device == "cpu":
        # one intra-op thread: the worker thread of the loop path and the main thread then run alike, and
        # timings do not swing with other processes on a shared machine
        torch.set_num_threads(1)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    n = args.n or (24 if args.smoke else 192)
    cfg = TINY if args.smoke else PRM_7B
    n_words = 3000
    tok = make_tokenizer(transformers, n_words)
    config = transformers.Qwen2Config(**cfg, pad_token_id=tok.pad_token_id)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = transformers.Qwen2ForTokenClassification(config)
    torch.set_default_dtype(prev)
    model.eval()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    prm = TransformersPRM(model, tok, batch_size=args.batch_size)
    sols = make_solutions(n, n_words, scale=0.25 if args.smoke else 1.0)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    # the bare forward on exactly the backend's batches
    encoded = [tok.encode(prm.format(p, s), add_special_tokens=False) for p, s in sols]
    order = sorted(range(n), key=lambda i: len(encoded[i]))
    batches = []
    for start in range(0, n, args.batch_size):
        chunk = order[start : start + args.batch_size]
        width = max(len(encoded[i]) for i in chunk)
        ids = torch.full((len(chunk), width), prm.pad_id, dtype=torch.long)
        att = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, i in enumerate(chunk):
            ids[r, : len(encoded[i])] = torch.tensor(encoded[i])
            att[r, : len(encoded[i])] = 1
        batches.append((ids.to(device), att.to(device)))
    n_tokens = sum(len(e) for e in encoded)

    def bare() -> None:
        with torch.inference_mode():
            for ids, att in batches:
                model(input_ids=ids, attention_mask=att)
        sync()

    def direct() -> None:
        prm.score_batch(sols)
        sync()

    def loop() -> None:
        async def go():
            bp = BatchedPRM(prm, "prm", max_batch=4 * args.batch_size, max_wait_s=0.005)
            return await asyncio.gather(*(bp.score(p, s) for p, s in sols))

        asyncio.run(go())
        sync()

    timings = {}
    for name, fn in (("bare", bare), ("score_batch", direct), ("loop", loop)):
        fn()  # warm-up
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        timings[name] = statistics.median(ts)
    rows = {
        k: {
            "seconds": v,
            "solutions_per_s": n / v,
            "tokens_per_s": n_tokens / v,
            "ratio_to_bare": timings["bare"] / v,
        }
        for k, v in timings.items()
    }
    result = {
        "config": "tiny (smoke)" if args.smoke else "Qwen2.5-Math-PRM-7B architecture, random init",
        "dtype": str(dtype).replace("torch.", ""),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "params": n_params,
        "solutions": n,
        "tokens": n_tokens,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "build_s": build_s,
        "results": rows,
        "target_ratio": 0.9,
        "total_s": time.perf_counter() - T_START,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }
    print(
        f"{result['config']} on {result['gpu'] or device} ({dtype}), {n_params / 1e9:.2f}B params, "
        f"{n} solutions, {n_tokens} tokens"
    )
    print(f"{'path':<14}{'s (median)':>12}{'solutions/s':>14}{'tokens/s':>12}{'vs bare':>10}")
    for k, r in rows.items():
        print(
            f"{k:<14}{r['seconds']:>12.3f}{r['solutions_per_s']:>14.1f}{r['tokens_per_s']:>12.0f}"
            f"{r['ratio_to_bare']:>10.3f}"
        )
    print(f"total {result['total_s']:.1f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
