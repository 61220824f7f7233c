"""Which fusion helps in every domain: one λ for all question sets, or the fusion chosen per set on its dev split.

    python -m benchmarks.fusion_ablation [--corpus benchmarks/out/retrieval] [--multi benchmarks/out/multi]
        [--out benchmarks/out/fusion]

Reads the splits and the final self-mined model of ``benchmarks.multi_recipe`` (``--multi``) and the BM25 index of
``benchmarks.retrieval_mini_wiki`` (``--corpus``). For every set, both retrievers' candidates (1,000 deep) are fetched
once for its dev and test questions; then each fusion is scored on dev: linear BM25 + λ·dense on raw scores, on
z-scored and on min-max-normalised lists (a λ grid each), and reciprocal rank fusion (a k grid). The setting best on
dev (top-20, then top-100) is scored on test beside BM25, dense, and the one raw λ the recipe tuned on all dev sets
together. Writes ``fusion.json`` and ``fusion.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import densepr
from densepr.fileio import write_json
from densepr.retrieve.hybrid import HybridRetriever
from densepr.retrieve.results import build_results

from benchmarks.multi_recipe import SETS

KS = (5, 20, 100)
NORMALISED = (0.3, 0.5, 0.7, 1, 1.5, 2, 3)
GRIDS = {"raw": (3, 10, 20, 30, 50, 100, 200), "zscore": NORMALISED, "minmax": NORMALISED}
RRF_KS = (10, 30, 60, 100)


def settings() -> list[tuple[str, str | None, float]]:
    """Every fusion tried: (name, normalisation or "rrf", λ or rrf k)."""
    out = [(f"linear {name} λ={lam:g}", None if name == "raw" else name, float(lam)) for name, grid in GRIDS.items()
           for lam in grid]
    return out + [(f"rrf k={k}", "rrf", float(k)) for k in RRF_KS]


def fused(hybrid: HybridRetriever, candidates, setting: tuple[str, str | None, float], k: int = max(KS)) -> list:
    """Each question's top ``k`` under ``setting``, fused as a hybrid retriever with that setting fuses."""
    _, how, value = setting
    rrf = how == "rrf"
    one = HybridRetriever(hybrid.bm25, hybrid.dense, hybrid.depth, lam=value, normalize=None if rrf else how,
                          fusion="rrf" if rrf else "linear", rrf_k=int(value) if rrf else hybrid.rrf_k)
    return [one.fuse(c, k) for c in candidates]


def accuracy(questions, hits, store, ids, match) -> dict[str, float]:
    scored = densepr.top_k_accuracy(build_results(questions, hits, store, ids, match), KS)
    return {str(k): round(scored[str(k)], 1) for k in KS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/out/retrieval")
    parser.add_argument("--multi", default="benchmarks/out/multi", help="output folder of benchmarks.multi_recipe")
    parser.add_argument("--out", default="benchmarks/out/fusion")
    args = parser.parse_args()
    corpus, multi, out = Path(args.corpus), Path(args.multi), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = json.loads((multi / "results.json").read_text())
    rounds = recipe["config"]["rounds"]
    bm25 = densepr.open_searcher(index=str(corpus / "bm25"))
    dense = densepr.open_searcher(index=str(multi / "run" / f"round-{rounds}" / "index"))
    hybrid = HybridRetriever(bm25.retriever, dense.retriever, depth=1000)
    store, ids = dense.store, hybrid.ids
    match = {"squad": "string", **{n: m for n, (_, m, _) in SETS.items()}}
    global_lam = ("recipe λ", None, float(recipe["lam"]))
    report: dict = {"recipe_lam": recipe["lam"], "sets": {}}
    for name in match:
        files = {part: next((multi / name).glob(f"{part}.*"), None) for part in ("dev", "test")}
        files["test"] = files["test"] or multi / "squad-heldout.json"  # SQuAD's test: its held-out articles
        split = {part: densepr.read_questions(path) for part, path in files.items()}
        cand = {part: hybrid.candidates([q.text for q in qs], 1000) for part, qs in split.items()}
        on_dev = {s[0]: accuracy(split["dev"], fused(hybrid, cand["dev"], s), store, ids, match[name]) for s in settings()}
        def by_dev(s: tuple[str, str | None, float]) -> tuple[float, float]:
            return on_dev[s[0]]["20"], on_dev[s[0]]["100"]

        best = max(settings(), key=by_dev)
        best_by = {how: max((s for s in settings() if (s[1] or "raw") == how), key=by_dev)
                   for how in ("raw", "zscore", "minmax", "rrf")}
        test = split["test"]
        rows = {"bm25": accuracy(test, [c.bm25.hits(100) for c in cand["test"]], store, ids, match[name]),
                "dense": accuracy(test, [c.dense.hits(100) for c in cand["test"]], store, ids, match[name]),
                f"hybrid, recipe λ={global_lam[2]:g}": accuracy(test, fused(hybrid, cand["test"], global_lam), store, ids,
                                                                match[name])}
        for how, s in best_by.items():
            rows[f"best {how} on dev: {s[0]}"] = accuracy(test, fused(hybrid, cand["test"], s), store, ids, match[name])
        chosen = accuracy(test, fused(hybrid, cand["test"], best), store, ids, match[name])
        better = max(rows["bm25"]["20"], rows["dense"]["20"])
        report["sets"][name] = {"dev_questions": len(split["dev"]), "test_questions": len(test), "chosen": best[0],
                                "test": rows, "chosen_test": chosen,
                                "gain_top20_over_better_part": round(chosen["20"] - better, 1)}
        print(name, best[0], chosen, "gain", round(chosen["20"] - better, 1), flush=True)
    write_json(out / "fusion.json", report)
    lines = ["# Fusion per question set", "",
             f"Candidates 1,000 deep from BM25 and the self-mined model of `{multi}`; the fusion is chosen on each set's "
             "dev split (top-20, then top-100) and scored on its test split.", ""]
    for name, r in report["sets"].items():
        lines += [f"## {name} ({r['dev_questions']} dev, {r['test_questions']} test questions): chose {r['chosen']}, "
                  f"top-20 gain over the better part {r['gain_top20_over_better_part']:+.1f}", "",
                  "| retriever | top-5 | top-20 | top-100 |", "|---|---|---|---|"]
        lines += [f"| {k} | " + " | ".join(f"{v[str(x)]:.1f}" for x in KS) + " |" for k, v in r["test"].items()]
        lines.append("")
    (out / "fusion.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
