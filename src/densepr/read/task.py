"""The reader as a task of the training loop (DPR section 6.1): per question 1 positive + (m−1) retrieved
negatives, span marginal likelihood + passage-selection loss."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

from densepr.errors import DenseprError
from densepr.loop.loop import epoch_order
from densepr.read.config import ReaderConfig
from densepr.read.data import PassageBatch, ReaderExample, Span, answer_token_ids, passage_spans
from densepr.read.model import Reader, masked, reader_loss


class ReaderTask:
    """Trains a :class:`Reader` on :class:`ReaderExample` s with :class:`~densepr.loop.TrainingLoop`.

    >>> TrainingLoop(ReaderTask(reader, examples, ReaderConfig(out="reader/"))).train()   # doctest: +SKIP
    """

    name = "reader"
    drop_last = False
    gradients = "mean"  # each process's loss is a mean over its own questions

    def __init__(self, reader: Reader, examples: list[ReaderExample], config: ReaderConfig):
        if config.passages_per_question < 1:
            raise DenseprError("--passages-per-question must be >= 1")
        self.module, self.examples, self.config = reader, examples, config
        self._answer_ids = [answer_token_ids(reader.tokenizer, ex.answers) for ex in examples]

    def __len__(self) -> int:
        return len(self.examples)

    def epoch_order(self, epoch: int, block: int, steps: int) -> np.ndarray:
        """A seeded permutation of all questions."""
        return epoch_order(len(self), self.config.seed, epoch)

    def make_batch(self, indices: np.ndarray, epoch: int) -> tuple[PassageBatch, list[tuple[int, int, list[Span]]]]:
        """Sample each question's positive and negatives (seeded by question and epoch); tokenise them together."""
        m = self.config.passages_per_question
        questions, ctxs, sizes = [], [], []
        for idx in indices:
            ex = self.examples[int(idx)]
            rng = np.random.default_rng([self.config.seed, epoch, int(idx)])
            chosen = [ex.positives[int(rng.integers(len(ex.positives)))]]
            if ex.negatives and m > 1:
                picks = rng.choice(len(ex.negatives), size=min(m - 1, len(ex.negatives)), replace=False)
                chosen += [ex.negatives[int(j)] for j in picks]
            questions += [ex.question] * len(chosen)
            ctxs += chosen
            sizes.append(len(chosen))
        batch = self.module.encode(questions, ctxs)
        groups, first = [], 0
        for idx, size in zip(indices, sizes):
            spans = passage_spans(batch, first, self._answer_ids[int(idx)])
            if spans:  # always, as examples keep only positives holding a span at this length
                groups.append((first, size, spans))
            first += size
        return batch, groups

    def backward(self, indices: np.ndarray, epoch: int, autocast: AbstractContextManager, scale: float) -> float:
        batch, groups = self.make_batch(indices, epoch)
        reader = self.module
        with autocast:
            start, end, select = reader(**{k: v.to(reader.device) for k, v in batch.tensors.items()})
        loss = reader_loss(masked(start, batch.text_mask), masked(end, batch.text_mask), select, groups)
        (loss * scale if scale != 1 else loss).backward()
        return float(loss.detach())

    def validate(self) -> float | None:
        return None

    def save(self, folder: Path) -> None:
        self.module.write(folder)

    def load(self, folder: Path) -> None:
        self.module.load_state_dict(Reader.load(folder).state_dict())
