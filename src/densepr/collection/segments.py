"""Writing a collection's segment: passages, their term counts and vectors, each a function of the passage alone.

Vectors are encoded one passage per forward pass: with int8 ONNX Runtime a batch shares its activations' quantisation
scale, and a passage's vector moved by up to 0.045 with its batch-mates (400 wiki-vital passages). One at a time, a
passage's vector is the same in any sync, which is what makes a synced collection rank as a fresh build; on a 2-core
AVX2 EPYC it cost 0.91-1.08x the batched time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from densepr.backends.choice import Backend, choose
from densepr.corpus.passages import Passage, write_passages
from densepr.dense.biencoder import BiEncoder, attach_tower
from densepr.errors import DenseprError
from densepr.fileio import atomic_folder, write_manifest
from densepr.retrieve.collection import PASSAGES_FILE, VECTORS_FILE, Segment
from densepr.sparse.terms import TermCounts

log = logging.getLogger("densepr")
CHUNK = 2048  # passages tokenised and encoded at a time


class PassageEncoder:
    """The collection's passage tower, loaded on first use and placed on the backend its settings record (at create:
    the one ``auto`` picks, written back into ``settings``)."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.model: BiEncoder | None = None

    def __call__(self, passages: Sequence[Passage], progress: bool) -> np.ndarray:
        if self.model is None:
            self.model = self._load(passages)
        bar = tqdm(total=len(passages), disable=not progress, unit="passage", desc="encode")
        parts = [self.model.encode_passages(passages[i : i + CHUNK], batch_size=1, progress=bar.update, warn_truncation=False)
                 for i in range(0, len(passages), CHUNK)]  # tokenised a chunk at a time: 200k at once held 5 GB
        bar.close()
        return np.concatenate(parts)

    def _load(self, sample: Sequence[Passage]) -> BiEncoder:
        recorded = self.settings.get("backend")
        asked = Backend(recorded, self.settings["precision"]) if recorded else choose("auto", None, bulk=True)
        model = BiEncoder.load(self.settings["model"], lite=True, graph=asked.name != "torch")
        placed = attach_tower(model.passage_encoder, asked, list(sample[:: max(1, len(sample) // 64)][:64]))
        if recorded and (placed.name, placed.precision) != (asked.name, asked.precision):
            raise DenseprError(f"this collection's passages were encoded on {asked}, which fails its agreement check "
                               f"here; make the collection again (densepr collection create) to encode on {placed}")
        self.settings.update(backend=placed.name, precision=placed.precision)
        log.info("passage encoder: %s", model.passage_encoder.backend())
        return model


def write_segment(folder: Path, carried: Sequence[tuple[Segment, np.ndarray]], passages: Sequence[Passage],
                  encode: PassageEncoder, settings: dict, progress: bool) -> int:
    """A segment of the ``carried`` rows of older segments (copied: nothing re-encoded), then ``passages`` (counted
    and encoded here); written whole or not at all. Returns its row count."""
    new_vectors = encode(passages, progress) if passages else None
    with atomic_folder(folder) as tmp:
        old = [segment.passages[int(r)] for segment, rows in carried for r in rows]
        write_passages(tmp / PASSAGES_FILE, [*old, *passages])
        counts = TermCounts.count([f"{p.title} {p.text}" for p in passages], settings["stemmer"], settings["stopwords"])
        parts = [(segment.terms, rows) for segment, rows in carried] + [(counts, np.arange(len(passages)))]
        TermCounts.gather(parts).save(tmp)
        blocks = [np.asarray(segment.vectors[rows]) for segment, rows in carried]
        if new_vectors is not None:
            blocks.append(new_vectors)
        np.save(tmp / VECTORS_FILE, np.concatenate(blocks).astype(np.float32), allow_pickle=False)
        write_manifest(tmp)
    return len(old) + len(passages)
