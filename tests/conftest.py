"""Shared fixtures: tiny random BERT / DPR models and small corpora, built in temp folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from benchmarks.harness import free_port  # noqa: F401 - the tests take it from here

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WORDS = ("the a of in and to is was by for on with as at from who what where when which born city river king "
         "einstein ulm germany physicist paris france capital seine london england thames music song album "
         "linda davis reba river mountain war year century first").split()

DOCS = [
    {"id": "d1", "title": "Albert Einstein", "text": "Albert Einstein was a physicist born in Ulm in Germany. " * 3},
    {"id": "d2", "title": "Paris", "text": "Paris is the capital of France and the Seine river flows through the city."},
    {"id": "d3", "title": "London", "text": "London is the capital of England on the river Thames."},
    {"id": "d4", "title": "Does He Love You", "text": "A song recorded by Reba and Linda Davis, first on the album."},
]


def _vocab() -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    punct = list(".,;:!?'\"()-")
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *punct, *["##" + c for c in letters]]


def _tokenizer(folder: Path):
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    # from_pretrained reads vocab.txt; the constructor's vocab_file is ignored by transformers 5 (all words -> [UNK])
    return BertTokenizer.from_pretrained(folder, do_lower_case=True)


def _bert_config(**extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=len(_vocab()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128, **extra)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer, 32-d BERT folder with a small word-piece vocabulary."""
    import torch
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    tokenizer = _tokenizer(folder)
    BertModel(_bert_config()).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_dpr(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny random ``DPRQuestionEncoder`` and ``DPRContextEncoder`` folders (Hugging Face DPR layout)."""
    import torch
    from transformers import DPRConfig, DPRContextEncoder, DPRQuestionEncoder

    root = tmp_path_factory.mktemp("tiny_dpr")
    folders = []
    for seed, cls in ((1, DPRQuestionEncoder), (2, DPRContextEncoder)):
        folder = root / cls.__name__
        tokenizer = _tokenizer(folder)
        torch.manual_seed(seed)
        config = DPRConfig(**{k: v for k, v in _bert_config().to_dict().items() if k in DPRConfig().to_dict()})
        cls(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders.append(folder)
    return folders[0], folders[1]


@pytest.fixture(scope="session")
def tiny_indexes(tmp_path_factory, tiny_bert) -> Path:
    """The test corpus as passages (12 words), a BM25 index and a flat dense index (tiny BERT); read-only."""
    from densepr import pipeline

    d = tmp_path_factory.mktemp("tiny_indexes")
    (d / "docs.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in DOCS), encoding="utf-8")
    pipeline.make_passages(inputs=[str(d / "docs.jsonl")], out=d / "psgs.tsv", words=12)
    pipeline.build_bm25(passages=d / "psgs.tsv", out=d / "bm25", progress=False)
    pipeline.encode(passages=d / "psgs.tsv", out=d / "emb", model=str(tiny_bert), bf16=False, progress=False)
    pipeline.build_index(embeddings=d / "emb", out=d / "flat")
    return d


@pytest.fixture
def docs_jsonl(tmp_path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


@pytest.fixture
def passages_tsv(tmp_path, docs_jsonl) -> Path:
    from densepr.pipeline import make_passages

    out = tmp_path / "psgs.tsv"
    make_passages(inputs=[str(docs_jsonl)], out=out, words=12)
    return out


@pytest.fixture
def questions_jsonl(tmp_path) -> Path:
    path = tmp_path / "questions.jsonl"
    rows = [{"question": "where was einstein born", "answer": ["Ulm"]},
            {"question": "what river flows through paris", "answer": ["Seine"]},
            {"question": "who recorded the song with reba", "answer": ["Linda Davis"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def random_vectors(n: int, dim: int, queries: int, seed: int = 0):
    """``n`` random vectors with ids ``p0``..., and ``queries`` random query vectors."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, dim)).astype(np.float32), [f"p{i}" for i in range(n)],
            rng.normal(size=(queries, dim)).astype(np.float32))


def shared(relative: str) -> Path:
    """A file of ``../shared/data``, or skip the test where that folder is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    return path


def run_forked(target, *args, timeout: float = 300) -> int | None:
    """``target(*args)`` in a forked child (nothing imported again); its exit code, ``None`` if it hung (then killed).
    The child runs torch and FAISS on one thread: their OpenMP thread pools do not survive a fork, and a child
    using them with several threads would hang."""
    import multiprocessing

    child = multiprocessing.get_context("fork").Process(target=_single_threaded, args=(target, *args))
    child.start()
    child.join(timeout)
    if child.exitcode is None:
        child.kill()
        child.join()
        return None
    return child.exitcode


def _single_threaded(target, *args) -> None:
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(1)
    target(*args)
