"""Reader inputs: ``[CLS] question [SEP] title [SEP] text [SEP]`` encodings, answer spans in tokens, training examples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from densepr.errors import DenseprError
from densepr.evaluate.answers import has_answer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from densepr.dense.tokenizer_lite import TokenizerLite

    Tokenizer = PreTrainedTokenizerBase | TokenizerLite

Span = tuple[int, int]  # first and last token of an answer (inclusive)
PAD_MULTIPLE = 32


@dataclass
class PassageBatch:
    """Tokenised (question, passage) pairs, padded to the longest; ``text_mask`` marks passage-text tokens."""

    tensors: dict[str, Any]  # int64 arrays (numpy, or torch tensors for a torch reader)
    text_mask: Any  # bool, the same kind
    text_start: list[int]
    text_end: list[int]  # inclusive; < text_start when the text was truncated away
    offsets: list[list[tuple[int, int]]]
    seconds: list[str] = field(repr=False)  # the "title [SEP] text" strings the offsets point into

    def __len__(self) -> int:
        return len(self.text_start)

    def span_chars(self, i: int, start: int, end: int) -> tuple[int, int]:
        """Where tokens ``start..end`` of passage ``i`` lie in its ``title [SEP] text`` string, widened to whole words
        (a span starting or ending on a word piece, like ``comput`` of ``computation``, gives the word, as DPR's reader)."""
        text = self.seconds[i]
        first, last = self.offsets[i][start][0], self.offsets[i][end][1]
        while first > 0 and text[first - 1].isalnum():
            first -= 1
        while last < len(text) and text[last].isalnum():
            last += 1
        return first, last

    def span_text(self, i: int, start: int, end: int) -> str:
        """The characters of passage ``i`` covered by tokens ``start..end``, widened to whole words."""
        first, last = self.span_chars(i, start, end)
        return self.seconds[i][first:last]


def encode_pairs(tokenizer: Tokenizer, questions: Sequence[str], ctxs: Sequence[Mapping[str, Any]],
                 max_length: int = 256, dpr_format: bool = False, tensors: str = "pt") -> PassageBatch:
    """Encode ``question`` / ``title [SEP] text`` pairs (the passage is truncated first), as torch tensors
    (``tensors="pt"``) or numpy arrays (``"np"``: no torch).

    ``dpr_format``: Hugging Face ``DPRReader``'s input, ``[CLS] question [SEP] title [SEP] text`` without segment ids
    (the closing [SEP] is kept out of attention, which leaves every other position as without it).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise DenseprError("the reader needs a fast (Rust) tokenizer for character offsets")
    sep = tokenizer.sep_token
    seconds = [f"{c.get('title') or ''} {sep} {c['text']}" for c in ctxs]
    # Padding to a multiple of 32 keeps the number of distinct batch shapes small: oneDNN builds kernels per shape on
    # CPU, and with one shape per length, bf16 training steps grew ~15% slower over 150 steps (flat with this).
    enc = tokenizer(list(questions), seconds, truncation="longest_first", max_length=max_length,
                    padding="longest", pad_to_multiple_of=PAD_MULTIPLE, return_offsets_mapping=True, return_tensors="np")
    offsets = np.asarray(enc.pop("offset_mapping")).tolist()
    ids = np.asarray(enc["input_ids"]).tolist()
    text_mask = np.zeros(np.shape(enc["input_ids"]), dtype=bool)
    starts, ends = [], []
    for i in range(len(seconds)):
        in_pair = [j for j, s in enumerate(enc.sequence_ids(i)) if s == 1]
        title_sep = next((j for j in in_pair if ids[i][j] == tokenizer.sep_token_id), None)
        text = [j for j in in_pair if title_sep is not None and j > title_sep]
        start, end = (text[0], text[-1]) if text else (len(ids[i]), len(ids[i]) - 1)
        text_mask[i, start : end + 1] = True
        starts.append(start)
        ends.append(end)
    arrays: dict[str, Any] = {k: np.asarray(enc[k], dtype=np.int64) for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    if dpr_format:
        arrays.pop("token_type_ids", None)
        last = arrays["attention_mask"].sum(1) - 1  # the closing [SEP]
        arrays["attention_mask"][np.arange(len(seconds)), last] = 0
    mask: Any = text_mask
    if tensors == "pt":
        import torch

        arrays, mask = {k: torch.from_numpy(v) for k, v in arrays.items()}, torch.from_numpy(text_mask)
    return PassageBatch(arrays, mask, starts, ends, [[tuple(o) for o in row] for row in offsets], seconds)


def answer_token_ids(tokenizer: Tokenizer, answers: Sequence[str]) -> list[list[int]]:
    """Each non-empty answer as token ids, without special tokens."""
    answers = [a for a in answers if a.strip()]
    if not answers:
        return []
    return [ids for ids in tokenizer(list(answers), add_special_tokens=False)["input_ids"] if ids]


def find_answer_spans(tokens: Sequence[int], answers: Sequence[Sequence[int]], start: int = 0,
                      end: int | None = None) -> list[Span]:
    """Every occurrence of every answer's tokens within ``tokens[start:end + 1]``, as sorted inclusive spans.

    >>> find_answer_spans([5, 7, 8, 5, 7], [[5, 7], [8]])
    [(0, 1), (2, 2), (3, 4)]
    """
    end = len(tokens) - 1 if end is None else end
    found: set[Span] = set()
    for answer in answers:
        n = len(answer)
        if n == 0:
            continue
        first = answer[0]
        for i in range(start, end - n + 2):
            if tokens[i] == first and list(tokens[i : i + n]) == list(answer):
                found.add((i, i + n - 1))
    return sorted(found)


def passage_spans(batch: PassageBatch, i: int, answers: Sequence[Sequence[int]]) -> list[Span]:
    """Answer spans inside the text of passage ``i`` of ``batch``."""
    return find_answer_spans(list(batch.tensors["input_ids"][i].tolist()), answers, batch.text_start[i], batch.text_end[i])


@dataclass
class ReaderExample:
    """One training question: passages holding an answer span (best retrieved first) and the others."""

    question: str
    answers: list[str]
    positives: list[dict]
    negatives: list[dict]


def reader_examples(results: Sequence[Mapping[str, Any]], tokenizer: Tokenizer, max_length: int = 256,
                    depth: int = 100, match: str = "string", gold: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
                    ) -> tuple[list[ReaderExample], dict[str, int]]:
    """Training examples from DPR results: positives are top-``depth`` ctxs with ``has_answer`` whose tokens hold an answer.

    ``gold`` maps a question's text to its gold passages (``{"title", "text"}``; DPR's ``positive_ctxs``). For such a
    question the positives are, as DPR's ``gold_page_only_positives``, its gold passages followed by the retrieved
    ``has_answer`` passages of the same pages (titles): an answer string elsewhere is often a coincidence.
    Questions with no such passage are skipped and counted (``no_positive``: none has ``has_answer``;
    ``no_answer_span``: the answer tokens are not found in any, e.g. truncated away; ``gold``: questions with gold).
    """
    gold = gold or {}
    examples, stats = [], {"questions": len(results), "gold": 0, "no_positive": 0, "no_answer_span": 0}
    for n, entry in enumerate(results):
        try:
            question, answers, ctxs = entry["question"], list(entry["answers"]), entry["ctxs"][:depth]
            flags = [bool(c["has_answer"]) if "has_answer" in c else has_answer(answers, c["text"], match) for c in ctxs]
        except (KeyError, TypeError) as exc:
            raise DenseprError(f"result {n}: missing field {exc} (expected DPR result format)") from None
        candidates = [c for c, f in zip(ctxs, flags) if f]
        if question in gold:
            stats["gold"] += 1
            pages = {g.get("title") or "" for g in gold[question]}
            texts = {g["text"] for g in gold[question]}
            candidates = list(gold[question]) + [c for c in candidates if c.get("title") in pages and c["text"] not in texts]
        if not candidates:
            stats["no_positive"] += 1
            continue
        batch = encode_pairs(tokenizer, [question] * len(candidates), candidates, max_length)
        target = answer_token_ids(tokenizer, answers)
        positives = [c for i, c in enumerate(candidates) if passage_spans(batch, i, target)]
        if not positives:
            stats["no_answer_span"] += 1
            continue
        chosen = {c["text"] for c in candidates}
        negatives = [c for c, f in zip(ctxs, flags) if not f and c["text"] not in chosen]
        examples.append(ReaderExample(question, answers, positives, negatives))
    stats["examples"] = len(examples)
    return examples, stats
