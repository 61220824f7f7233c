"""Which fusion helps in every domain: one λ for all question sets, or the fusion chosen per set on its dev split.

    python -m benchmarks.ablations.fusion_ablation [--corpus benchmarks/out/retrieval] [--multi benchmarks/out/multi]
        [--out benchmarks/out/fusion]

Reads the splits and the final self-mined model of ``recipes.multi_recipe`` (``--multi``) and the BM25 index of
``benchmarks.retrieval`` (``--corpus``). For every set, both retrievers' candidates (1,000 deep) are fetched
once for its dev and test questions; then each fusion is scored on dev: linear BM25 + λ·dense on raw scores, on
z-scored and on min-max-normalised lists (a λ grid each), and reciprocal rank fusion (a k grid). The setting best on
dev (top-20, then top-100) is scored on test beside BM25, dense, and the one raw λ the recipe tuned on all dev sets
together, and a small learned fusion (:mod:`benchmarks.ablations.learned_fusion`) fitted on every set's dev questions and
on the set's own. Writes ``fusion.json`` and ``fusion.md`` under ``--out`` (``--page``: also section ``fusion`` of
``docs/results/history.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from recipes.multi_recipe import SETS

import densepr
from benchmarks.ablations.learned_fusion import LearnedFusion, pool_features
from densepr.evaluate.answers import has_answer
from densepr.fileio import write_json
from densepr.retrieve.hybrid import HybridRetriever
from densepr.retrieve.results import build_results

KS = (5, 20, 100)
NORMALISED = (0.3, 0.5, 0.7, 1, 1.5, 2, 3)
GRIDS = {"raw": (3, 10, 20, 30, 50, 100, 200), "zscore": NORMALISED, "minmax": NORMALISED}
RRF_KS = (10, 30, 60, 100)
RECIPE_KEYS = ("model", "rounds", "max_steps", "batch_size", "lr", "sampling", "batching")


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


def labelled_pool(question, c, store, match: str) -> tuple[np.ndarray, np.ndarray]:
    """One dev question's pooled features and which pooled passages hold an answer."""
    rows, features = pool_features(c)
    return features, np.array([has_answer(question.answers, store[int(r)].text, match) for r in rows], dtype=bool)


def bm25_only_share(questions, candidates, store, match: str) -> float:
    """Percent of questions with an answer in BM25's top 20 and none in dense's: what fusion can add at top 20
    from BM25's own list without reordering dense's."""
    def found(q, ranked) -> bool:
        return any(has_answer(q.answers, store[int(r)].text, match) for r in ranked.rows[:20])

    only = sum(found(q, c.bm25) and not found(q, c.dense) for q, c in zip(questions, candidates))
    return round(100 * only / max(1, len(questions)), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/out/retrieval")
    parser.add_argument("--multi", default="benchmarks/out/multi", help="output folder of recipes.multi_recipe")
    parser.add_argument("--out", default="benchmarks/out/fusion")
    parser.add_argument("--page", action="store_true", help="also write the report into docs/results/history.md")
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
    split, cand, pools = {}, {}, {}
    for name in match:
        files = {part: next((multi / name).glob(f"{part}.*"), None) for part in ("dev", "test")}
        files["test"] = files["test"] or multi / "squad-heldout.json"  # SQuAD's test: its held-out articles
        split[name] = {part: densepr.read_questions(path) for part, path in files.items()}
        cand[name] = {part: hybrid.candidates([q.text for q in qs], 1000) for part, qs in split[name].items()}
        pools[name] = [labelled_pool(q, c, store, match[name]) for q, c in zip(split[name]["dev"], cand[name]["dev"])]
    learned_all = LearnedFusion.fit([p for name in match for p in pools[name]])
    report["learned_weights_all_dev"] = learned_all.described()
    for name in match:
        dev, test = split[name]["dev"], split[name]["test"]
        on_dev = {s[0]: accuracy(dev, fused(hybrid, cand[name]["dev"], s), store, ids, match[name]) for s in settings()}

        def by_dev(s: tuple[str, str | None, float]) -> tuple[float, float]:
            return on_dev[s[0]]["20"], on_dev[s[0]]["100"]

        best = max(settings(), key=by_dev)
        best_by = {how: max((s for s in settings() if (s[1] or "raw") == how), key=by_dev)
                   for how in ("raw", "zscore", "minmax", "rrf")}
        tc = cand[name]["test"]
        rows = {"bm25": accuracy(test, [c.bm25.hits(100) for c in tc], store, ids, match[name]),
                "dense": accuracy(test, [c.dense.hits(100) for c in tc], store, ids, match[name]),
                f"hybrid, recipe λ={global_lam[2]:g}": accuracy(test, fused(hybrid, tc, global_lam), store, ids,
                                                                match[name])}
        for how, s in best_by.items():
            rows[f"best {how} on dev: {s[0]}"] = accuracy(test, fused(hybrid, tc, s), store, ids, match[name])
        learned_set = LearnedFusion.fit(pools[name])
        for label, model in (("learned on every set's dev", learned_all), ("learned on this set's dev", learned_set)):
            rows[label] = accuracy(test, [model.fuse(c, max(KS)) for c in tc], store, ids, match[name])
        chosen = accuracy(test, fused(hybrid, tc, best), store, ids, match[name])
        better = max(rows["bm25"]["20"], rows["dense"]["20"])
        report["sets"][name] = {"dev_questions": len(dev), "test_questions": len(test), "chosen": best[0],
                                "test": rows, "chosen_test": chosen,
                                "gain_top20_over_better_part": round(chosen["20"] - better, 1),
                                "bm25_top20_only": bm25_only_share(test, tc, store, match[name])}
        print(name, best[0], chosen, "gain", round(chosen["20"] - better, 1), flush=True)
    write_json(out / "fusion.json", report)
    from benchmarks.ablations._report import cpu

    machine = cpu()
    lines = [f"# Fusion per question set, {time.strftime('%Y-%m-%d', time.gmtime())}", "",
             f"CPU: {machine['model']}, flags {' '.join(machine['flags'])}. Command: `python -m benchmarks.ablations.fusion_ablation "
             f"{' '.join(sys.argv[1:])}`.", "",
             f"Candidates 1,000 deep from BM25 and the final model of `{multi}` (`recipes.multi_recipe`, "
             + ", ".join(f"{k} {v if v is not None else 'default'}" for k, v in recipe["config"].items() if k in RECIPE_KEYS)
             + "); the fusion is chosen on each set's dev split (top-20, then top-100) and scored on its test split.", ""]
    for name, r in report["sets"].items():
        lines += [f"## {name} ({r['dev_questions']} dev, {r['test_questions']} test questions): chose {r['chosen']}, "
                  f"top-20 gain over the better part {r['gain_top20_over_better_part']:+.1f}", "",
                  f"Test questions answered in BM25's top 20 but not in dense's top 20: {r['bm25_top20_only']:.1f}%.", "",
                  "| retriever | top-5 | top-20 | top-100 |", "|---|---|---|---|"]
        lines += [f"| {k} | " + " | ".join(f"{v[str(x)]:.1f}" for x in KS) + " |" for k, v in r["test"].items()]
        lines.append("")
    lines += ["Learned fusion weights (every set's dev; per standard deviation of each feature): "
              + ", ".join(f"{k} {v:+.3f}" for k, v in report["learned_weights_all_dev"].items()) + ".", ""]
    (out / "fusion.md").write_text("\n".join(lines) + "\n")
    if args.page:
        from benchmarks.harness import RESULTS, write_section

        write_section(RESULTS / "history.md", "fusion", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
