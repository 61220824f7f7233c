"""One encoder tower: a BERT-family transformer plus pooling ([CLS], mean, or DPR's pooler)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from densepr.dense.batching import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, PAD_MULTIPLE, count_truncated, run_batches
from densepr.dense.bert_lite import BertLite, bf16_copy
from densepr.dense.loading import TowerSpec, resolve_model_path, tower_spec
from densepr.dense.tokenizer_lite import BERT_TOKENIZERS, TokenizerLite, tokenizer_class
from densepr.errors import DenseprError
from densepr.hardware import default_device, use_bf16

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

POOLINGS = ("cls", "mean", "dpr")


@contextlib.contextmanager
def no_hf_progress_bars() -> Iterator[None]:
    """Hide transformers' per-call loading/saving bars (noise next to our own progress bars)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_tokenizer(folder: Path, lite: bool = False) -> PreTrainedTokenizerBase | TokenizerLite:
    """A folder's fast tokenizer; BERT's loads without ``AutoTokenizer`` (a second less of imports), and with ``lite``
    (inference) as :class:`TokenizerLite` where it can (no transformers import at all)."""
    if lite and (tokenizer := TokenizerLite.load(folder)) is not None:
        return tokenizer
    if tokenizer_class(folder) in BERT_TOKENIZERS:
        from transformers import BertTokenizerFast  # type: ignore[attr-defined]

        return BertTokenizerFast.from_pretrained(folder)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _load_model(spec: TowerSpec, lite: bool = False) -> PreTrainedModel | BertLite:
    """The tower's transformer in fp32 (transformers 5 keeps a checkpoint's fp16 or bf16; training and the CPU
    kernels want fp32 weights, and autocast or the backends choose lower precision where it pays).
    ``lite``: a plain BERT loads as :class:`BertLite` (inference only, no transformers model import)."""
    if lite and spec.pooling != "dpr" and (model := BertLite.load(spec.path)) is not None:
        return model
    with no_hf_progress_bars():
        return _load_transformers_model(spec)


def _load_transformers_model(spec: TowerSpec) -> PreTrainedModel:
    from transformers import AutoModel

    config = json.loads((spec.path / "config.json").read_text(encoding="utf-8"))
    archs = set(config.get("architectures") or [])
    if spec.pooling == "dpr":
        from transformers import DPRContextEncoder, DPRQuestionEncoder

        cls = DPRContextEncoder if "DPRContextEncoder" in archs else DPRQuestionEncoder
        return cls.from_pretrained(spec.path).float()
    return AutoModel.from_pretrained(spec.path).float()


# Below this many tokens a batch under bf16 autocast runs fp32 when bf16 is only the CPU default: on a 2-core AMX Xeon
# one question took 6.3 ms in fp32 and 8.3 in bf16, 8 questions (~95 tokens) 17.0 and 17.2, 16 questions (~192 tokens)
# 29.5 and 22.7. A lite model runs bf16 from a bf16 copy of its weights instead, faster at every size (fp32 -> bf16
# medians: 4.5 -> 4.0 ms, 14.8 -> 7.8 ms, 25.0 -> 12.3 ms for 1, 8 and 16 NQ questions), so it takes bf16 for every batch.
BF16_MIN_TOKENS = 128


class Encoder(torch.nn.Module):
    """Maps texts (or title/text pairs) to vectors.

    >>> enc = Encoder.from_pretrained("default")          # doctest: +SKIP
    >>> enc.embed(["who wrote hamlet"]).shape             # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model: PreTrainedModel | BertLite, tokenizer: PreTrainedTokenizerBase | TokenizerLite,
                 pooling: str = "cls", normalize: bool = False, max_length: int = 256):
        super().__init__()
        if pooling not in POOLINGS:
            raise DenseprError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
        self.model, self.tokenizer = model, tokenizer
        self.pooling, self.normalize, self.max_length = pooling, normalize, max_length
        self.truncated = 0  # inputs cut at max_length by embed(), all calls together
        self.source: Path | None = None  # the folder it was loaded from
        self.runner: Callable[[dict], list[np.ndarray]] | None = None  # an exported graph embed() runs instead (backends)
        self.precision: str | None = None  # "fp32" or "bf16" for torch (None: bf16 for batches of BF16_MIN_TOKENS or more
        #                                    where the CPU has bf16 units)
        self._bf16_model: BertLite | None = None  # a lite model's bf16 copy for bf16 batches on CPU (plain attribute)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, pooling: str | None = None, max_length: int | None = None,
                        lite: bool = False) -> Encoder:
        """Load a local folder or hub name (plain HF, sentence-transformers or DPR layout); ``lite`` for inference
        only (a plain BERT then runs as :class:`~densepr.dense.bert_lite.BertLite`)."""
        spec = tower_spec(resolve_model_path(name_or_path), pooling)
        try:
            model, tokenizer = _load_model(spec, lite), load_tokenizer(spec.path, lite)
        except (OSError, ValueError) as exc:
            raise DenseprError(f"{spec.path}: cannot load model or tokenizer ({str(exc).splitlines()[0]})") from None
        positions = getattr(model.config, "max_position_embeddings", 512)
        length = min(max_length or spec.max_length or getattr(tokenizer, "model_max_length", 512), positions, 512)
        device = default_device()
        encoder = cls(model.eval().to(device), tokenizer, spec.pooling, spec.normalize, int(length))
        encoder.source = spec.path
        return encoder

    @property
    def dim(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "projection_dim", 0) or cfg.hidden_size)

    def backend(self, bf16: bool | None = None) -> str:
        """What computes the vectors: ``torch fp32``, ``torch bf16`` or ``<onnx|openvino> <precision>`` (``bf16`` as :meth:`embed`)."""
        if self.runner is not None:
            return f"{getattr(self.runner, 'engine', 'onnx')} {self.precision}"
        device = next(self.model.parameters()).device
        if not use_bf16(device.type, bf16, self.precision):
            return "torch fp32"
        small_fp32 = bf16 is None and self.precision is None and device.type == "cpu" and not isinstance(self.model, BertLite)
        return f"torch bf16 (fp32 under {BF16_MIN_TOKENS} tokens)" if small_fp32 else "torch bf16"

    def _batch_bf16(self, bf16: bool, requested: bool | None, tokens: int, device: str) -> bool:
        """bf16 for this batch: as asked, else (a default choice) on GPUs, for lite models (bf16 weights), or from
        :data:`BF16_MIN_TOKENS` tokens."""
        return bf16 and (requested is not None or self.precision is not None or device != "cpu"
                         or isinstance(self.model, BertLite) or tokens >= BF16_MIN_TOKENS)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled (and optionally L2-normalised) vectors of a tokenised batch."""
        return self._vectors(self.model, input_ids, attention_mask, token_type_ids)

    def _vectors(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = model(**kwargs)
        if self.pooling == "dpr":
            vectors = out.pooler_output.float()
        elif self.pooling == "cls":
            vectors = out.last_hidden_state[:, 0].float()
        else:
            hidden, mask = out.last_hidden_state.float(), attention_mask.unsqueeze(-1).float()
            vectors = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(vectors, dim=-1) if self.normalize else vectors

    def _bf16_lite(self) -> BertLite | None:
        """The bf16 copy of a lite model on CPU (made on first use), else ``None`` (autocast then)."""
        if not isinstance(self.model, BertLite) or next(self.model.parameters()).device.type != "cpu":
            return None
        if self._bf16_model is None:
            object.__setattr__(self, "_bf16_model", bf16_copy(self.model))
        return self._bf16_model

    def tokenize(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> dict[str, list]:
        """Unpadded token ids; ``pairs`` makes ``[CLS] text [SEP] pair [SEP]`` inputs (DPR's title/text)."""
        return self.tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=True,
                              max_length=self.max_length, padding=False)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int | None = None,
              bf16: bool | None = None, progress: bool | Callable[[int], object] = False,
              warn_truncation: bool = True) -> np.ndarray:
        """Encode texts in length-sorted batches; returns float32 ``(n, dim)`` in input order.

        ``progress``: a bar of its own, or a callback given each batch's size (a caller's bar moving per batch).
        Inputs cut at the maximum length are counted in :attr:`truncated` (and logged unless ``warn_truncation`` is off).

        ``batch_size=None`` fills each batch up to a token budget (:data:`CPU_BATCH_TOKENS` on CPU), so short
        questions go many at a time and long passages few; ``bf16=None`` uses bf16 autocast as :attr:`precision` says,
        or, without one, where the CPU has native bf16 units (for batches of :data:`BF16_MIN_TOKENS` tokens or more
        unless the model is lite: a lite model on CPU runs bf16 batches on a bf16 copy of its weights, without autocast).
        With a :attr:`runner` (see :mod:`densepr.backends`) the exported graph computes the vectors instead of torch.
        """
        if batch_size is not None and batch_size < 1:
            raise DenseprError(f"batch size must be >= 1, not {batch_size}")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        device = next(self.model.parameters()).device
        requested, bf16 = bf16, use_bf16(device.type, bf16, self.precision)
        encoded = self.tokenize(texts, pairs)
        self.truncated += count_truncated(encoded["input_ids"], self.max_length, warn_truncation)
        was_training = self.training
        self.eval()  # no dropout when embedding, even mid-training
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]

        def forward(rows_of: dict[str, list], lengths: np.ndarray) -> np.ndarray:
            padded_tokens = -(-int(lengths.max()) // PAD_MULTIPLE) * PAD_MULTIPLE * len(lengths)
            in_bf16 = self.runner is None and self._batch_bf16(bf16, requested, padded_tokens, device.type)
            lone_fp32 = len(lengths) == 1 and self.runner is None and not in_bf16  # no shapes to align: not padded
            batch = self.tokenizer.pad(rows_of, return_tensors="pt", pad_to_multiple_of=None if lone_fp32 else PAD_MULTIPLE)
            if self.runner is not None:
                return self.runner(dict(batch))[0]
            tensors = {k: batch[k].to(device) for k in keys}
            lite_bf16 = self._bf16_lite() if in_bf16 else None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=in_bf16 and lite_bf16 is None):
                return self._vectors(lite_bf16 or self.model, **tensors).float().cpu().numpy()

        budget = CPU_BATCH_TOKENS if device.type == "cpu" else GPU_BATCH_TOKENS
        batch_size = 1 if getattr(self.runner, "per_row", False) else batch_size  # an int8 graph: see OnnxRunner.per_row
        out = run_batches({k: encoded[k] for k in keys}, self.dim, forward, batch_size, budget, progress)
        self.train(was_training)
        return out

    def save(self, path: str | Path) -> None:
        """Save as a standard Hugging Face folder plus ``densepr_tower.json`` (pooling settings)."""
        path = Path(path)
        if isinstance(self.model, BertLite) or isinstance(self.tokenizer, TokenizerLite):
            raise DenseprError("an encoder loaded for inference only (lite) cannot be saved; load it with lite=False")
        with no_hf_progress_bars():
            self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        settings = {"pooling": self.pooling, "normalize": self.normalize, "max_length": self.max_length}
        (path / "densepr_tower.json").write_text(json.dumps(settings, indent=2))
