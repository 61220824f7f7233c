"""Training checkpoints: Hugging Face tower folders plus ``training_state.pt``, written atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from densepr.dense.encoder import Encoder
from densepr.train.model import DualEncoderModel

STATE_FILE = "training_state.pt"


def save_checkpoint(model: DualEncoderModel, state: dict, path: Path, name: str = "") -> None:
    """Write ``path`` as a whole: built in a temp folder, then renamed into place."""
    tmp = path.parent / f".tmp-{path.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.biencoder(name).save(tmp)
    torch.save(state, tmp / STATE_FILE)
    old = path.parent / f".old-{path.name}"
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    return sorted(p for p in out_dir.glob("checkpoint-*") if (p / STATE_FILE).is_file())


def prune_checkpoints(out_dir: Path, keep: int) -> None:
    for old in list_checkpoints(out_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(model: DualEncoderModel, path: Path) -> dict:
    """Copy a checkpoint's weights into ``model``; returns its training state."""
    for tower, sub in ((model.question_encoder, "question_encoder"), (model.passage_encoder, "passage_encoder")):
        saved = Encoder.from_pretrained(path / sub, pooling=tower.pooling)
        tower.model.load_state_dict(saved.model.state_dict())
    return torch.load(path / STATE_FILE, weights_only=True)
