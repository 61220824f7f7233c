"""Length-sorted batching of tokenised texts, shared by the torch towers and the ONNX graph towers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger("densepr.dense.encoder")

# Tokens per batch when no batch size is given. On a 2-core AVX2 CPU (fp32), budgets of 2,048 or 4,096 tokens and
# fixed batches of 8 or 16 passages all encoded ~1.12x faster than batches of 64 (medians of 3, interleaved runs).
CPU_BATCH_TOKENS = 16 * 256
# Lengths padded to a multiple of this: fewer distinct shapes for the kernels cached per shape (oneDNN's, for bf16).
# A lone text run in fp32 torch is not padded: a question of 11 tokens padded to 16 took 4.57 ms against 3.81 ms.
# It was not enough for a server: torch bf16 still grew 13.7% in a 10-minute soak, as batch sizes kept varying, so
# ``serve`` runs ONNX Runtime on bf16 CPUs (densepr.backends.choice.serving_backend).
PAD_MULTIPLE = 8
GPU_BATCH_TOKENS = 128 * 256


def length_batches(sorted_lengths: np.ndarray, batch_size: int | None, budget: int) -> Iterator[slice]:
    """Slices of a longest-first length array: ``batch_size`` items each, or (``None``) as many as keep
    ``items × longest`` within ``budget`` tokens (at least one item).

    >>> [(b.start, b.stop) for b in length_batches(np.array([100, 50, 50, 10, 10]), None, 200)]
    [(0, 2), (2, 5)]
    """
    start, n = 0, len(sorted_lengths)
    while start < n:
        size = batch_size or max(1, budget // max(1, int(sorted_lengths[start])))
        yield slice(start, min(n, start + size))
        start += size


def count_truncated(input_ids: Sequence[Sequence[int]], max_length: int, warn: bool = True) -> int:
    """How many rows reached ``max_length`` tokens (cut there by the tokenizer); logged unless ``warn`` is off."""
    truncated = sum(len(ids) >= max_length for ids in input_ids)
    if truncated and warn:
        log.warning("%d of %d inputs reached the %d-token limit and were truncated", truncated, len(input_ids), max_length)
    return truncated


Forward = Callable[[dict[str, list], np.ndarray], np.ndarray]  # (a batch's unpadded rows, their lengths) -> vectors


def run_batches(encoded: Mapping[str, Sequence[Sequence[int]]], dim: int, forward: Forward, batch_size: int | None,
                budget: int, progress: bool | Callable[[int], object] = False) -> np.ndarray:
    """``forward`` over longest-first batches of tokenised rows (:func:`length_batches`); float32 ``(n, dim)`` in
    input order. ``progress``: a bar of its own, or a callback given each batch's size."""
    lengths = np.array([len(ids) for ids in encoded["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    out = np.empty((len(lengths), dim), dtype=np.float32)
    report = progress if callable(progress) else None
    bar = tqdm(total=len(lengths), disable=report is not None or not progress, unit="text", desc="encode", leave=False)
    for rows in length_batches(lengths[order], batch_size, budget):
        idx = order[rows]
        out[idx] = forward({k: [v[i] for i in idx] for k, v in encoded.items()}, lengths[idx])
        bar.update(len(idx))
        if report is not None:
            report(len(idx))
    bar.close()
    return out
