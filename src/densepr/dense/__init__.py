"""Dense encoders: towers, the dual encoder, sharded passage encoding."""

from densepr.dense.biencoder import BiEncoder
from densepr.dense.encoder import Encoder
from densepr.dense.passage_encoding import encode_passages, load_embeddings

__all__ = ["BiEncoder", "Encoder", "encode_passages", "load_embeddings"]
