"""Self-training in one command (DPR's iterated hard negatives): train, encode the corpus with the model,
index it, mine new hard negatives from the model's own index (with a false-negative audit), train again.

Every stage leaves a finished output under ``out/round-N/`` (``model/final``, ``emb``, ``index``, ``mined.json``)
and is skipped when that output exists; training and encoding resume inside a stage, so a killed run started
again with the same options goes on where it stopped.

>>> self_train(train=["nq.json"], passages="psgs.tsv", config=TrainConfig(out="run/"), rounds=1)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from densepr import pipeline, training
from densepr.errors import DenseprError
from densepr.fileio import read_json, write_json
from densepr.retrieve.spec import SearchSpec
from densepr.train.config import TrainConfig

log = logging.getLogger("densepr")
AUDIT_FILE = "mine_audit.json"


def self_train(*, train: str | Path | Sequence[str | Path], passages: str | Path, config: TrainConfig, rounds: int = 1,
               model: str | None = None, dev: str | Path | None = None, depth: int = 100, keep: int = 30,
               match: str = "string", margin: float = 0.0, keep_old: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train, then ``rounds`` times: encode, index, mine, train from the last model. The final model is
    ``<config.out>/round-<rounds>/model/final``. Returns each round's training figures and mining audit."""
    if rounds < 0:
        raise DenseprError("--rounds must be >= 0")
    if not Path(passages).is_file():
        raise DenseprError(f"{passages}: no such passages file")
    out, data, start = Path(config.out), train, model
    report: dict[str, Any] = {"rounds": []}
    for r in range(rounds + 1):
        folder = out / f"round-{r}"
        final = folder / "model" / "final"
        entry: dict[str, Any] = {"round": r, "model": str(final)}
        if final.is_dir():
            log.info("round %d: %s is trained already", r, final)
        else:
            log.info("round %d: training from %s on %s", r, start or "the default model", data)
            entry["train"] = training.train(train=data, config=dataclasses.replace(config, out=str(folder / "model")),
                                            model=start, dev=dev, progress=progress)
        start = str(final)
        if r < rounds:
            mined, audit_file = folder / "mined.json", folder / AUDIT_FILE
            if not (mined.is_file() and audit_file.is_file()):
                if not (folder / "index" / "meta.json").is_file():
                    pipeline.encode(passages=passages, out=folder / "emb", model=start, progress=progress)
                    pipeline.build_index(embeddings=folder / "emb", out=folder / "index")
                spec = SearchSpec(kind="dense", index=str(folder / "index"), passages=str(passages))
                write_json(audit_file, training.mine(train=data, spec=spec, out=mined, depth=depth, keep=keep, match=match,
                                                     margin=margin, keep_old=keep_old, progress=progress))
            entry["mine_audit"] = read_json(audit_file)
            data = mined
        report["rounds"].append(entry)
    write_json(out / "self_train.json", report)
    return report
