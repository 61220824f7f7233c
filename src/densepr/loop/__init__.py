"""The training loop shared by the dual encoder and the reader, and its torch.distributed plumbing."""

from typing import TYPE_CHECKING

from densepr.lazy import lazy_exports

if TYPE_CHECKING:
    from densepr.loop.config import LoopConfig
    from densepr.loop.loop import Task, TrainingLoop, epoch_order, list_checkpoints

_EXPORTS = {"LoopConfig": "densepr.loop.config", "Task": "densepr.loop.loop", "TrainingLoop": "densepr.loop.loop",
            "epoch_order": "densepr.loop.loop", "list_checkpoints": "densepr.loop.loop"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
