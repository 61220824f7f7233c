"""The extractive reader (DPR section 6.1): one encoder, start/end span heads and a passage-selection head.

Saved as a standard Hugging Face folder (encoder + tokenizer) plus ``reader_heads.safetensors`` (the two
heads' tensors) and ``densepr_reader.json`` (settings), written atomically. Hugging Face DPR readers
(``facebook/dpr-reader-single-nq-base`` or a local folder of ``DPRReader``) load with their own heads and input format.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from densepr.dense.bert_lite import BertLite, bf16_copy
from densepr.dense.encoder import load_tokenizer, no_hf_progress_bars
from densepr.dense.loading import DEFAULT_ALIASES, DEFAULT_MODEL, resolve_model_path, tower_spec
from densepr.dense.tokenizer_lite import TokenizerLite
from densepr.errors import DenseprError
from densepr.fileio import atomic_folder
from densepr.hardware import default_device, use_bf16
from densepr.read.data import PassageBatch, Span, encode_pairs
from densepr.read.graph_reader import CONFIG_FILE, HEADS_FILE, find_reader_folder
from densepr.read.spans import MASKED

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from densepr.read.data import Tokenizer

INPUT_FORMATS = ("densepr", "dpr")  # dpr: [CLS] question [SEP] title [SEP] text, no segment ids (DPRReader's own input)


class Reader(torch.nn.Module):
    """Scores spans of passages for a question, and the passages themselves.

    >>> reader = Reader.load("reader/final")                                          # doctest: +SKIP
    >>> start, end, select = reader(**reader.encode(["q"], [{"title": "t", "text": "x"}]).tensors)  # doctest: +SKIP
    """

    def __init__(self, encoder: PreTrainedModel | BertLite, tokenizer: Tokenizer, max_length: int = 256,
                 max_answer_len: int = 10, base_model: str = "", input_format: str = "densepr"):
        super().__init__()
        self.encoder, self.tokenizer = encoder, tokenizer
        hidden = encoder.config.hidden_size
        self.qa_outputs = torch.nn.Linear(hidden, 2)  # start and end logits per token
        self.qa_classifier = torch.nn.Linear(hidden, 1)  # passage selection logit from [CLS]
        for head in (self.qa_outputs, self.qa_classifier):
            torch.nn.init.normal_(head.weight, std=getattr(encoder.config, "initializer_range", 0.02))
            torch.nn.init.zeros_(head.bias)
        positions = getattr(encoder.config, "max_position_embeddings", 512)
        self.max_length, self.max_answer_len = min(max_length, positions), max_answer_len
        self.base_model, self.input_format = base_model, input_format
        self.source: Path | None = None  # the folder it was loaded from
        self.runner: Callable[[dict], list[np.ndarray]] | None = None  # an exported graph read_passages runs instead
        self.precision: str | None = None  # "fp32" or "bf16" for torch (None: bf16 where the CPU has bf16 units)
        self._bf16_copy: Reader | None = None  # see bf16_copy(); a plain attribute, not a submodule

    @property
    def lite(self) -> bool:
        """Loaded for inference only (its encoder is :class:`~densepr.dense.bert_lite.BertLite`)."""
        return isinstance(self.encoder, BertLite)

    def bf16_copy(self) -> Reader:
        """This inference-only (lite) reader with its weights in bf16 (:func:`~densepr.dense.bert_lite.bf16_copy`), made
        on first use and kept: reading 5 passages took p50 29.4 ms a question with it against 35.1 ms under bf16
        autocast (2-core AMX Xeon), exact match 29.75 / 41.25 at k = 1 / 5 on 400 held-out SQuAD questions either way."""
        if not self.lite:
            raise DenseprError("only a reader loaded for inference (lite) keeps a bf16 copy")
        if self._bf16_copy is None:
            object.__setattr__(self, "_bf16_copy", bf16_copy(self, share=[self.tokenizer]))
        return self._bf16_copy  # type: ignore[return-value]

    @classmethod
    def from_pretrained(cls, model: str | Path | None = None, max_length: int = 256, max_answer_len: int = 10) -> Reader:
        """A new reader over a BERT-family encoder (default: the offline MiniLM); heads freshly initialised."""
        name = str(model or DEFAULT_MODEL)
        if (Path(name).expanduser() / CONFIG_FILE).is_file():  # a saved reader: continue from it, heads included
            return cls.load(name)
        folder = tower_spec(resolve_model_path(name)).path  # sentence-transformers folders: their transformer
        encoder, tokenizer = _load_encoder(folder)
        base = DEFAULT_MODEL if name in DEFAULT_ALIASES else name
        return cls(encoder, tokenizer, max_length, max_answer_len, base).to(default_device())

    @classmethod
    def load(cls, path: str | Path, lite: bool = False) -> Reader:
        """Load a saved reader (a folder written by :meth:`save`, a ``train-reader`` output folder), or a Hugging Face
        ``DPRReader`` (a local folder or a hub name such as ``facebook/dpr-reader-single-nq-base``). ``lite``: for
        inference only (a plain BERT encoder loads without transformers' model code; see ``bert_lite``)."""
        dpr = _dpr_reader_folder(path)
        if dpr is not None:
            return cls.from_dpr(dpr, name=str(path))
        folder = find_reader_folder(path)
        settings = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        encoder, tokenizer = _load_encoder(folder, lite)
        reader = cls(encoder, tokenizer, settings["max_length"], settings["max_answer_len"], settings.get("base_model", ""),
                     settings.get("input_format", "densepr"))
        heads = load_file(folder / HEADS_FILE)
        try:
            for name in ("qa_outputs", "qa_classifier"):
                own = {k.split(".", 1)[1]: v for k, v in heads.items() if k.startswith(f"{name}.")}
                getattr(reader, name).load_state_dict(own)
        except RuntimeError as exc:
            reason = str(exc).splitlines()[0]
            raise DenseprError(f"{folder / HEADS_FILE}: head weights do not fit the encoder ({reason})") from None
        reader.source = folder
        return reader.eval().to(default_device())

    @classmethod
    def from_dpr(cls, folder: Path, name: str = "", max_length: int = 350, max_answer_len: int = 10) -> Reader:
        """A Hugging Face ``DPRReader`` folder as a reader: its BERT, span and relevance heads, and DPR's input format."""
        from transformers import BertConfig, BertModel, BertTokenizerFast, DPRReader  # type: ignore[attr-defined]

        try:
            with no_hf_progress_bars():
                dpr = DPRReader.from_pretrained(folder)
                tokenizer = BertTokenizerFast.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise DenseprError(f"{folder}: cannot load the DPR reader ({str(exc).splitlines()[0]})") from None
        span = dpr.span_predictor
        dpr_bert = span.encoder.bert_model  # a BertModel whose config says "dpr": as a plain BERT it saves and loads as one
        known = BertConfig().to_dict()
        encoder = BertModel(BertConfig(**{k: v for k, v in dpr_bert.config.to_dict().items() if k in known}),
                            add_pooling_layer=False)
        encoder.load_state_dict(dpr_bert.state_dict())
        reader = cls(encoder, tokenizer, max_length, max_answer_len, name or str(folder), "dpr")
        reader.qa_outputs.load_state_dict(span.qa_outputs.state_dict())
        reader.qa_classifier.load_state_dict(span.qa_classifier.state_dict())
        reader.source = folder
        return reader.eval().to(default_device())

    def save(self, path: str | Path) -> None:
        """Write the reader folder atomically."""
        with atomic_folder(Path(path)) as tmp:
            self.write(tmp)

    def write(self, folder: Path) -> None:
        """The reader's files into an existing folder (non-atomic; see :meth:`save`)."""
        if isinstance(self.encoder, BertLite) or isinstance(self.tokenizer, TokenizerLite):
            raise DenseprError("a reader loaded for inference only (lite) cannot be saved; load it with lite=False")
        with no_hf_progress_bars():
            self.encoder.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        heads = {f"{name}.{k}": v.detach().cpu().contiguous() for name in ("qa_outputs", "qa_classifier")
                 for k, v in getattr(self, name).state_dict().items()}
        save_file(heads, folder / HEADS_FILE)
        settings = {"max_length": self.max_length, "max_answer_len": self.max_answer_len, "base_model": self.base_model,
                    "input_format": self.input_format}
        (folder / CONFIG_FILE).write_text(json.dumps(settings, indent=2))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def backend(self) -> str:
        """What computes the logits: ``torch fp32``, ``torch bf16`` or ``<onnx|openvino> <precision>``."""
        if self.runner is not None:
            return f"{getattr(self.runner, 'engine', 'onnx')} {self.precision}"
        return "torch bf16" if use_bf16(self.device.type, None, self.precision) else "torch fp32"

    def encode(self, questions: Sequence[str], ctxs: Sequence[Mapping[str, Any]]) -> PassageBatch:
        """Tokenise (question, passage) pairs at the reader's maximum length."""
        return encode_pairs(self.tokenizer, questions, ctxs, self.max_length, dpr_format=self.input_format == "dpr")

    @torch.inference_mode()
    def logits(self, batch: PassageBatch, bf16: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start, end and selection logits of an encoded batch as numpy arrays (what inference reads): from the
        :attr:`runner` where one is attached, else torch (bf16 as :func:`~densepr.hardware.use_bf16` says; a lite
        reader on CPU runs bf16 on its bf16 copy, without autocast)."""
        if self.runner is not None:
            start, end, select = self.runner({k: np.asarray(v) for k, v in batch.tensors.items()})
            return start, end, select
        was_training = self.training
        self.eval()
        device, enabled = self.device, use_bf16(self.device.type, bf16, self.precision)
        if enabled and device.type == "cpu" and self.lite:  # its bf16 weights: no autocast casting them per call
            out = self.bf16_copy()(**batch.tensors)
        else:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
                out = self(**{k: v.to(device) for k, v in batch.tensors.items()})
        self.train(was_training)
        start, end, select = (t.float().cpu().numpy() for t in out)
        return start, end, select

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start logits ``(N, L)``, end logits ``(N, L)`` and selection logits ``(N,)`` (float32)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        start, end = self.qa_outputs(hidden).float().unbind(-1)
        return start, end, self.qa_classifier(hidden[:, 0]).float().squeeze(-1)


def _dpr_reader_folder(path: str | Path) -> Path | None:
    """The folder of a Hugging Face ``DPRReader`` named by ``path`` (a local folder or a hub name), else ``None``."""
    folder = Path(path).expanduser()
    if (folder / CONFIG_FILE).is_file() or (folder / "final" / CONFIG_FILE).is_file():
        return None
    if not folder.is_dir():
        if "dpr-reader" not in str(path):
            return None
        folder = resolve_model_path(str(path))
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, json.JSONDecodeError):
        return None
    return folder if "DPRReader" in architectures else None


def _load_encoder(folder: Path, lite: bool = False) -> tuple[PreTrainedModel | BertLite, Tokenizer]:
    try:
        if lite and (model := BertLite.load(folder)) is not None:
            return model, load_tokenizer(folder, lite)
        from transformers import AutoModel

        with no_hf_progress_bars():
            return AutoModel.from_pretrained(folder).float(), load_tokenizer(folder)  # fp16 files: fp32 math
    except (OSError, ValueError) as exc:
        raise DenseprError(f"{folder}: cannot load model or tokenizer ({str(exc).splitlines()[0]})") from None


def masked(logits: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """Logits with every position outside the passage text pushed to :data:`MASKED`."""
    return logits.masked_fill(~text_mask.to(logits.device), MASKED)


def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, spans: Sequence[Span]) -> torch.Tensor:
    """−log of the marginal likelihood of all answer spans of one passage (``(L,)`` masked logits)."""
    if not spans:
        raise DenseprError("a positive passage needs at least one answer span")
    s = torch.tensor([a for a, _ in spans], device=start_logits.device)
    e = torch.tensor([b for _, b in spans], device=start_logits.device)
    return -torch.logsumexp(F.log_softmax(start_logits, -1)[s] + F.log_softmax(end_logits, -1)[e], dim=0)


def reader_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, select_logits: torch.Tensor,
                groups: Sequence[tuple[int, int, Sequence[Span]]]) -> torch.Tensor:
    """Mean over questions of span loss (positive passage) + selection cross-entropy (positive as target).

    ``groups`` holds each question's ``(first row, passage count, answer spans)``; its positive is its first row.
    """
    losses = []
    for first, count, spans in groups:
        select = F.cross_entropy(select_logits[first : first + count].unsqueeze(0),
                                 torch.zeros(1, dtype=torch.long, device=select_logits.device))
        losses.append(span_loss(start_logits[first], end_logits[first], spans) + select)
    return torch.stack(losses).mean()
