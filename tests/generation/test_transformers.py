"""End to end with local models: a tiny random causal LM as M_w and a tiny random PRM (no download)."""

from __future__ import annotations

import asyncio

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from tests._support.servers.fake import FakeAnthropicServer  # noqa: E402
from trim_pomdp._internal.jsonl import read_jsonl  # noqa: E402
from trim_pomdp.generation import (  # noqa: E402
    AnthropicStepGenerator,
    BatchedPRM,
    LoopConfig,
    Problem,
    RetryPolicy,
    TransformersStepGenerator,
    run,
)
from trim_pomdp.generation.runs import RECORD_KEYS  # noqa: E402

CHAT = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = (
    "please reason step by and put your final answer within the is what 1 + 2 3 4 5 so we add it ? .".split()
)


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[PAD]": 1}
    for w in ["system", "user", "assistant", *WORDS]:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", eos_token="<|im_end|>"
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<extra_0>"]})
    tok.chat_template = CHAT
    return tok


def tiny_config(tok, **kw):
    return transformers.Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        **kw,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tok = make_tokenizer()
    torch.manual_seed(0)
    lm = transformers.Qwen2ForCausalLM(tiny_config(tok)).eval()
    prm = transformers.Qwen2ForTokenClassification(tiny_config(tok, num_labels=2)).eval()
    d = tmp_path_factory.mktemp("weak")
    lm.save_pretrained(d)
    tok.save_pretrained(d)
    return tok, str(d), prm


def test_transformers_weak_steps_and_determinism(models):
    _tok, path, _ = models
    gen = TransformersStepGenerator(path, max_tokens_per_step=5, model_name="tiny")  # loads from disk by path

    async def go():
        a = await gen.generate_step("what is 1 + 2 ?", [])
        b = await gen.generate_step("what is 1 + 2 ?", [])
        c = await asyncio.gather(*(gen.generate_step("what is 1 + 2 ?", [a.text]) for _ in range(3)))
        return a, b, c

    a, b, c = asyncio.run(go())
    assert a.text == b.text and 1 <= a.tokens <= 5 and a.finish in ("length", "eos", "step", "empty")
    assert len({r.text for r in c}) == 1  # greedy: identical prefixes give identical steps
    assert gen.build_prompt("p", ["s1", "s2"]).endswith("<|im_start|>assistant\ns1\n\ns2\n\n")


def test_end_to_end_with_tiny_models(models, tmp_path):
    prm_mod = pytest.importorskip("trim_pomdp.prm.transformers_backend")
    tok, path, prm_model = models
    weak = TransformersStepGenerator(path, max_tokens_per_step=4, model_name="tiny-weak")
    prm = BatchedPRM(prm_mod.TransformersPRM(prm_model, tok, batch_size=4), "tiny-prm", max_batch=8)
    probs = [Problem(f"p{i}", f"what is {i} + 2 ?", str(i + 2)) for i in range(1, 3)]
    with FakeAnthropicServer() as ant:
        strong = AnthropicStepGenerator(api_key=ant.api_key, base_url=ant.url, retry=RetryPolicy(timeout=10))

        class Alternate:
            def __init__(self):
                self.last_decision = {}

            def reset(self):
                self.n = 0

            def decide(self, obs):
                assert len(obs.scores) == obs.t and all(0.0 <= s <= 1.0 for s in obs.scores)
                self.n += 1
                return "regenerate" if obs.t == 2 else "continue"

        s = run(
            probs,
            weak,
            strong,
            prm,
            Alternate,
            LoopConfig(max_steps=3, concurrency=3, policy="alt", knob=1),
            tmp_path / "run",
        )
    assert s.completed == 2 and s.failed == 0
    traces = read_jsonl(tmp_path / "run" / "traces.jsonl")
    for t in traces:
        assert len(t["scores"]) == t["n_steps"] and all(0 <= x <= 1 for x in t["scores"])
        if t["n_steps"] >= 2:
            st = t["steps"][1]
            assert st["action"] == "regenerate" and st["strong"]["model"] == "claude-sonnet-4-6"
            assert t["strong_tokens"] == st["strong"]["tokens"] > 0
    assert all(tuple(r) == RECORD_KEYS for r in read_jsonl(tmp_path / "run" / "records.jsonl"))


def test_cli_with_local_weak_model_and_prm(models, tmp_path):
    """`trim-pomdp run --weak DIR --prm DIR`: both loaded from disk by the CLI (no server for them)."""
    import json

    from click.testing import CliRunner

    from tests._support.servers.fake import FakeOpenAIServer, ScriptedMathModel
    from trim_pomdp.cli import main

    pytest.importorskip("trim_pomdp.prm.transformers_backend")
    tok, weak_dir, prm_model = models
    prm_dir = tmp_path / "prm"
    prm_model.save_pretrained(prm_dir)
    tok.save_pretrained(prm_dir)
    data = tmp_path / "p.jsonl"
    data.write_text(
        "".join(json.dumps({"problem": f"what is {i} + 2 ?", "answer": i + 2}) + "\n" for i in range(2))
    )
    with FakeOpenAIServer(ScriptedMathModel(weak=False)) as strong:
        args = [
            "run",
            "--dataset",
            str(data),
            "--weak",
            weak_dir,
            "--prm",
            str(prm_dir),
            "--device",
            "cpu",
            "--strong",
            "big",
            "--strong-url",
            strong.url,
            "--router",
            "thr:0.5",
            "--max-steps",
            "2",
            "--max-tokens-per-step",
            "3",
            "--out",
            str(tmp_path / "run"),
        ]
        r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    traces = read_jsonl(tmp_path / "run" / "traces.jsonl")
    assert len(traces) == 2 and all(len(t["scores"]) == t["n_steps"] for t in traces)
    assert all(t["steps"][0]["weak"]["model"] == weak_dir for t in traces)


def test_weak_template_auto_takes_the_tokenizer_from_weak_tokenizer(tmp_path):
    """The served name is often not a folder or hub id (``transformers serve`` names it by its path on the
    server, llama.cpp by its GGUF): ``tokenizer=`` (``--weak-tokenizer``) says where the chat template is."""
    from trim_pomdp.exceptions import TrimPomdpError
    from trim_pomdp.generation.backends import build_weak

    make_tokenizer().save_pretrained(tmp_path / "tok")
    gen = build_weak(
        "http://127.0.0.1:9", model_name="smollm2.Q4_1", template="auto", tokenizer=str(tmp_path / "tok")
    )
    assert gen.model == "smollm2.Q4_1"
    assert gen.build_prompt("what is 1 + 2 ?", ["so we add"]) == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\nwhat is 1 + 2 ?<|im_end|>\n<|im_start|>assistant\nso we add\n\n"
    )
    with pytest.raises(TrimPomdpError) as err:  # without it the served name is looked up, and not found
        build_weak("http://127.0.0.1:9", model_name=str(tmp_path / "no-such-model"), template="auto")
    assert "\n" not in str(err.value)
