"""Gradient caching (Gao et al., 2021): a large contrastive batch in small memory, same gradients.

Pass 1 encodes chunks without a graph; the loss is back-propagated to the vectors only; pass 2 re-encodes
each chunk with a graph (replaying its dropout RNG) and back-propagates the cached vector gradients.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from densepr.train.model import DualEncoderModel


def _chunks(batch: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    n = next(iter(batch.values())).size(0)
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, n, size)]


def _rng_state() -> tuple:
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


def _set_rng_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def grad_cache_backward(model: DualEncoderModel, questions: dict[str, torch.Tensor], passages: dict[str, torch.Tensor],
                        chunk_size: int, autocast: AbstractContextManager, scale: float = 1.0) -> torch.Tensor:
    """Accumulate the full-batch gradient (times ``scale``) into ``model`` chunk by chunk; returns the loss (detached)."""
    towers = ((model.encode_questions, _chunks(questions, chunk_size)), (model.encode_passages, _chunks(passages, chunk_size)))
    cached = []
    for encode, chunks in towers:
        states, vectors = [], []
        for chunk in chunks:
            states.append(_rng_state())
            with torch.no_grad(), autocast:
                vectors.append(encode(chunk).float())
        cached.append((encode, chunks, states, torch.cat(vectors).requires_grad_()))
    loss = model.loss(cached[0][3], cached[1][3])
    (loss * scale if scale != 1 else loss).backward()
    end_state = _rng_state()
    for encode, chunks, states, reps in cached:
        assert reps.grad is not None
        for chunk, state, grad in zip(chunks, states, reps.grad.split([len(next(iter(c.values()))) for c in chunks])):
            _set_rng_state(state)
            with autocast:
                encoded = encode(chunk).float()
            encoded.backward(grad)
    _set_rng_state(end_state)
    return loss.detach()
