"""The search page in a real headless Chromium against a real uvicorn server on 127.0.0.1.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and pip ``selenium``; skips without them.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, httpx) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (fastapi, uvicorn, httpx) is not installed")
pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import DOCS
from densepr.serve import create_app

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "benchmarks" / "out" / "screenshots"


def _chromedriver() -> str:
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not CHROMIUM.is_file() or not Path(driver).is_file():
        pytest.skip("Chromium or its driver is missing: apt-get install -y chromium chromium-driver")
    return driver


@pytest.fixture
def server(tmp_path, tiny_bert):
    """A tiny BM25 + dense index served by uvicorn in a thread on a free loopback port; yields the base URL."""
    from densepr import pipeline

    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    pipeline.make_passages(inputs=[str(tmp_path / "docs.jsonl")], out=tmp_path / "psgs.tsv", words=12)
    pipeline.build_bm25(passages=tmp_path / "psgs.tsv", out=tmp_path / "bm25", progress=False)
    pipeline.encode(passages=tmp_path / "psgs.tsv", out=tmp_path / "emb", model=str(tiny_bert), bf16=False, progress=False)
    pipeline.build_index(embeddings=tmp_path / "emb", out=tmp_path / "flat")
    from densepr.read import Reader

    Reader.from_pretrained(str(tiny_bert), max_answer_len=5).save(tmp_path / "reader")  # random heads: some span
    app = create_app(index=str(tmp_path / "flat"), bm25_index=str(tmp_path / "bm25"), reader=tmp_path / "reader")

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    uv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def browser(tmp_path):
    driver_path = _chromedriver()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except Exception as exc:  # noqa: BLE001 - a broken browser install is an environment problem
        pytest.skip(f"Chromium could not start: {str(exc).splitlines()[0]}")
    yield driver
    driver.quit()


def test_search_page_shows_three_columns(server, browser, tmp_path):
    browser.get(server)
    WebDriverWait(browser, 10).until(lambda b: "passages" in b.find_element(By.ID, "info").text)
    assert "7 passages" in browser.find_element(By.ID, "info").text
    box = browser.find_element(By.ID, "q")
    box.send_keys("where was einstein born")
    browser.find_element(By.ID, "go").click()

    columns = {name: browser.find_element(By.ID, f"col-{name}") for name in ("bm25", "dense", "hybrid")}
    WebDriverWait(browser, 30).until(
        lambda _: all(c.get_attribute("data-state") in ("done", "error") for c in columns.values()))
    for name, column in columns.items():
        assert column.get_attribute("data-state") == "done", (name, column.text)
        titles = [t.text for t in column.find_elements(By.CSS_SELECTOR, "li .title")]
        assert any("Albert Einstein" in t for t in titles), (name, titles)
    bm25_first = columns["bm25"].find_element(By.CSS_SELECTOR, "li")
    assert "Albert Einstein" in bm25_first.find_element(By.CSS_SELECTOR, ".title").text
    marks = {m.text.lower() for m in columns["bm25"].find_elements(By.TAG_NAME, "mark")}
    assert {"einstein", "born"} <= marks and "where" not in marks  # stop words are not highlighted
    assert "dense #" in columns["hybrid"].text and "bm25 #" in columns["hybrid"].text
    assert "?q=where%20was%20einstein%20born" in browser.current_url

    answer = browser.find_element(By.ID, "answer")  # the reader's answer above the columns, marked in its passage
    WebDriverWait(browser, 30).until(lambda _: answer.find_element(By.CSS_SELECTOR, ".span").text not in ("", "reading…"))
    span = answer.find_element(By.CSS_SELECTOR, ".span").text
    assert answer.is_displayed() and span and "failed" not in span
    assert answer.find_element(By.CSS_SELECTOR, "b.hit").text == span
    assert answer.find_element(By.CSS_SELECTOR, ".from").text.startswith("from ")

    shot = tmp_path / "search.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOTS / "search.png")
