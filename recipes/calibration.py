"""The reader's confidence: readings of dev questions, the fitted model, and selective QA on held-out questions.

    python -m recipes.calibration collect [--per-set 900] [--out benchmarks/out/calibration]
    python -m recipes.calibration fit [--out benchmarks/out/calibration] [--install] [--page]

``collect`` retrieves the top 5 passages of each question with the default hybrid and reads them with the default
reader, keeping every passage's id, retrieval score and reading (selection logit, best span, its score, log
probability and margin):

- over wiki-vital (the default corpus): NQ-open dev (all 1,805 odd lines: half fit, half held out; 900 of the even
  lines, which the reader was trained on, apart), EfficientQA dev (600 even lines: fit; all 900 odd: held out),
  CuratedTREC train (regex answers) and WebQuestions train (fit);
- over the mini-Wikipedia (wiki-vital + the SQuAD dev articles): SQuAD's reader-training articles (fit) and its
  held-out articles (every 4th, ``benchmarks.harness.split_squad``).

``fit`` fits :class:`densepr.read.confidence.ConfidenceModel` on the fit questions (k = 1 and 5 pooled), chooses the
threshold for ``--precision`` EM among the answered fit questions, and reports per held-out set: EM always answering,
coverage and EM among answered, the area under the EM-coverage curve (against ranking by span score) and the
expected calibration error, with the reliability diagram's bins. ``--install`` writes ``confidence.json`` beside the
shipped reader.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from datetime import date
from pathlib import Path

import numpy as np
from benchmarks.ablations._report import publish
from benchmarks.harness import DATA, cpu_line
from benchmarks.harness import table as markdown_table

KS = (1, 5)
SHIPPED_READER = Path(__file__).resolve().parents[1] / "src" / "densepr" / "default" / "reader"


def mini_wiki(work: Path, lam: float):
    """The mini-Wikipedia (wiki-vital + SQuAD dev articles): passages, BM25, the default model's flat index, searched
    by the default hybrid with ``lam`` (the reader's recipe reads SQuAD with BM25 + 20·dense, chosen on SQuAD's
    training-article questions)."""
    from densepr import pipeline
    from densepr.quickstart import SHIPPED
    from densepr.retrieve.spec import SearchSpec

    if not (work / "mini-index" / "meta.json").is_file():
        pipeline.make_passages(inputs=["wiki-vital", str(DATA / "squad" / "squad-dev-v1.1.open.json")], out=work / "mini.tsv")
        pipeline.build_bm25(passages=work / "mini.tsv", out=work / "mini-bm25", progress=False)
        pipeline.encode(passages=work / "mini.tsv", out=work / "mini-emb", progress=False)
        pipeline.build_index(embeddings=work / "mini-emb", out=work / "mini-index")
    settings = json.loads((SHIPPED / "search.json").read_text())
    return SearchSpec.from_dict({**settings, "lam": lam, "kind": "hybrid", "index": str(work / "mini-index"),
                                 "bm25_index": str(work / "mini-bm25")})


def question_sets(work: Path, per_set: int) -> dict[str, tuple[str, str, list, str]]:
    """name -> (role, corpus, questions, match)."""
    from benchmarks.harness import split_squad

    from densepr.questions import read_questions

    rng = random.Random(0)

    def sample(items: list, n: int) -> list:
        return [items[i] for i in sorted(rng.sample(range(len(items)), min(n, len(items))))]

    train_squad, held_squad, _ = split_squad(DATA / "squad" / "squad-dev-v1.1.open.json", work)
    nq, eqa = (read_questions(DATA / "nq-open" / f) for f in ("NQ-open.dev.jsonl", "NQ-open.efficientqa.dev.1.1.jsonl"))
    return {"squad-fit": ("fit", "mini", sample(read_questions(train_squad), per_set), "string"),
            "squad-heldout": ("heldout", "mini", read_questions(held_squad), "string"),  # all 1,720
            "nq-fit": ("fit", "vital", sample(nq[0::2], per_set), "string"),
            "nq-heldout": ("heldout", "vital", nq[1::2], "string"),  # all 1,805
            "efficientqa-fit": ("fit", "vital", sample(eqa[0::2], per_set * 2 // 3), "string"),
            "efficientqa-heldout": ("heldout", "vital", eqa[1::2], "string"),  # all 900
            "curatedtrec-fit": ("fit", "vital", sample(read_questions(DATA / "curatedtrec" / "CuratedTrec-train.txt"), per_set // 2), "regex"),
            "webquestions-fit": ("fit", "vital", sample(read_questions(DATA / "webquestions" / "WebQuestions-train.txt"), per_set // 2), "string")}


def collect(a: argparse.Namespace) -> None:
    from densepr.qa import place_reader
    from densepr.quickstart import default_reader, ensure_default_index
    from densepr.read.graph_reader import load_reader
    from densepr.read.inference import read_passages
    from densepr.retrieve.searcher import open_searcher

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    searchers = {"vital": open_searcher(ensure_default_index(progress=False)), "mini": open_searcher(mini_wiki(out, a.squad_lam))}
    reader = load_reader(default_reader(), graph=True)
    place_reader(reader, searchers["vital"].spec, searchers["vital"].store)
    for name, (role, corpus, questions, match) in question_sets(out, a.per_set).items():
        path = out / f"{name}.jsonl.gz"
        if path.is_file():
            continue
        start, rows = time.perf_counter(), []
        found = searchers[corpus].passages([q.text for q in questions], max(KS))
        for q, passages in zip(questions, found):
            readings = read_passages(reader, q.text, passages)
            rows.append({"question": q.text, "answers": list(q.answers), "match": match, "role": role,
                         "scores": [p["score"] for p in passages],
                         "ids": [p["id"] for p in passages],
                         "readings": [[r.index, r.selection, r.span_score, r.answer, r.span_logprob, r.span_margin]
                                      for r in readings]})
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{name}: {len(rows)} questions in {time.perf_counter() - start:.0f} s", flush=True)


def load_rows(out: Path) -> dict[str, list[dict]]:
    return {p.name.removesuffix(".jsonl.gz"): [json.loads(line) for line in gzip.open(p, "rt", encoding="utf-8")]
            for p in sorted(out.glob("*.jsonl.gz"))}


def stored_readings(row: dict, k: int) -> list:
    """The stored readings of a question's top ``k`` passages as :class:`~densepr.read.inference.PassageReading` s."""
    from densepr.read.inference import PassageReading

    return [PassageReading(i, sel, score, 0, 0, answer, -1, logprob, margin)
            for i, sel, score, answer, logprob, margin in row["readings"]][:k]


def table(rows: list[dict], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, exact match and span score of each question's answer from its top ``k`` passages."""
    from densepr.evaluate.exact_match import exact_match
    from densepr.read.confidence import FEATURES, features
    from densepr.read.inference import choose

    x, y, span = [], [], []
    for row in rows:
        read = stored_readings(row, k)
        if not read:
            x.append(np.zeros(len(FEATURES)))
            y.append(False)
            span.append(-1e9)
            continue
        best = choose(read)
        x.append(features(read, best, row["scores"][:k]))
        y.append(exact_match(best.answer, row["answers"], row["match"]))
        span.append(best.span_score)
    return np.array(x), np.array(y, dtype=np.float64), np.array(span)


def splits(sets: dict[str, list[dict]], out: Path, with_seen: bool,
           a_split: bool = False) -> tuple[list[dict], dict[str, list[dict]]]:
    """Calibration questions and held-out ones. The reader was trained on SQuAD's training articles and on NQ-open's
    even dev lines, so the confidence is fitted on questions it did not see: every other question of SQuAD's held-out
    articles (whole articles with ``a_split``) and half of the odd NQ-open lines, plus EfficientQA's even lines,
    CuratedTREC and WebQuestions (as the reader's recipe used them); the other halves and EfficientQA's odd lines are
    the held-out sets, NQ-open's and EfficientQA's also pooled ("NQ-style"). ``with_seen`` adds the SQuAD training
    articles and the even NQ-open lines to the fit."""
    articles = json.loads((out / "squad-heldout.json").read_text(encoding="utf-8"))["data"]
    article_of = {qa["question"]: i for i, a in enumerate(articles) for p in a["paragraphs"] for qa in p["qas"]}
    squad, nq = sets.get("squad-heldout", []), sets.get("nq-heldout", [])
    fit_rows = ([r for r in squad if article_of.get(r["question"], 0) % 2 == 0] if a_split else squad[0::2]) + nq[0::2]
    for name in ("efficientqa-fit", "curatedtrec-fit", "webquestions-fit") + (("squad-fit", "nq-fit") if with_seen else ()):
        fit_rows += sets.get(name, [])
    held = {"squad-heldout": [r for r in squad if article_of.get(r["question"], 0) % 2 == 1] if a_split else squad[1::2],
            "nq-heldout": nq[1::2],
            "efficientqa-heldout": sets.get("efficientqa-heldout", [])}
    held["nq-style-heldout"] = held["nq-heldout"] + held["efficientqa-heldout"]  # the target's "NQ-style questions"
    return fit_rows, {**{k: v for k, v in held.items() if v}, "squad-train-articles (seen)": sets.get("squad-fit", []),
                      "nq-even (seen)": sets.get("nq-fit", [])}


def risk_coverage(scores: np.ndarray, correct: np.ndarray, points: int = 20) -> list[list[float]]:
    """[coverage %, EM % among answered] when answering the questions with the highest scores first."""
    hits = np.asarray(correct, dtype=float)[np.argsort(-np.asarray(scores), kind="stable")]
    sizes = sorted({max(1, round(len(hits) * i / points)) for i in range(1, points + 1)})
    return [[round(100 * n / len(hits), 1), round(100 * hits[:n].mean(), 1)] for n in sizes]


def fit(a: argparse.Namespace) -> None:
    from densepr.read.confidence import ConfidenceModel, coverage_curve_area, reliability, selective

    out = Path(a.out)
    fit_rows, sets = splits(load_rows(out), out, a.with_seen, a.by_article)
    parts = [table(fit_rows, k) for k in KS]
    x, y = np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    model = ConfidenceModel.fit(x, y, l2=a.l2)
    confidence = model.probability(x)
    candidates = [t for t in np.linspace(0.05, 0.95, 181)
                  if (confidence >= t).any() and y[confidence >= t].mean() >= a.precision]
    model.threshold = round(float(min(candidates)), 3) if candidates else 0.5
    results: dict = {"date": str(date.today()), "cpu": cpu_line(), "precision": a.precision, "threshold": model.threshold,
                     "fit_questions": len(fit_rows), "sets": {}}
    lines = []
    for name, rows in sets.items():
        if not rows:
            continue
        for k in KS:
            xs, ys, span = table(rows, k)
            conf = model.probability(xs)
            sel = selective(conf, ys, model.threshold)
            sel["area_span_score"] = coverage_curve_area(span, ys)
            sel["questions"] = len(rows)
            if k == 5:
                sel["reliability"] = reliability(conf, ys)
                sel["curve"] = {"confidence": risk_coverage(conf, ys), "span score": risk_coverage(span, ys)}
            results["sets"].setdefault(name, {})[str(k)] = sel
            lines.append([name, k, len(rows), f"{sel['em_always']:.1f}", f"{sel['coverage']:.1f}",
                          f"{sel['em_answered']:.1f}", f"{sel['area']:.1f} ({sel['area_span_score']:.1f})",
                          f"{sel['ece']:.3f}"])
    model.card = {"fitted_on": f"{len(fit_rows)} questions (recipes/calibration.py splits)", "ks": list(KS),
                  "threshold_rule": f"the lowest confidence at which the fit questions' EM among answered is >= "
                                    f"{a.precision:.0%}", "date": results["date"],
                  "heldout": {n: dict(v["5"]) for n, v in results["sets"].items() if n.endswith("-heldout")}}
    for v in model.card["heldout"].values():
        v.pop("reliability", None)
        v.pop("curve", None)
    if a.install:
        model.save(SHIPPED_READER)
    results["model"] = model.to_dict()
    def bins(name: str) -> str:
        found = results["sets"].get(name, {}).get("5", {}).get("reliability", [])
        return f"Reliability ({name}, k = 5): " + ", ".join(
            f"[{b['low']:.1f}, {b['high']:.1f}) n={b['count']} conf {b['confidence']:.2f} acc {b['accuracy']:.2f}"
            for b in found if b["count"])

    text = "\n".join([f"## calibration: the reader's confidence and abstention ({results['date']})", "",
                      f"{results['cpu']}. Command: `python -m recipes.calibration fit --precision {a.precision}`. "
                      f"Fitted on {len(fit_rows):,} questions (k = 1 and 5 pooled); threshold {model.threshold:.3f} "
                      f"({model.card['threshold_rule']}).", "",
                      *markdown_table(["set", "k", "questions", "EM always", "coverage %", "EM answered", "area (span score)",
                               "ECE"], lines), "", bins("squad-heldout"), "", bins("nq-style-heldout")])
    publish(out, results, text, "calibration" if a.page else None, page="qa")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("collect", "fit"))
    p.add_argument("--out", default="benchmarks/out/calibration")
    p.add_argument("--per-set", type=int, default=900)
    p.add_argument("--squad-lam", type=float, default=20.0, help="hybrid λ over the mini-Wikipedia (SQuAD)")
    p.add_argument("--precision", type=float, default=0.7)
    p.add_argument("--l2", type=float, default=1.0)
    p.add_argument("--install", action="store_true")
    p.add_argument("--with-seen", action="store_true", help="also fit on questions the reader was trained on")
    p.add_argument("--by-article", action="store_true", help="split SQuAD's held-out questions by article, not by question")
    p.add_argument("--page", action="store_true")
    a = p.parse_args()
    collect(a) if a.step == "collect" else fit(a)


if __name__ == "__main__":
    main()
