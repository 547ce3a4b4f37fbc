"""Qwen2.5-Math-PRM format, score extraction, the transformers backend and `trim-pomdp score-processbench`.

No download: the tests build a word-level tokenizer with a Qwen-style chat template and the ``<extra_0>`` special
token, and tiny randomly initialised models.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from tests._support.data import require_shared_data  # noqa: E402
from trim_pomdp.cli import main  # noqa: E402
from trim_pomdp.datasets.scored import load_scored_items  # noqa: E402
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError  # noqa: E402
from trim_pomdp.prm import PRMBackend, qwen  # noqa: E402
from trim_pomdp.prm.transformers_backend import TransformersPRM  # noqa: E402

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = (
    "please reason step by and put your final answer within \\boxed{} . the is a problem what 1 + 2 = 3 so "
    "we add then it x y of sue has flamingos pink white"
).split()


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
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", qwen.STEP_SEPARATOR]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        num_labels=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    return transformers.Qwen2ForTokenClassification(config).eval()


class RiggedPRM(torch.nn.Module):
    """Stands in for a remote-code PRM: returns a tuple whose first element is logits (B, L, 2); at the k-th
    separator of each row the logits are ``table[k]``."""

    def __init__(self, table, separator_id):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))
        self.separator_id = separator_id
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        is_sep = input_ids == self.separator_id
        k = (torch.cumsum(is_sep.long(), dim=1) - 1).clamp(min=0, max=self.table.shape[0] - 1)
        logits = torch.where(is_sep[..., None], self.table[k], torch.zeros(2))
        return (logits + 0 * self.dummy,)


PROBLEM = "what is 1 + 2 ?"
STEPS = ["we add 1 + 2 .", "so it is 3 .", "the final answer is \\boxed{} 3 ."]


def test_messages_and_format():
    tok = make_tokenizer()
    msgs = qwen.build_messages(PROBLEM, STEPS)
    assert msgs[0] == {"role": "system", "content": qwen.SYSTEM_PROMPT}
    assert qwen.SYSTEM_PROMPT == "Please reason step by step, and put your final answer within \\boxed{}."
    assert msgs[1] == {"role": "user", "content": PROBLEM}
    assert msgs[2]["content"] == "<extra_0>".join(STEPS) + "<extra_0>"
    text = qwen.format_prm_input(PROBLEM, STEPS, tok)
    assert text.count("<extra_0>") == 3 and text.startswith("<|im_start|>system\n")
    assert "<|im_start|>assistant\n" + STEPS[0] + "<extra_0>" in text
    # without a tokenizer (a PRM behind a server) the same text is written directly
    assert qwen.format_prm_input(PROBLEM, STEPS) == text
    with pytest.raises(InvalidParameterError, match="separator"):
        qwen.format_prm_input(PROBLEM, ["a<extra_0>b"], tok)
    with pytest.raises(InvalidParameterError, match="empty"):
        qwen.build_messages(PROBLEM, [])
    with pytest.raises(InvalidParameterError, match="list of step strings"):
        qwen.build_messages(PROBLEM, "one string")
    tok.chat_template = None
    with pytest.raises(InvalidParameterError, match="chat template"):
        qwen.format_prm_input(PROBLEM, STEPS, tok)


def _real_pairs():
    path = require_shared_data("prm/qwen2_5_math_prm_reward_step.json")
    return np.array(json.loads(path.read_text())[0])


def test_extraction_from_real_pairs():
    pairs = _real_pairs()
    assert qwen.step_scores_from_probs(pairs) == pytest.approx([0.9995, 0.1813, 0.9746, 0.9995], abs=1e-4)
    # the pairs as logits (any additive constant per row) -> softmax P(pos) at the separators, in order
    logits = np.log(pairs) + np.array([[3.0], [-2.0], [0.5], [7.0]])
    seq_logits = np.zeros((9, 2))
    ids = np.array([5, 7, 9, 7, 9, 9, 7, 7, 1])
    seq_logits[ids == 7] = logits
    got = qwen.step_scores_from_logits(seq_logits, ids, separator_id=7, n_steps=4)
    assert got == pytest.approx((pairs[:, 1] / pairs.sum(axis=1)).tolist(), abs=1e-9)
    padding = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0])  # a separator under padding is not a step
    assert len(qwen.step_scores_from_logits(seq_logits, ids, separator_id=7, attention_mask=padding)) == 3
    with pytest.raises(DataFormatError, match=r"3 step separators .* for 4 steps"):
        qwen.step_scores_from_logits(seq_logits, ids, separator_id=7, n_steps=4, attention_mask=padding)


def test_extraction_errors():
    with pytest.raises(DataFormatError, match="sum to 1"):
        qwen.step_scores_from_probs([[0.5, 0.7]])
    with pytest.raises(DataFormatError, match="shape"):
        qwen.step_scores_from_probs([0.5, 0.5])
    with pytest.raises(DataFormatError, match="match"):
        qwen.step_scores_from_logits(np.zeros((3, 2)), [1, 2], 1)
    assert qwen.step_scores_from_logits(np.zeros((2, 2)), [1, 2], 7) == []


def test_backend_reads_scores_at_separators_of_real_trace():
    """A PRM emitting the real Qwen2.5-Math-PRM-7B pairs at its separators gives back the real scores."""
    pairs = _real_pairs()
    tok = make_tokenizer()
    sep = tok.convert_tokens_to_ids("<extra_0>")
    prm = TransformersPRM(RiggedPRM(np.log(pairs), sep), tok, batch_size=2)
    steps = ["sue has 18 pink flamingos .", "1 + 2 = 3", "so 3 + 3 = 6", "the answer is 6"]
    assert prm.score("sue has flamingos", steps) == pytest.approx([0.9995, 0.1813, 0.9746, 0.9995], abs=2e-4)
    # in a padded batch with other lengths, and through the plain-tensor and tuple output paths
    batch = prm.score_batch([("x", steps[:2]), ("sue has flamingos", steps), ("y", steps[:1])])
    assert [len(b) for b in batch] == [2, 4, 1]
    assert batch[1] == pytest.approx([0.9995, 0.1813, 0.9746, 0.9995], abs=2e-4)
    assert batch[0] == pytest.approx([0.9995, 0.1813], abs=2e-4)


def test_tiny_token_classification_model_end_to_end():
    tok = make_tokenizer()
    model = make_model(tok)
    prm = TransformersPRM(model, tok, batch_size=2, device="cpu")
    assert isinstance(prm, PRMBackend)
    alone = prm.score(PROBLEM, STEPS)
    assert len(alone) == 3 and all(0.0 <= s <= 1.0 for s in alone)
    # equals a manual forward pass on the formatted input
    ids = tok.encode(qwen.format_prm_input(PROBLEM, STEPS, tok), add_special_tokens=False)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    sep = torch.tensor(ids) == tok.convert_tokens_to_ids("<extra_0>")
    manual = torch.softmax(logits[sep].float(), dim=-1)[:, 1].tolist()
    assert alone == pytest.approx(manual, abs=1e-5)
    # batching with padding does not change a solution's scores
    batch = prm.score_batch([(PROBLEM, STEPS[:1]), (PROBLEM * 3, STEPS * 2), (PROBLEM, STEPS)])
    assert batch[2] == pytest.approx(alone, abs=1e-5)
    assert [len(b) for b in batch] == [1, 6, 3]


def test_backend_errors():
    tok = make_tokenizer()
    with pytest.raises(InvalidParameterError, match="tokenizer is required"):
        TransformersPRM(make_model(tok))
    with pytest.raises(InvalidParameterError, match="batch_size"):
        TransformersPRM(make_model(tok), tok, batch_size=0)
    base = transformers.Qwen2Model(make_model(tok).config)
    with pytest.raises(DataFormatError, match="token-classification"):
        TransformersPRM(base, tok).score(PROBLEM, STEPS)
    prm = TransformersPRM(make_model(tok), tok, max_length=10)
    with pytest.raises(InvalidParameterError, match="maximum of 10"):
        prm.score(PROBLEM, STEPS)
    from tokenizers import Tokenizer, models

    plain = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab={"[UNK]": 0}, unk_token="[UNK]")), unk_token="[UNK]"
    )
    with pytest.raises(InvalidParameterError, match="separator"):
        TransformersPRM(make_model(tok), plain)


@pytest.fixture
def saved_prm(tmp_path):
    tok = make_tokenizer()
    path = tmp_path / "tiny-prm"
    make_model(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def pb_dir(tmp_path):
    d = tmp_path / "pb"
    d.mkdir()
    for split in ("gsm8k", "math"):
        recs = [
            {
                "id": f"{split}-{i}",
                "generator": "g",
                "problem": f"what is {i} + 2 ?",
                "steps": STEPS[: 1 + i % 3],
                "final_answer_correct": i % 2 == 0,
                "label": -1 if i % 2 == 0 else 0,
            }
            for i in range(5)
        ]
        (d / f"{split}.json").write_text(json.dumps(recs))
    return d


def test_from_pretrained_local_folder(saved_prm):
    prm = TransformersPRM.from_pretrained(str(saved_prm), device="cpu")
    assert isinstance(prm.model, transformers.Qwen2ForTokenClassification)
    assert len(prm.score(PROBLEM, STEPS)) == 3


def test_cli_score_processbench_end_to_end_and_resume(saved_prm, pb_dir, tmp_path):
    out = tmp_path / "scores.jsonl"
    runner = CliRunner()
    args = [
        "score-processbench",
        "--prm",
        str(saved_prm),
        "--out",
        str(out),
        "--data-dir",
        str(pb_dir),
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--split",
        "gsm8k",
        "--split",
        "math",
    ]
    res = runner.invoke(main, [*args[:-2], "--limit", "3"])
    assert res.exit_code == 0, res.output
    first = load_scored_items(out)
    assert [s.item.id for s in first] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
    assert all(len(s.prm_scores) == s.item.n_steps and s.prm == str(saved_prm) for s in first)
    assert "error acc" in res.output
    # rerun on everything: only the 7 missing items are scored; finished lines are left untouched
    before = out.read_text()
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "3 already in" in res.output and "7 to score" in res.output
    assert out.read_text().startswith(before)
    allitems = load_scored_items(out)
    assert sorted(s.item.id for s in allitems) == sorted(
        f"{sp}-{i}" for sp in ("gsm8k", "math") for i in range(5)
    )
    # resumed scores equal a fresh scoring (deterministic model)
    prm = TransformersPRM.from_pretrained(str(saved_prm), device="cpu")
    s = next(x for x in allitems if x.item.id == "math-4")
    assert s.prm_scores == pytest.approx(prm.score(s.item.problem, s.item.steps), abs=1e-5)
    res = runner.invoke(main, args)
    assert res.exit_code == 0 and "0 to score" in res.output


def test_cli_errors(saved_prm, pb_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "score-processbench",
            "--prm",
            str(saved_prm),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--data-dir",
            str(tmp_path / "absent"),
        ],
    )
    assert res.exit_code != 0 and "gsm8k" in res.output and "Traceback" not in res.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "gsm8k-0"}\n')
    res = runner.invoke(
        main,
        [
            "score-processbench",
            "--prm",
            str(saved_prm),
            "--out",
            str(bad),
            "--data-dir",
            str(pb_dir),
            "--split",
            "gsm8k",
        ],
    )
    assert res.exit_code != 0 and "line 1" in res.output and "choose another --out" in res.output
    res = runner.invoke(
        main,
        [
            "score-processbench",
            "--prm",
            str(tmp_path / "no-model"),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--data-dir",
            str(pb_dir),
            "--split",
            "gsm8k",
        ],
    )
    assert res.exit_code != 0 and "could not load PRM" in res.output


REMOTE_CODE = '''
import torch
from transformers import PreTrainedModel, Qwen2Config, Qwen2Model


class TinyPRMConfig(Qwen2Config):
    model_type = "tiny_prm"


class TinyProcessRewardModel(PreTrainedModel):
    """Shaped like Qwen2.5-Math-PRM's remote-code Qwen2ForProcessRewardModel: a 2-label head, tuple output."""

    config_class = TinyPRMConfig

    def __init__(self, config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        self.score = torch.nn.Sequential(torch.nn.Linear(config.hidden_size, config.hidden_size), torch.nn.ReLU(),
                                         torch.nn.Linear(config.hidden_size, 2))
        self.post_init()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return (self.score(hidden),)
'''


def test_from_pretrained_remote_code_prm(tmp_path):
    """A checkpoint with its own modelling code (auto_map, trust_remote_code) loads through AutoModel and scores.

    Loaded in a subprocess with its own HF_MODULES_CACHE, so the test writes nothing outside tmp_path.
    """
    import importlib.util
    import subprocess
    import sys

    from tests._support.data import REPO_ROOT

    folder = tmp_path / "tiny-remote-prm"
    folder.mkdir()
    (folder / "modeling_tiny.py").write_text(REMOTE_CODE)
    spec = importlib.util.spec_from_file_location("modeling_tiny", folder / "modeling_tiny.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tok = make_tokenizer()
    torch.manual_seed(0)
    config = mod.TinyPRMConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    config.auto_map = {
        "AutoConfig": "modeling_tiny.TinyPRMConfig",
        "AutoModel": "modeling_tiny.TinyProcessRewardModel",
    }
    model = mod.TinyProcessRewardModel(config).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    expected = TransformersPRM(model, tok).score(PROBLEM, STEPS)

    code = (
        "import json, sys\n"
        "from trim_pomdp.prm.transformers_backend import TransformersPRM\n"
        "prm = TransformersPRM.from_pretrained(sys.argv[1], device='cpu')\n"
        "print(json.dumps([type(prm.model).__name__, prm.score(sys.argv[2], json.loads(sys.argv[3]))]))\n"
    )
    env = dict(__import__("os").environ, HF_MODULES_CACHE=str(tmp_path / "hf_modules"), HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder), PROBLEM, json.dumps(STEPS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    name, scores = json.loads(out.stdout.strip().splitlines()[-1])
    assert name == "TinyProcessRewardModel"
    assert scores == pytest.approx(expected, abs=1e-5)
