"""One dataclass per command: its fields are the command's options (help, defaults) and the keyword arguments of
the :mod:`densepr.pipeline` function it calls. Commands that search also take a :class:`SearchSpec`'s options."""

from __future__ import annotations

from dataclasses import dataclass

from densepr.backends.choice import BackendOptions
from densepr.corpus.documents import FORMATS
from densepr.evaluate.answers import MATCH_MODES
from densepr.index import INDEX_TYPES
from densepr.options import opt

MATCH_HELP = "answer matching: string (DPR's token match) or regex (answers are patterns, CuratedTREC)"
MINE_MATCH_HELP = MATCH_HELP + "; for examples whose answer_match (written by build-train) does not say"


@dataclass(kw_only=True)
class PassagesOptions:
    inputs: list[str] = opt(positional=True, required=True,
                            help="JSONL/BEIR corpus, DPR TSV, SQuAD JSON, or the name wiki-vital")
    out: str = opt(required=True, help="output passages TSV")
    words: int = opt(100, help="words per passage (default 100)")
    format: str | None = opt(None, choices=FORMATS, help="input format (default: from the file extension)")


COLLECTION_ACTIONS = ("create", "sync", "add", "remove", "info")


@dataclass(kw_only=True)
class CollectionOptions:
    action: str = opt(positional=True, required=True, choices=COLLECTION_ACTIONS,
                      help="create DOCS... --out KB | sync KB | add KB FILES... | remove KB FILES... | info KB")
    paths: list[str] = opt(positional=True, required=True,
                           help="create: the folders and files to index (.txt .md .html .pdf .docx .jsonl .json .tsv); "
                                "the others: the collection folder, then (add, remove) files or folders")
    out: str | None = opt(None, help="create: the collection folder to write (ask, retrieve and serve take it as --collection)")
    model: str | None = opt(None, help="create: the encoder (default: offline all-MiniLM-L6-v2)")
    words: int = opt(100, help="create: words per passage (default 100)")
    max_file_mb: float = opt(100.0, help="create: files larger than this are skipped unread (default 100)")
    rehash: bool = opt(False, help="sync: read and hash every file (default: only those whose size, mtime, ctime or "
                                   "inode changed)")
    json: bool = opt(False, help="print the run's report (or info) as one JSON object")


@dataclass(kw_only=True)
class BM25Options:
    passages: str = opt(required=True, help="passages TSV")
    out: str = opt(required=True, help="index folder")
    k1: float = opt(0.9, help="term frequency saturation (paper: 0.9)")
    b: float = opt(0.4, help="length normalisation (paper: 0.4)")


@dataclass(kw_only=True)
class EncodeOptions(BackendOptions):
    passages: str = opt(required=True, help="passages TSV")
    out: str = opt(required=True, help="embeddings folder")
    model: str | None = opt(None, help="model folder or hub name (default: offline all-MiniLM-L6-v2)")
    shard_id: int | None = opt(None, help="this process's shard (default: torchrun's RANK, else 0)")
    num_shards: int | None = opt(None, help="shards in all (default: torchrun's WORLD_SIZE, else 1)")
    batch_size: int | None = opt(None, help="passages per forward pass (default: as many as fit 4,096 tokens on CPU, "
                                            "32,768 on GPU)")
    bf16: bool | None = opt(None, help="bf16 autocast (default: on where the CPU has bf16 units)")
    chunk_size: int = opt(4096, help="save a resumable chunk every N passages ...")
    chunk_seconds: float = opt(60.0, help="... or every S seconds, whichever comes first")


@dataclass(kw_only=True)
class IndexOptions:
    embeddings: str | None = opt(None, help="embeddings folder from 'densepr encode'")
    out: str | None = opt(None, help="index folder")
    type: str = opt("flat", choices=INDEX_TYPES, help="FAISS index type (default flat: exact)")
    hnsw_m: int = opt(32, help="HNSW links per node")
    nlist: int | None = opt(None, help="IVF lists (default ~4*sqrt(N))")
    pq_m: int | None = opt(None, help="PQ sub-quantisers (default dim/4)")
    shards: int = opt(1, help="split the rows over N FAISS indexes sharing one quantiser, searched in parallel threads and "
                              "merged exactly (default 1)")
    ram_budget: str | None = opt(None, help="choose the index type and parameters for this RAM (e.g. 8GB), then "
                                            "measure its recall into recall_card.json (overrides --type)")
    recall_target: float = opt(0.95, help="with --ram-budget: the recall@100 the probe setting must reach")
    card_questions: str | None = opt(None, help="with --ram-budget: a questions file whose vectors (from the embeddings' "
                                                "model, up to 1,000) are the recall card's queries (default: midpoints of "
                                                "pairs of indexed vectors)")
    latency_target: float | None = opt(None, help="with --ram-budget: predicted ms per query to stay under")
    explain: bool = opt(False, help="with --ram-budget: print the plan and build nothing")
    size: int | None = opt(None, help="with --explain and no --embeddings: the number of vectors to plan for")
    dim: int | None = opt(None, help="with --explain and no --embeddings: their dimension")
    verify: bool = opt(False, help="check the embedding shards' checksums against their manifests (sizes are always "
                                   "checked)")


@dataclass(kw_only=True)
class RetrieveOptions:
    questions: str = opt(required=True, help="NQ-open/DrQA JSONL, DPR qas TSV/CSV, SQuAD JSON, BEIR queries")
    out: str = opt(required=True, help="DPR result JSON")
    top_k: int = opt(100, help="passages per question")
    match: str = opt("string", choices=MATCH_MODES, help=MATCH_HELP)


@dataclass(kw_only=True)
class VerifyOptions:
    folders: list[str] = opt(positional=True, required=True, help="folders to check file by file: BM25 or dense indexes, "
                                                                  "embeddings, training checkpoints and models")


@dataclass(kw_only=True)
class EvaluateOptions:
    results: str = opt(positional=True, required=True, help="DPR result JSON")
    match: str | None = opt(None, choices=MATCH_MODES, help="recompute has_answer with this mode (default: the file's flags)")
    ks: str = opt("1,5,20,100", help="comma-separated k values")
    qrels: str | None = opt(None, help="BEIR qrels TSV: also report nDCG@10 and Recall@100")
    json: bool = opt(False, help="print one JSON object")


@dataclass(kw_only=True)
class AskOptions:
    question: str | None = opt(None, positional=True, nargs="?",
                               help="the question (none: one a line from stdin, the models kept loaded)")
    top_k: int = opt(5, help="passages retrieved and read")
    reader: str | None = opt(None, help="reader folder (from 'densepr train-reader') or a Hugging Face DPR reader "
                                        "(default: the reader shipped with densepr)")
    passages_only: bool = opt(False, help="print the retrieved passages only (no reader)")
    min_confidence: float | None = opt(None, help="say 'No confident answer' below this confidence (the probability "
                                                  "that the answer is right; default: the reader's threshold)")
    always_answer: bool = opt(False, help="never abstain: print the best answer whatever its confidence")
    json: bool = opt(False, help="print one JSON object a question")


@dataclass(kw_only=True)
class ServeOptions:
    host: str = opt("127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    port: int = opt(8000, help="TCP port")
    reader: str | None = opt(None, help="reader folder (from 'densepr train-reader'): POST /ask returns answer spans")
    api_key: str | None = opt(None, help="require this key on POST requests (Authorization: Bearer KEY or X-API-Key); "
                                         "default: the DENSEPR_API_KEY environment variable, else none")
    docs: bool = opt(True, help="serve the interactive API docs at /docs and /redoc")
    max_pending: int = opt(256, help="requests in flight beyond which a POST is answered at once with 429 and "
                                     "Retry-After: 1 (a bounded queue: the accepted ones keep their latency)")
    max_queue_wait: float = opt(0.5, help="also shed (429) when the requests in flight would take longer than this many "
                                          "seconds at the rate the server answered them over the last 2 s (32 are "
                                          "always admitted)")


@dataclass(kw_only=True)
class TuneHybridOptions:
    questions: str = opt(required=True, help="dev questions with answers")
    lams: str = opt("0.1,0.3,0.5,0.7,0.9,1.1,1.5,2,3,5", help="comma-separated λ values")
    ks: str = opt("20,100", help="comma-separated k values (the best λ maximises the first)")
    match: str = opt("string", choices=MATCH_MODES, help=MATCH_HELP)
    save_spec: str | None = opt(None, help="write the hybrid spec with the best λ here (for --spec of retrieve, serve, ask)")
    json: bool = opt(False, help="print one JSON object")


@dataclass(kw_only=True)
class BuildTrainOptions:
    questions: list[str] = opt(required=True, help="SQuAD JSON (gold positives) or any question file (distant "
                                                   "supervision); several: one training file, each example named by its set")
    passages: str = opt(required=True, help="passages TSV")
    bm25: str = opt(required=True, help="BM25 index folder over --passages")
    out: str = opt(required=True, help="DPR training JSON")
    match: list[str] = opt(["string"], choices=MATCH_MODES, help=MATCH_HELP + "; one for all files, or one per file")
    hard_negatives: int = opt(30, help="BM25 hard negatives kept per question")
    random_negatives: int = opt(10, help="random negatives kept per question")
    depth: int = opt(100, help="BM25 depth searched for positives and negatives")
    words: int = opt(100, help="words per passage the corpus was split with")
    dense_index: str | None = opt(None, help="a dense index over --passages: questions without an answer in BM25's "
                                             "top --depth take their positive from its top --depth")


@dataclass(kw_only=True)
class TrainOptions:
    train: list[str] = opt(required=True, help="DPR training JSON file(s); several: one model on all (see --sampling)")
    dev: str | None = opt(None, help="DPR training JSON for validation (average rank)")
    model: str | None = opt(None, help="starting model (default: offline all-MiniLM-L6-v2)")


@dataclass(kw_only=True)
class MiningOptions:
    """How hard negatives are mined (``mine`` and ``self-train``)."""

    depth: int = opt(100, help="passages searched per question")
    keep: int = opt(30, help="hard negatives kept per question")
    match: str = opt("string", choices=MATCH_MODES, help=MINE_MATCH_HELP)
    margin: float = opt(0.0, help="skip negatives scoring above the positive by more than this (likely false negatives; "
                                  "dense indexes only; a large value turns it off)")
    keep_old: bool = opt(False, help="add the mined negatives to the old ones (DPR's BM25 + DPR negatives) instead of "
                                     "replacing them")


@dataclass(kw_only=True)
class SelfTrainOptions(TrainOptions, MiningOptions):
    passages: str = opt(required=True, help="passages TSV to encode and mine from each round")
    rounds: int = opt(1, help="mining rounds after the first training (each: encode, index, mine, train)")


@dataclass(kw_only=True)
class MineOptions(MiningOptions):
    train: str = opt(required=True, help="DPR training JSON")
    out: str = opt(required=True, help="DPR training JSON with the re-mined hard negatives")


@dataclass(kw_only=True)
class TrainReaderOptions:
    results: str = opt(required=True, help="DPR result JSON of the training questions (from 'densepr retrieve')")
    model: str | None = opt(None, help="encoder to start from (default: offline all-MiniLM-L6-v2)")
    gold: str | None = opt(None, help="DPR training JSON whose positive_ctxs are the questions' gold passages (from "
                                      "'densepr build-train' on SQuAD): positives are then those and the answer "
                                      "passages of their pages")
    depth: int = opt(100, help="retrieved passages the positive and negatives come from")
    max_length: int = opt(256, help="tokens per question + passage input")
    max_answer_len: int = opt(10, help="longest answer span in tokens at inference")
    match: str = opt("string", choices=MATCH_MODES, help="answer matching where ctxs lack has_answer")


@dataclass(kw_only=True)
class QAOptions(BackendOptions):
    results: str = opt(required=True, help="DPR result JSON (from 'densepr retrieve')")
    reader: str = opt(required=True, help="reader folder (from 'densepr train-reader')")
    out: str = opt(required=True, help="predictions JSON")
    ks: str = opt("1,5,10,20,50,100", help="numbers of top passages the reader sees")
    batch_size: int = opt(32, help="passages per forward pass")
    match: str = opt("string", choices=MATCH_MODES, help=MATCH_HELP)
    bf16: bool | None = opt(None, help="bf16 autocast (default: on where the CPU has bf16 units)")
    json: bool = opt(False, help="print one JSON object")


@dataclass(kw_only=True)
class ExportOptions:
    model: str = opt(required=True, help="model to export: a folder or hub name (densepr checkpoint, sentence-transformers "
                                         "folder, Hugging Face DPR encoder), or with --reader a reader folder or DPRReader")
    out: str = opt(required=True, help="the ONNX folder to write; 'pip install densepr' (no torch) loads it as --model "
                                       "(or --reader)")
    reader: bool = opt(False, help="MODEL is a reader")
