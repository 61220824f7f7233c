"""Training the dual encoder: DPR data, batches, loss, gradient caching, trainer, hard-negative mining."""

from densepr.train.build import build_training_data, squad_gold_rows
from densepr.train.data import TrainingExample, read_training_data, write_training_data
from densepr.train.mine import mine_hard_negatives
from densepr.train.model import DualEncoderModel
from densepr.train.trainer import TrainConfig, Trainer

__all__ = ["DualEncoderModel", "TrainConfig", "Trainer", "TrainingExample", "build_training_data",
           "mine_hard_negatives", "read_training_data", "squad_gold_rows", "write_training_data"]
