"""Batched PRM scoring with a transformers model (Qwen2.5-Math-PRM format).

Works with

- Qwen2.5-Math-PRM checkpoints loaded with ``AutoModel.from_pretrained(..., trust_remote_code=True)``, whose
  forward returns a tuple / model output with per-token logits of shape ``(batch, seq, 2)`` first;
- any ``*ForTokenClassification`` model with ``num_labels >= 2`` (output ``.logits``).

torch and transformers are imported on first use (``pip install 'trim-pomdp[hf]'``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from trim_pomdp._internal.optional import require
from trim_pomdp.exceptions import BackendUnavailableError, DataFormatError, InvalidParameterError
from trim_pomdp.prm.qwen import (
    POSITIVE_LABEL,
    STEP_SEPARATOR,
    SYSTEM_PROMPT,
    format_prm_input,
    step_scores_from_logits,
)

__all__ = ["TransformersPRM", "default_device"]

_FEATURE = "the transformers PRM backend"
#: More labels than this means the model returned hidden states, not a classification head.
_MAX_LABELS = 16


def _torch():
    return require("torch", "hf", _FEATURE)


def default_device() -> str:
    """``"cuda"`` if a CUDA GPU is visible, else ``"mps"`` on Apple silicon, else ``"cpu"``."""
    torch = _torch()
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _resolve_dtype(dtype, device: str):
    torch = _torch()
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        value = getattr(torch, dtype, None)
        if not isinstance(value, torch.dtype):
            raise InvalidParameterError(
                f"unknown dtype {dtype!r}; use e.g. 'bfloat16', 'float16' or 'float32'"
            )
        return value
    return dtype


class TransformersPRM:
    """Score solution steps with a transformers PRM.

    Parameters
    ----------
    model : torch.nn.Module or str
        A loaded PRM (see the module docstring), or a model id / local path passed to :meth:`from_pretrained`.
    tokenizer : transformers tokenizer, optional
        Required when ``model`` is a module; must have a chat template and know :data:`STEP_SEPARATOR`.
    batch_size : int
        Sequences per forward pass.
    device : str, optional
        Where to run (default: the model's current device, or :func:`default_device` when loading by name).
    system_prompt : str or None
        System message of the prompt (Qwen2.5-Math-PRM's by default).
    separator : str
        Step separator token.
    positive_label : int
        Index of the "step is correct" class in the head's labels.
    max_length : int, optional
        Longest accepted input in tokens (default the model config's ``max_position_embeddings``); longer
        inputs raise :class:`InvalidParameterError` instead of being truncated (truncation would drop steps).

    Examples
    --------
    >>> prm = TransformersPRM.from_pretrained("Qwen/Qwen2.5-Math-PRM-7B")       # doctest: +SKIP
    >>> prm.score("What is 1+1?", ["1+1 = 2.", "The answer is \\\\boxed{2}."])  # doctest: +SKIP
    [0.99..., 0.99...]
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        batch_size: int = 8,
        device: str | None = None,
        *,
        system_prompt: str | None = SYSTEM_PROMPT,
        separator: str = STEP_SEPARATOR,
        positive_label: int = POSITIVE_LABEL,
        max_length: int | None = None,
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            loaded = TransformersPRM.from_pretrained(str(model), device=device)
            model, tokenizer = loaded.model, tokenizer if tokenizer is not None else loaded.tokenizer
        if tokenizer is None:
            raise InvalidParameterError("tokenizer is required when model is a loaded module")
        if int(batch_size) < 1:
            raise InvalidParameterError(f"batch_size must be >= 1, got {batch_size}")
        torch = _torch()
        self.model: Any = model
        self.tokenizer: Any = tokenizer
        self.batch_size = int(batch_size)
        self.system_prompt = system_prompt
        self.separator = separator
        self.positive_label = int(positive_label)
        if device is not None:
            self.model.to(device)
        try:
            self.device = next(self.model.parameters()).device
        except StopIteration:  # a parameter-free module
            self.device = torch.device(device or "cpu")
        self.model.eval()
        self.separator_id = self._separator_id()
        config = getattr(model, "config", None)
        self.max_length = max_length or getattr(config, "max_position_embeddings", None)
        self.pad_id = self._pad_id()

    # ------------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        *,
        device: str | None = None,
        dtype=None,
        trust_remote_code: bool = True,
        batch_size: int = 8,
        **kwargs,
    ) -> TransformersPRM:
        """Load a PRM and its tokenizer from the hub or a local folder.

        Checkpoints whose config lists a ``*ForTokenClassification`` architecture load with
        ``AutoModelForTokenClassification``; anything else (e.g. Qwen2.5-Math-PRM's remote-code
        ``Qwen2ForProcessRewardModel``) with ``AutoModel`` and ``trust_remote_code``.

        Parameters
        ----------
        name : str
            Hub id (e.g. ``"Qwen/Qwen2.5-Math-PRM-7B"``) or local path.
        device : str, optional
            Default :func:`default_device`.
        dtype : str or torch.dtype, optional
            Default bfloat16 on CUDA, float32 elsewhere.
        trust_remote_code : bool
            Allow the checkpoint's own modelling code (needed by Qwen2.5-Math-PRM).
        batch_size : int
        **kwargs
            Passed to :class:`TransformersPRM`.
        """
        transformers = require("transformers", "hf", _FEATURE)
        device = device or default_device()
        torch_dtype = _resolve_dtype(dtype, device)
        try:
            config = transformers.AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
            tokenizer = transformers.AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        except OSError as exc:
            raise BackendUnavailableError(
                f"could not load PRM {name!r}: {exc}. Give a hub id such as Qwen/Qwen2.5-Math-PRM-7B "
                "(needs network access or a populated Hugging Face cache) or a local model folder."
            ) from exc
        archs = getattr(config, "architectures", None) or []
        auto = (
            transformers.AutoModelForTokenClassification
            if any(a.endswith("ForTokenClassification") for a in archs)
            else transformers.AutoModel
        )
        model = auto.from_pretrained(name, trust_remote_code=trust_remote_code, dtype=torch_dtype)
        return cls(model, tokenizer, batch_size=batch_size, device=device, **kwargs)

    def _separator_id(self) -> int:
        tok = self.tokenizer
        ids = tok.encode(self.separator, add_special_tokens=False)
        if len(ids) != 1 or (tok.unk_token_id is not None and ids[0] == tok.unk_token_id):
            raise InvalidParameterError(
                f"the tokenizer does not know the step separator {self.separator!r} as one token "
                f"(it encodes to {ids}); use the PRM's own tokenizer or add it as a special token"
            )
        return int(ids[0])

    def _pad_id(self) -> int:
        tok = self.tokenizer
        for cand in (tok.pad_token_id, tok.eos_token_id):
            if cand is not None:
                return int(cand)
        return 0  # any id: padded positions are masked out of attention and of score extraction

    # ------------------------------------------------------------------------------------------------ scoring

    def format(self, problem: str, steps: Sequence[str]) -> str:
        """The input text for one solution (see :func:`trim_pomdp.prm.qwen.format_prm_input`)."""
        return format_prm_input(
            problem, steps, self.tokenizer, system=self.system_prompt, separator=self.separator
        )

    def score(self, problem: str, steps: Sequence[str]) -> list[float]:
        """P(step correct) for every step of one solution."""
        return self.score_batch([(problem, steps)])[0]

    def score_batch(self, solutions: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """Score many solutions, ``batch_size`` sequences per forward pass (similar lengths batched together).

        Parameters
        ----------
        solutions : sequence of (problem, steps)

        Returns
        -------
        list of list of float
            Per solution, one P(step correct) per step, in the input order.
        """
        torch = _torch()
        encoded = []
        for k, (problem, steps) in enumerate(solutions):
            ids = self.tokenizer.encode(self.format(problem, steps), add_special_tokens=False)
            if self.max_length is not None and len(ids) > self.max_length:
                raise InvalidParameterError(
                    f"solution {k} is {len(ids)} tokens long, more than the PRM's maximum of {self.max_length}"
                )
            encoded.append((ids, len(steps)))
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        results: list[list[float] | None] = [None] * len(encoded)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                width = max(len(encoded[i][0]) for i in chunk)
                input_ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
                attention = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, i in enumerate(chunk):
                    ids = encoded[i][0]
                    input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                    attention[row, : len(ids)] = 1
                logits = self._logits(input_ids.to(self.device), attention.to(self.device))
                sep = (input_ids.to(self.device) == self.separator_id) & attention.to(self.device).bool()
                for row, i in enumerate(chunk):
                    pos = sep[row].nonzero(as_tuple=True)[0]
                    picked = logits[row, pos].float().cpu().numpy()
                    results[i] = step_scores_from_logits(
                        picked,
                        [self.separator_id] * len(picked),
                        self.separator_id,
                        n_steps=encoded[i][1],
                        positive_label=self.positive_label,
                    )
        return results  # type: ignore[return-value]

    def _logits(self, input_ids, attention_mask):
        torch = _torch()
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        if torch.is_tensor(out):
            logits = out
        elif getattr(out, "logits", None) is not None:
            logits = out.logits
        elif isinstance(out, (tuple, list)) or (
            hasattr(out, "keys") and "last_hidden_state" not in out.keys()
        ):
            logits = out[0]  # remote-code PRMs (Qwen2ForProcessRewardModel) return their logits first
        else:
            logits = None
        shape = tuple(getattr(logits, "shape", ()))
        if len(shape) != 3 or shape[:2] != tuple(input_ids.shape) or not 2 <= shape[-1] <= _MAX_LABELS:
            raise DataFormatError(
                f"the PRM returned {shape or type(out).__name__}, expected per-token logits of shape "
                f"{tuple(input_ids.shape)} + (n_labels,) with 2 <= n_labels <= {_MAX_LABELS}: load a PRM or "
                "token-classification model, not a base or causal-LM model"
            )
        if self.positive_label >= shape[-1]:
            raise InvalidParameterError(
                f"positive_label {self.positive_label} >= the head's {shape[-1]} labels"
            )
        return logits
