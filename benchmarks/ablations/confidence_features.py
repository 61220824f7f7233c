"""Which features of a question's retrieval would add to the reader's confidence (version 3's 11 reading features).

    python -m recipes.calibration collect                      # the readings (about 20 min)
    python -m benchmarks.ablations.confidence_features [--precision 0.56] [--page]

On the readings ``recipes.calibration collect`` stores, it searches each question again with the same hybrid
(the top 20 and both halves' candidate lists; the top 5 must be the passages read) and adds, for the chosen answer:

- ``dense_score``: the chosen passage's dense score (the question and passage vectors' dot product);
- ``log_bm25_rank`` / ``log_dense_rank``: the chosen passage's rank in each half's list (2,001 when not in the top 2,000);
- ``top_dense_score``: the best dense score of any passage (how close the corpus comes to the question);
- ``answer_redundancy``: log(1 + how many of the hybrid top 20 contain the answer string, DPR's matching).

Each variant is fitted as ``recipes.calibration fit`` fits version 3 (same questions, k = 1 and 5 pooled, the threshold
for ``--precision`` EM among the answered fit questions) and reports, per held-out set and k: the area under the
EM-coverage curve and its gain over ranking by span score, coverage and EM among the answered at the threshold, and the
expected calibration error (10 bins). Then how far ranking alone could go: the area if version 3 knew perfectly
whether one of the passages read holds an answer string (what a reader trained to say "no passage holds it" could
learn), and if every right answer came first; and EM among the 60% most confident held-out SQuAD answers each way.
"""

from __future__ import annotations

import logging
import math
from datetime import date
from pathlib import Path

import numpy as np
from recipes.calibration import KS, load_rows, mini_wiki, splits, stored_readings
from recipes.calibration import table as reading_table

from benchmarks.ablations._report import ablation_parser, publish
from benchmarks.harness import cpu_line, table

EXTRA = ("dense_score", "log_bm25_rank", "log_dense_rank", "top_dense_score", "answer_redundancy")
VARIANTS = {"version 3": (), **{f"+ {name}": (name,) for name in EXTRA},
            "+ the four retrieval features": EXTRA[:4], "+ all five": EXTRA}
SETS = ("squad-heldout", "nq-heldout", "efficientqa-heldout", "nq-style-heldout")


def retrieval_features(rows: list[dict], searcher) -> dict[str, list[float]]:
    """Question text -> the first four :data:`EXTRA` values of each of its top 5 passages (the reader may choose any)
    and the top 20's texts."""
    found = searcher.retriever.search_candidates([r["question"] for r in rows], 20)
    out = {}
    for row, (hits, candidates) in zip(rows, found):
        if [searcher.ids[h.row] for h in hits[:5]] != row["ids"][:5]:
            raise SystemExit(f"{row['question']!r}: the top 5 differ from the passages read; collect the readings again")
        ranks = candidates.ranks([h.row for h in hits[:5]])  # from 1, in each list holding the passage
        texts = [searcher.store[h.row].text for h in hits]
        per_passage = []
        for h in hits[:5]:
            bm25, dense = ranks.get(h.row, {}).get("bm25", 2001), ranks.get(h.row, {}).get("dense")
            per_passage.append([float(candidates.dense.scores[dense - 1 if dense else -1]), math.log(bm25),
                                math.log(dense or 2001), float(candidates.dense.scores[0])])
        out[row["question"]] = {"passages": per_passage, "texts": texts}
    return out


def extra_table(rows: list[dict], extras: dict, k: int) -> np.ndarray:
    """The :data:`EXTRA` features of each question's answer from its top ``k`` passages (rows as ``reading_table``)."""
    from densepr.evaluate.answers import has_answer
    from densepr.read.inference import choose

    x = []
    for row in rows:
        read = stored_readings(row, k)
        if not read:
            x.append(np.zeros(len(EXTRA)))
            continue
        best, found = choose(read), extras[row["question"]]
        redundancy = sum(has_answer([best.answer], t) for t in found["texts"]) if best.answer.strip() else 0
        x.append(found["passages"][best.index] + [math.log1p(redundancy)])
    return np.array(x, dtype=np.float64)


def answer_in_read(rows: list[dict], extras: dict, k: int) -> np.ndarray:
    """1 where an answer string is in one of the ``k`` passages read (DPR's matching): what a perfect detector of "no
    passage read holds the answer" would know, and a reader trained to say so could learn."""
    from densepr.evaluate.answers import has_answer

    return np.array([any(has_answer(r["answers"], text, r["match"]) for text in extras[r["question"]]["texts"][:k])
                     for r in rows], dtype=np.float64)


def top_share_em(scores: np.ndarray, correct: np.ndarray, share: float) -> float:
    """EM (percent) among the ``share`` of questions with the highest scores."""
    n = max(1, round(share * len(correct)))
    return float(100 * correct[np.argsort(-scores, kind="stable")[:n]].mean())


def cell(found: dict, ece: bool = False) -> str:
    """A report cell: area (gain over the span score), with the calibration error if ``ece``."""
    return f"{found['area']:.1f} ({found['gain']:+.1f})" + (f", {found['ece']:.3f}" if ece else "")


def main() -> None:
    p = ablation_parser(__doc__, "confidence-features")
    p.add_argument("--readings", default="benchmarks/out/calibration", help="recipes.calibration collect's --out")
    p.add_argument("--squad-lam", type=float, default=20.0, help="as collect's --squad-lam")
    p.add_argument("--precision", type=float, default=0.56)
    a = p.parse_args()
    logging.disable(logging.WARNING)
    from densepr.quickstart import ensure_default_index
    from densepr.read.confidence import ConfidenceModel, coverage_curve_area, selective
    from densepr.retrieve.searcher import open_searcher

    readings = Path(a.readings)
    sets = load_rows(readings)
    if "squad-heldout" not in sets:
        raise SystemExit(f"no readings in {readings}: run python -m recipes.calibration collect first")
    searchers = {"vital": open_searcher(ensure_default_index(progress=False)), "mini": open_searcher(mini_wiki(readings, a.squad_lam))}
    extras: dict = {}
    for name, rows in sets.items():
        extras.update(retrieval_features(rows, searchers["mini" if name.startswith("squad") else "vital"]))
    fit_rows, held = splits(sets, readings, with_seen=False)
    tables = {(name, k): (*reading_table(rows, k), extra_table(rows, extras, k))
              for name, rows in [("fit", fit_rows), *((n, held[n]) for n in SETS)] for k in KS}

    def columns(name: str, k: int, extra: tuple[str, ...]) -> np.ndarray:
        base, _, _, more = tables[(name, k)]
        return np.hstack([base, more[:, [EXTRA.index(e) for e in extra]]])

    results: dict = {"date": str(date.today()), "cpu": cpu_line(), "precision": a.precision, "variants": {}}
    lines = []
    for variant, extra in VARIANTS.items():
        x = np.vstack([columns("fit", k, extra) for k in KS])
        y = np.concatenate([tables[("fit", k)][1] for k in KS])
        model = ConfidenceModel.fit(x, y)
        confidence = model.probability(x)
        threshold = min((t for t in np.linspace(0.05, 0.95, 181)
                         if (confidence >= t).any() and y[confidence >= t].mean() >= a.precision), default=0.5)
        found = results["variants"][variant] = {"threshold": round(float(threshold), 3)}
        if not extra:
            version3 = model  # the shipped features: the ceiling below starts from it
        for name in SETS:
            for k in KS:
                _, correct, span, _ = tables[(name, k)]
                sel = selective(model.probability(columns(name, k, extra)), correct, threshold)
                sel["gain"] = sel["area"] - coverage_curve_area(span, correct)
                found[f"{name} k={k}"] = sel
        style = found["nq-style-heldout k=5"]
        lines.append([variant, f"{threshold:.3f}", cell(found["squad-heldout k=1"]),
                      *(cell(found[f"{name} k=5"], ece=True) for name in SETS),
                      f"{style['coverage']:.1f}% at {style['em_answered']:.1f}"])
    ceiling, ceiling_lines = {}, []
    for name in (SETS[0], SETS[3]):
        for k in KS:
            _, correct, span, _ = tables[(name, k)]
            confidence = version3.probability(columns(name, k, ()))
            detected = confidence + 10 * answer_in_read(held[name], extras, k)  # answers whose passages hold one first
            found = ceiling[f"{name} k={k}"] = {
                "span score": coverage_curve_area(span, correct), "version 3": coverage_curve_area(confidence, correct),
                "version 3 + perfect detector": coverage_curve_area(detected, correct),
                "every right answer first": coverage_curve_area(correct, correct),
                "em_top60": {"version 3": top_share_em(confidence, correct, 0.6),
                             "version 3 + perfect detector": top_share_em(detected, correct, 0.6)}}
            ceiling_lines.append([name, k, *(f"{v:.1f}" for key, v in found.items() if key != "em_top60")])
    results["ceiling"] = ceiling
    squad_top = ceiling["squad-heldout k=5"]["em_top60"]
    best_name = max(results["variants"], key=lambda v: results["variants"][v]["nq-style-heldout k=5"]["gain"])
    best, v3 = results["variants"][best_name], results["variants"]["version 3"]
    text = "\n".join([f"## Retrieval features for the confidence, {results['date']}", "",
                      (f"{results['cpu']}. Command: `python -m benchmarks.ablations.confidence_features --precision "
                       f"{a.precision}` on the readings of `recipes.calibration collect`; fitted on {len(fit_rows):,} "
                       "questions as version 3 is. Area: under the EM-coverage curve (gain over ranking by span score)."),
                      "", "Cells: area (gain), and the calibration error at k = 5; all figures per k are in the JSON.", "",
                      *table(["variant", "threshold", "SQuAD k=1", "SQuAD k=5", "NQ-open k=5", "EfficientQA k=5",
                              "NQ-style k=5", "NQ-style answered"], lines), "",
                      (f"The best NQ-style gain at k = 5 is {best['nq-style-heldout k=5']['gain']:+.1f} ({best_name}; "
                       f"SQuAD k = 1 {best['squad-heldout k=1']['gain']:+.1f}), against version 3's "
                       f"{v3['nq-style-heldout k=5']['gain']:+.1f} (SQuAD k = 1 {v3['squad-heldout k=1']['gain']:+.1f})."),
                      "", ("How far ranking alone could go: areas if version 3 knew perfectly whether a passage read holds "
                           "an answer string (those answers ranked first), and if every right answer came first."), "",
                      *table(["held-out set", "k", "span score", "version 3", "version 3 + perfect detector",
                              "every right answer first"], ceiling_lines), "",
                      (f"EM among the 60% most confident held-out SQuAD answers at k = 5: {squad_top['version 3']:.1f} "
                       f"by version 3, {squad_top['version 3 + perfect detector']:.1f} with the perfect detector.")])
    publish(Path(a.out), results, text, "confidence-features" if a.page else None)


if __name__ == "__main__":
    main()
