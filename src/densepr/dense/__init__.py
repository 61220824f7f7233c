"""Dense encoders: towers, the dual encoder, sharded passage encoding."""

from typing import TYPE_CHECKING

from densepr.lazy import lazy_exports

if TYPE_CHECKING:
    from densepr.dense.biencoder import BiEncoder
    from densepr.dense.encoder import Encoder
    from densepr.dense.passage_encoding import encode_passages, load_embeddings

_EXPORTS = {"BiEncoder": "densepr.dense.biencoder", "Encoder": "densepr.dense.encoder",
            "encode_passages": "densepr.dense.passage_encoding", "load_embeddings": "densepr.dense.passage_encoding"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
