"""A BERT folder's ``tokenizer.json`` run by the Rust ``tokenizers`` library alone, for inference.

Loading a tokenizer through transformers imports half a second of its Python layer, a fifth of a warm ``densepr ask``.
:class:`TokenizerLite` covers what the inference paths call: a batch of texts or (text, pair) inputs truncated
longest-first, padding, offsets and sequence ids, and the ``[SEP]`` token; it gives the ids transformers gives
(``tests/test_bert_lite.py``). Training and other tokenizers load through transformers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

LONG = 10**30  # transformers' "no limit" model_max_length
BERT_TOKENIZERS = ("BertTokenizer", "BertTokenizerFast")


def tokenizer_class(folder: Path) -> str:
    """The ``tokenizer_class`` a folder's ``tokenizer_config.json`` names ("" without one)."""
    config = folder / "tokenizer_config.json"
    return str(json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class") or "") if config.is_file() else ""


class LiteEncoding(dict):
    """A batch as transformers returns it (a dict of ``input_ids``, ``token_type_ids``, ``attention_mask``, and
    ``offset_mapping`` when asked), with :meth:`sequence_ids`."""

    def __init__(self, data: Mapping[str, Any], encodings: list):
        super().__init__(data)
        self._encodings = encodings

    def sequence_ids(self, i: int) -> list[int | None]:
        """Which input each token of row ``i`` comes from (0, 1, or ``None`` for special and padding tokens)."""
        ids = list(self._encodings[i].sequence_ids)
        return ids + [None] * (len(self["input_ids"][i]) - len(ids))


class TokenizerLite:
    """The subset of a transformers fast tokenizer the towers and the reader use at inference."""

    is_fast = True

    def __init__(self, tokenizer: Any, config: Mapping[str, Any]):
        self._tokenizer = tokenizer
        self.sep_token = str(config.get("sep_token") or "[SEP]")
        self.pad_token = str(config.get("pad_token") or "[PAD]")
        self.sep_token_id = tokenizer.token_to_id(self.sep_token)
        self.pad_token_id = tokenizer.token_to_id(self.pad_token)
        self.model_max_length = int(config.get("model_max_length") or LONG)

    @classmethod
    def load(cls, folder: str | Path, any_class: bool = False) -> TokenizerLite | None:
        """The folder's tokenizer, or ``None`` where transformers must load it (no ``tokenizer.json``, not BERT's
        unless ``any_class``: an exported folder, whose ``tokenizer.json`` holds the whole pipeline)."""
        folder = Path(folder)
        config_file = folder / "tokenizer_config.json"
        if not (folder / "tokenizer.json").is_file() or not config_file.is_file():
            return None
        config = json.loads(config_file.read_text(encoding="utf-8"))
        special = folder / "special_tokens_map.json"
        if special.is_file():
            tokens = json.loads(special.read_text(encoding="utf-8"))
            config = {**{k: v if isinstance(v, str) else v.get("content") for k, v in tokens.items()}, **config}
        if config.get("tokenizer_class") not in BERT_TOKENIZERS and not any_class:
            return None
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        lite = cls(tokenizer, config)
        return lite if lite.sep_token_id is not None and lite.pad_token_id is not None else None

    def __call__(self, texts: Sequence[str], pairs: Sequence[str] | None = None, truncation: bool | str = False,
                 max_length: int | None = None, padding: bool | str = False, pad_to_multiple_of: int | None = None,
                 return_offsets_mapping: bool = False, return_tensors: str | None = None,
                 add_special_tokens: bool = True) -> LiteEncoding:
        if truncation and max_length:
            self._tokenizer.enable_truncation(max_length, strategy="longest_first")
        else:
            self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        inputs = list(texts) if pairs is None else list(zip(texts, pairs))
        encodings = self._tokenizer.encode_batch(inputs, add_special_tokens=add_special_tokens)
        rows: dict[str, list] = {"input_ids": [e.ids for e in encodings], "token_type_ids": [e.type_ids for e in encodings],
                                 "attention_mask": [e.attention_mask for e in encodings]}
        if return_offsets_mapping:
            rows["offset_mapping"] = [e.offsets for e in encodings]
        if padding:
            return LiteEncoding(self.pad(rows, return_tensors, pad_to_multiple_of), encodings)
        return LiteEncoding(rows, encodings)

    def pad(self, rows: Mapping[str, list], return_tensors: str | None = None,
            pad_to_multiple_of: int | None = None) -> dict[str, Any]:
        """Rows padded on the right to the longest (rounded up to ``pad_to_multiple_of``); int64 arrays with ``"np"``,
        torch tensors with ``"pt"``."""
        width = max((len(r) for r in rows["input_ids"]), default=0)
        if pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        fill = {"input_ids": self.pad_token_id, "offset_mapping": (0, 0)}
        out = {k: [list(r) + [fill.get(k, 0)] * (width - len(r)) for r in v] for k, v in rows.items()}
        if return_tensors == "pt":
            import torch

            return {k: torch.tensor(v) for k, v in out.items()}
        return {k: np.array(v, dtype=np.int64) for k, v in out.items()} if return_tensors == "np" else out
