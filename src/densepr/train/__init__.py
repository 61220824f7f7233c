"""Training the dual encoder: DPR data, batches, loss, gradient caching, its loop task, hard-negative mining."""

from typing import TYPE_CHECKING

from densepr.lazy import lazy_exports

if TYPE_CHECKING:
    from densepr.train.build import build_training_data, squad_gold_rows
    from densepr.train.config import TrainConfig
    from densepr.train.data import TrainingExample, read_training_data, write_training_data
    from densepr.train.mine import mine_hard_negatives
    from densepr.train.model import DualEncoderModel
    from densepr.train.task import DualEncoderTask

_EXPORTS = {
    "build_training_data": "densepr.train.build", "squad_gold_rows": "densepr.train.build",
    "TrainConfig": "densepr.train.config", "TrainingExample": "densepr.train.data",
    "read_training_data": "densepr.train.data", "write_training_data": "densepr.train.data",
    "mine_hard_negatives": "densepr.train.mine", "DualEncoderModel": "densepr.train.model",
    "DualEncoderTask": "densepr.train.task",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
