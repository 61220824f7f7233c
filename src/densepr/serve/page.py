"""The search page served at ``/``: one self-contained HTML document (no external assets)."""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>densepr</title>
<style>
  :root { --fg:#1d2330; --muted:#667085; --line:#e3e6ec; --accent:#2f5bea; --bg:#f6f7f9; }
  * { box-sizing: border-box; }
  body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
  header { padding:18px 24px 12px; background:#fff; border-bottom:1px solid var(--line); }
  h1 { margin:0 0 10px; font-size:20px; }
  h1 small { font-weight:400; color:var(--muted); font-size:13px; margin-left:8px; }
  form { display:flex; gap:8px; flex-wrap:wrap; }
  #q { flex:1 1 420px; padding:9px 12px; font-size:16px; border:1px solid #c9ced8; border-radius:6px; }
  select, button { padding:8px 12px; font-size:15px; border-radius:6px; border:1px solid #c9ced8; background:#fff; }
  button { background:var(--accent); color:#fff; border-color:var(--accent); cursor:pointer; }
  main { display:grid; grid-template-columns:repeat(3, minmax(0, 1fr)); gap:16px; padding:16px 24px; }
  @media (max-width: 900px) { main { grid-template-columns:1fr; } }
  .col { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 14px; min-height:120px; }
  .col h2 { margin:0 0 2px; font-size:16px; }
  .status { color:var(--muted); font-size:13px; margin-bottom:8px; min-height:1.2em; }
  .status.error { color:#b42318; }
  ol { list-style:none; margin:0; padding:0; }
  li { border-top:1px solid var(--line); padding:8px 0; }
  .meta { display:flex; justify-content:space-between; gap:8px; align-items:baseline; }
  .title { font-weight:600; }
  .rank { color:var(--muted); font-weight:400; margin-right:4px; }
  .score { font:12px ui-monospace, SFMono-Regular, Menlo, monospace; color:var(--muted); white-space:nowrap; }
  .ranks { font-size:12px; color:var(--muted); }
  .text { margin:4px 0 0; font-size:14px; }
  mark { background:#ffe58a; padding:0 1px; border-radius:2px; }
  #answer { margin:16px 24px 0; background:#fff; border:1px solid var(--line); border-left:4px solid var(--accent);
            border-radius:8px; padding:12px 16px; }
  #answer .span { font-size:22px; font-weight:700; }
  #answer .from { color:var(--muted); font-size:13px; margin:2px 0 6px; }
  #answer .text { font-size:14px; }
  #answer b.hit { background:#c9f2d0; padding:0 2px; border-radius:2px; }
</style>
</head>
<body>
<header>
  <h1>densepr search <small id="info">loading…</small></h1>
  <form id="search-form" autocomplete="off">
    <input id="q" name="q" type="search" placeholder="Ask a question, e.g. where was einstein born" maxlength="1000" autofocus>
    <label>k <select id="k"><option>5</option><option selected>10</option><option>20</option><option>50</option><option>100</option></select></label>
    <button id="go" type="submit">Search</button>
  </form>
</header>
<section id="answer" hidden><div class="span"></div><div class="from"></div><p class="text"></p></section>
<main>
  <section class="col" id="col-bm25" data-retriever="bm25"><h2>BM25</h2><div class="status"></div><ol></ol></section>
  <section class="col" id="col-dense" data-retriever="dense"><h2>Dense</h2><div class="status"></div><ol></ol></section>
  <section class="col" id="col-hybrid" data-retriever="hybrid"><h2>Hybrid</h2><div class="status"></div><ol></ol></section>
</main>
<script>
"use strict";
const STOP = new Set("a an and are as at be by did do does for from had has have how in is it of on or the to was were what when where which who whom why with".split(" "));
let loaded = null, reader = null;

function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function terms(q) {
  const words = q.toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
  return [...new Set(words.filter(w => w.length > 1 && !STOP.has(w)))];
}
function highlight(text, ts) {  // escape every piece; wrap words matching a query term (or its longer forms)
  return String(text).split(/([\p{L}\p{N}]+)/u).map((part, i) => {
    const w = part.toLowerCase();
    const hit = i % 2 === 1 && ts.some(t => w === t || (t.length >= 4 && w.startsWith(t)));
    return hit ? "<mark>" + esc(part) + "</mark>" : esc(part);
  }).join("");
}
function setStatus(col, text, state, error) {
  const status = col.querySelector(".status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(error));
  col.dataset.state = state;
}
function render(col, data, ts) {
  const passages = data.results[0].passages;
  col.querySelector("ol").innerHTML = passages.map(p => {
    const ranks = p.ranks ? '<div class="ranks">' + Object.entries(p.ranks).map(([r, n]) => esc(r) + " #" + n).join(" · ") + "</div>" : "";
    return '<li><div class="meta"><span class="title"><span class="rank">' + p.rank + ".</span>" + highlight(p.title, ts) +
      '</span><span class="score">' + Number(p.score).toFixed(4) + "</span></div>" + ranks +
      '<p class="text">' + highlight(p.text, ts) + "</p></li>";
  }).join("");
  setStatus(col, passages.length + " passages in " + Math.round(data.took_ms) + " ms", "done");
}
async function searchColumn(col, question, k, ts) {
  const retriever = col.dataset.retriever;
  col.querySelector("ol").innerHTML = "";
  if (loaded && !loaded.includes(retriever)) {
    setStatus(col, retriever === "hybrid" ? "needs both indexes (--index and --bm25-index)" : "not loaded on this server", "unavailable");
    return;
  }
  setStatus(col, "searching…", "busy");
  try {
    const response = await fetch("search", {method: "POST", headers: {"Content-Type": "application/json"},
                                            body: JSON.stringify({question, k, retriever})});
    const data = await response.json();
    if (!response.ok) {
      const detail = Array.isArray(data.detail) ? data.detail.map(d => d.msg).join("; ") : data.detail;
      setStatus(col, "error " + response.status + ": " + detail, "error", true);
      return;
    }
    render(col, data, ts);
  } catch (err) {
    setStatus(col, "request failed: " + err, "error", true);
  }
}
async function answer(question) {  // the reader's span above the columns, marked in its passage
  const box = document.getElementById("answer");
  if (!reader) { box.hidden = true; return; }
  box.hidden = false;
  box.querySelector(".span").textContent = "reading…";
  box.querySelector(".from").textContent = "";
  box.querySelector(".text").textContent = "";
  try {
    const response = await fetch("ask", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify({question, k: 5})});
    const data = await response.json();
    const a = response.ok && data.answers && data.answers[0];
    if (!a || !a.answer) { box.querySelector(".span").textContent = "no answer found"; return; }
    const p = data.results[0].passages[a.passage_rank - 1];
    const s = a.answer_start, text = p.text;
    const sure = a.confidence === null || a.confidence === undefined ? "" : ", confidence " + a.confidence.toFixed(2);
    box.querySelector(".span").textContent = a.abstained ? "No confident answer (best guess: " + a.answer + ")" : a.answer;
    box.querySelector(".from").textContent = "from " + p.title + " (passage " + p.id + ", rank " + a.passage_rank + sure + ")";
    box.querySelector(".text").innerHTML = s >= 0 ? esc(text.slice(0, s)) + '<b class="hit">' + esc(text.slice(s, s + a.answer.length)) +
      "</b>" + esc(text.slice(s + a.answer.length)) : esc(text);
  } catch (err) {
    box.querySelector(".span").textContent = "request failed: " + err;
  }
}
async function search(event) {
  if (event) event.preventDefault();
  const question = document.getElementById("q").value.trim();
  if (!question) return;
  const k = parseInt(document.getElementById("k").value, 10) || 10;
  history.replaceState(null, "", "?q=" + encodeURIComponent(question) + "&k=" + k);
  const ts = terms(question);
  await Promise.all([answer(question), ...[...document.querySelectorAll(".col")].map(col => searchColumn(col, question, k, ts))]);
}
async function init() {
  try {
    const health = await (await fetch("health")).json();
    loaded = health.retrievers;
    reader = health.reader;
    document.getElementById("info").textContent = health.passages.toLocaleString("en") + " passages · " + loaded.join(", ");
  } catch (err) {
    document.getElementById("info").textContent = "server not reachable";
  }
  const params = new URLSearchParams(location.search);
  if (params.get("k")) document.getElementById("k").value = params.get("k");
  if (params.get("q")) { document.getElementById("q").value = params.get("q"); search(); }
}
document.getElementById("search-form").addEventListener("submit", search);
init();
</script>
</body>
</html>
"""
