"""Collections (``densepr collection``) on the default corpus written out as ``.txt`` files, one per article.

- create: ``collection create`` against the four manual commands (``passages``, ``bm25``, ``encode``, ``index``) over
  the same documents (a JSONL of the same titles and texts, so the same passages), wall time of each CLI call;
- sync after editing one document (median of ``--syncs`` runs, start-up included), and ``add`` of 100 new documents
  (SciFact abstracts) against their own encoding time;
- equality: ``--rounds`` random rounds of adds, edits and deletions, each synced, then a fresh ``create`` over the same
  files; differing ids in the top 100 of ``--questions`` NQ-open dev questions, for BM25, dense and hybrid;
- scale: sync after one edit on synthetic collections of 12,000 and ``--scale-passages`` passages (10 a document) with
  a small random BERT (2 layers, 64-d), so that building 200,000 passages takes minutes, not hours.

    python -m benchmarks collections [--docs 10033] [--rounds 20] [--questions 200] [--scale-passages 200000]
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import DATA, cpu_line, machine, parser, publish, table

SMOKE = ["--docs", "12", "--syncs", "1", "--rounds", "2", "--questions", "5", "--scale-passages", "0"]


def cli(*args: str) -> float:
    """Wall seconds of ``python -m densepr -q ARGS`` (start-up included)."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "densepr", "-q", *args], capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"densepr {' '.join(args)}: {run.stderr[-1500:]}")
    return time.perf_counter() - start


def write_corpus(docs: list, folder: Path) -> list[dict]:
    """One ``.txt`` file per document, named after its title; returns the JSONL records of the same documents."""
    folder.mkdir(parents=True)
    records, used = [], set()
    for doc in docs:
        stem = (doc.title or doc.id).replace("/", "-").strip(". ") or doc.id
        while stem in used:
            stem += " (2)"
        used.add(stem)
        (folder / f"{stem}.txt").write_text(doc.text, encoding="utf-8")
        records.append({"id": stem, "title": stem, "text": doc.text})
    return sorted(records, key=lambda r: f"{r['id']}.txt")  # the collection's order: by file name


def new_documents(n: int, skip: int = 0) -> list[tuple[str, str]]:
    """Documents that are not in the default corpus: SciFact abstracts (title, text)."""
    out = []
    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= skip + n:
                break
            if i >= skip:
                doc = json.loads(line)
                out.append((f"scifact {doc['_id']}", f"{doc['title']} {doc['text']}"))
    return out


def nq_questions(n: int) -> list[str]:
    path = DATA / "nq-open" / "NQ-open.dev.jsonl"
    return [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines()[:n]]


def create_vs_manual(docs_dir: Path, records: list[dict], work: Path) -> dict:
    out: dict = {"create_s": cli("collection", "create", str(docs_dir), "--out", str(work / "kb"))}
    jsonl = work / "docs.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    steps = {"passages": ["passages", str(jsonl), "--out", str(work / "psgs.tsv")],
             "bm25": ["bm25", "--passages", str(work / "psgs.tsv"), "--out", str(work / "bm25")],
             "encode": ["encode", "--passages", str(work / "psgs.tsv"), "--out", str(work / "emb")],
             "index": ["index", "--embeddings", str(work / "emb"), "--out", str(work / "flat")]}
    out["manual_s"] = {name: cli(*argv) for name, argv in steps.items()}
    out["manual_total_s"] = sum(out["manual_s"].values())
    out["ratio"] = out["create_s"] / out["manual_total_s"]
    return out


def edit_syncs(kb: Path, docs_dir: Path, runs: int, rng: random.Random) -> list[float]:
    walls = []
    files = sorted(docs_dir.glob("*.txt"))
    for _ in range(runs):
        path = rng.choice(files)
        path.write_text(path.read_text(encoding="utf-8") + " An added sentence about the article.", encoding="utf-8")
        walls.append(cli("collection", "sync", str(kb)))
    return walls


def add_hundred(kb: Path, docs_dir: Path) -> dict:
    from densepr.collection.segments import PassageEncoder
    from densepr.corpus.passages import Passage, split_words
    from densepr.retrieve.collection import read_version

    folder = docs_dir / "added"  # inside the collection's folder, so that a fresh create over it holds them too
    folder.mkdir()
    passages = []
    for title, body in new_documents(100):
        (folder / f"{title}.txt").write_text(body, encoding="utf-8")
        passages += [Passage("", chunk, title) for chunk in split_words(body, 100)]
    wall = cli("collection", "add", str(kb), str(folder))
    encode = PassageEncoder(dict(read_version(kb)["settings"]))
    encode(passages[:2], progress=False)  # load and place the model outside the timing
    start = time.perf_counter()
    encode(passages, progress=False)
    seconds = time.perf_counter() - start
    return {"documents": 100, "passages": len(passages), "add_s": wall, "encode_s": seconds, "overhead_s": wall - seconds}


def rankings(kb: Path, questions: list[str], model) -> tuple[dict, object]:
    from densepr.retrieve.searcher import open_collection
    from densepr.retrieve.spec import SearchSpec

    out = {}
    for kind in ("bm25", "dense", "hybrid"):
        searcher = open_collection(SearchSpec(collection=str(kb), kind=kind).resolved(), model=model)
        model = searcher.dense.model if searcher.dense is not None else model
        out[kind] = [[(searcher.ids[h.row], h.score) for h in hits] for hits in searcher.search(questions, 100)]
    return out, model


def equality(kb: Path, docs_dir: Path, work: Path, rounds: int, questions: list[str], rng: random.Random) -> dict:
    pool = new_documents(2 * rounds, skip=100)
    for r in range(rounds):
        files = sorted(docs_dir.glob("*.txt"))
        for _ in range(2):
            title, body = pool.pop()
            (docs_dir / f"{title} {r}.txt").write_text(body, encoding="utf-8")
        for path in rng.sample(files, 2):
            words = path.read_text(encoding="utf-8").split()
            path.write_text(" ".join(words[: max(1, len(words) // 2)] + ["Edited", f"in round {r}."]), encoding="utf-8")
        rng.choice(files).unlink()
        cli("collection", "sync", str(kb))
    fresh = work / "fresh"
    fresh_s = cli("collection", "create", str(docs_dir), "--out", str(fresh))
    synced, model = rankings(kb, questions, None)
    built, _ = rankings(fresh, questions, model)
    out: dict = {"rounds": rounds, "questions": len(questions), "fresh_create_s": fresh_s}
    for kind in synced:
        pairs = list(zip(synced[kind], built[kind], strict=True))
        out[kind] = {"differing_ids": sum(x[0] != y[0] for a, b in pairs for x, y in zip(a, b)) + sum(abs(len(a) - len(b)) for a, b in pairs),
                     "max_score_diff": max((abs(x[1] - y[1]) for a, b in pairs for x, y in zip(a, b)), default=0.0)}
    return out


def tiny_model(folder: Path) -> Path:
    """A random 2-layer, 64-d BERT with the default model's tokenizer (needs torch and transformers)."""
    import torch
    from transformers import BertConfig, BertModel

    from densepr.dense.loading import SHIPPED_DEFAULT

    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (SHIPPED_DEFAULT / name).is_file():
            shutil.copyfile(SHIPPED_DEFAULT / name, folder / name)
    return folder


def scale(work: Path, sizes: list[int], syncs: int, rng: random.Random) -> dict:
    model = tiny_model(work / "tiny-bert")
    words = " ".join(p["context"] for a in json.loads((DATA / "squad" / "squad-dev-v1.1.open.json").read_text())["data"][:60]
                     for p in a["paragraphs"]).split()
    out = {}
    for passages in sizes:
        docs_dir, kb = work / f"synthetic-{passages}", work / f"kb-{passages}"
        docs_dir.mkdir()
        for d in range(passages // 10):
            (docs_dir / f"doc{d:06d}.txt").write_text(" ".join(rng.choices(words, k=1000)), encoding="utf-8")
        build = cli("collection", "create", str(docs_dir), "--out", str(kb), "--model", str(model))
        walls = edit_syncs(kb, docs_dir, syncs, rng)
        out[str(passages)] = {"create_s": build, "sync_s": walls, "sync_median_s": statistics.median(walls)}
        shutil.rmtree(docs_dir)
    return out


def main() -> None:
    p = parser(__doc__, "collections")
    p.add_argument("--docs", type=int, default=None, help="documents of the default corpus (default: all 10,033)")
    p.add_argument("--syncs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--questions", type=int, default=200)
    p.add_argument("--scale-passages", type=int, default=200_000, help="0: no scale runs")
    p.add_argument("--work", default="/tmp/densepr-collections-bench")
    p.add_argument("--again", default="", help="comma-separated parts to measure again (sync, add, scale) on the work "
                                               "folder and results of an earlier full run; the others are kept")
    a = p.parse_args()
    from densepr.corpus.documents import read_wiki_vital

    rng = random.Random(0)
    work, kb = Path(a.work), Path(a.work) / "kb"
    again = {part for part in a.again.split(",") if part}
    if again:
        results = json.loads((Path(a.out) / "results.json").read_text())
        results.update(machine=machine())
    else:
        shutil.rmtree(work, ignore_errors=True)
        docs = list(read_wiki_vital())[: a.docs]
        records = write_corpus(docs, work / "docs")
        results = {"documents": len(docs)}
        results["create"] = create_vs_manual(work / "docs", records, work)
    if not again or "sync" in again:
        results["sync_one_edit_s"] = edit_syncs(kb, work / "docs", a.syncs, rng)
    if not again or "add" in again:
        shutil.rmtree(work / "docs" / "added", ignore_errors=True)
        cli("collection", "sync", str(kb))  # the earlier run's added documents drop out, to be added again
        results["add"] = add_hundred(kb, work / "docs")
    if not again:
        results["equality"] = equality(kb, work / "docs", work, a.rounds, nq_questions(a.questions), rng)
    if a.scale_passages and (not again or "scale" in again):
        for size in (12_000, a.scale_passages):
            shutil.rmtree(work / f"kb-{size}", ignore_errors=True)
        results["scale"] = scale(work, [12_000, a.scale_passages], a.syncs, rng)
    c, sync = results["create"], statistics.median(results["sync_one_edit_s"])
    rows = [["create (vs the 4 manual commands)", f"{c['create_s']:.1f} s vs {c['manual_total_s']:.1f} s ({c['ratio']:.2f}x)",
             "≤ 1.15x"],
            ["sync after 1 edit (median)", f"{sync:.2f} s", "≤ 3 s"],
            ["add 100 documents", f"{results['add']['add_s']:.1f} s = encoding {results['add']['encode_s']:.1f} s + "
             f"{results['add']['overhead_s']:.1f} s", "encoding + ≤ 3 s"]]
    for size, s in results.get("scale", {}).items():
        rows.append([f"sync after 1 edit, {int(size):,} synthetic passages (small BERT)", f"{s['sync_median_s']:.2f} s", ""])
    eq = results["equality"]
    rows.append([f"equality after {eq['rounds']} rounds ({eq['questions']} questions, top 100)",
                 ", ".join(f"{k}: {eq[k]['differing_ids']} ids differ, scores ±{eq[k]['max_score_diff']:.1e}"
                           for k in ("bm25", "dense", "hybrid")), "0 ids"])
    manual = ", ".join(f"{k} {v:.1f} s" for k, v in c["manual_s"].items())
    text = "\n".join(["## collections: a folder of files, kept current", "",
                      f"{cpu_line(results.get('machine'))}. The default corpus's {results['documents']:,} articles as .txt files; wall times of CLI calls, "
                      f"start-up included; manual: {manual}.", "",
                      *table(["what", "measured", "target"], rows)])
    publish("collections", a, results, text)


if __name__ == "__main__":
    main()
