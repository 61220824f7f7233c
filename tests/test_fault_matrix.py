"""The fault matrix: ``encode``, ``index``, ``bm25`` and ``train`` are killed (SIGKILL) at every write step, in
turn, through the ``DENSEPR_KILL_AT`` seam. After each kill, what a later command makes of the leftovers must be a
one-line refusal or a right result (the new one, or the one the folder held before), never a wrong result with exit 0;
and running the killed command again must finish with exactly the uninterrupted run's output.

Commands run in a forked child of the test process (no new imports), which exits as the CLI would.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import run_forked
from densepr.fileio import KILL_AT, WRITE_TRACE

KILLED = -9  # a multiprocessing child's exit code after SIGKILL
TMPFS = "DENSEPR_TEST_TMPFS"  # set inside the mount namespace of test_a_full_disk_...
WORDS = "einstein ulm paris france seine london thames river city king war music song album year born capital".split()


def _child(argv: list[str], env: dict[str, str], err: str) -> None:
    os.environ.update(env)
    fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - the child's stderr until it exits
    from densepr.cli.main import main

    code = main(argv)
    sys.stderr.flush()
    os._exit(code)


@dataclass
class Outcome:
    code: int
    err: str

    @property
    def refused(self) -> bool:
        """Exit 2 with ``densepr: error:`` as the last line, and no traceback."""
        lines = self.err.strip().splitlines()
        return self.code == 2 and bool(lines) and lines[-1].startswith("densepr: error: ") and "Traceback" not in self.err


def cli(argv: list[str], **env: str) -> Outcome:
    """Run ``densepr -q ARGV`` in a forked child with ``env`` added."""
    err = Path(tempfile.gettempdir()) / f"densepr-fault-{os.getpid()}.err"
    code = run_forked(_child, ["-q", *argv], env, str(err))
    assert code is not None, f"densepr {' '.join(argv)} hung"
    return Outcome(code, err.read_text(encoding="utf-8", errors="replace"))


def after_fault(what: str, work: Path, argv: list[str], read: Callable[[Path], object], expected: object,
                before: object, fixed: Callable[[], None] = lambda: None) -> str:
    """The rules for a run that ``what`` interrupted: a later command's view of ``work`` (``read``) is a one-line
    refusal or a right result (``expected``, or ``before``: what the folder held); once ``fixed``, a rerun gives
    ``expected``. Returns what the later command saw: ``refused``, ``new`` or ``old``."""
    seen = read(work)
    assert (isinstance(seen, Outcome) and seen.refused) or seen in (expected, before), \
        f"{what}: a later command got {seen!r}"
    fixed()
    again = cli(argv)
    assert again.code == 0, f"rerun after {what}: {again.err}"
    assert read(work) == expected, f"rerun after {what} differs from an uninterrupted run"
    return "refused" if isinstance(seen, Outcome) else "new" if seen == expected else "old"


def report(name: str, fault: str, outcomes: list[tuple[str, str]]) -> None:
    """Append a case's outcomes to the JSON lines file ``DENSEPR_FAULT_REPORT`` names, if any (for the notes)."""
    if os.environ.get("DENSEPR_FAULT_REPORT"):
        with open(os.environ["DENSEPR_FAULT_REPORT"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"command": name, "fault": fault, "outcomes": outcomes}) + "\n")


@dataclass
class Case:
    """A command writing into ``work`` (made afresh by ``prepare``), and what a later command makes of ``work``."""

    argv: Callable[[Path], list[str]]
    read: Callable[[Path], object]
    expected: object  # read() after an uninterrupted run
    before: object = None  # read() of the prepared work, before the command
    prepare: Callable[[Path], None] = lambda work: None
    # the folders it writes (under work), each with a later command that checks their checksums, if any
    artifacts: dict[str, Callable[[Path], list[str]] | None] = field(default_factory=dict)

    def fresh(self, work: Path) -> Path:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        self.prepare(work)
        return work


def kill_matrix(case: Case, work: Path) -> list[tuple[str, str]]:
    """Kill the case's command at write step 1, 2, ... (each time in a fresh ``work``) until a run ends untouched,
    checking each kill by :func:`after_fault`. Returns each step's label and what a later command saw after it."""
    argv, outcomes = case.argv(work), []
    while True:
        case.fresh(work)
        trace = work.parent / f"{work.name}.trace"
        trace.unlink(missing_ok=True)
        run = cli(argv, **{WRITE_TRACE: str(trace), KILL_AT: str(len(outcomes) + 1)})
        if run.code == 0:
            assert case.read(work) == case.expected
            return outcomes
        last = trace.read_text().splitlines()[-1]
        assert run.code == KILLED, f"step {len(outcomes) + 1} ({last}): exit {run.code}\n{run.err}"
        outcomes.append((last, after_fault(f"a kill at step {len(outcomes) + 1} ({last})", work, argv, case.read,
                                           case.expected, case.before)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Two versions of a 40-passage corpus (the old one shorter), questions and a DPR training file."""
    d = tmp_path_factory.mktemp("fault_corpus")
    rng = random.Random(0)
    rows = [(f"p{i}", " ".join(rng.choice(WORDS) for _ in range(12)), f"title {i % 7}") for i in range(40)]
    (d / "psgs.tsv").write_text("id\ttext\ttitle\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    (d / "old.tsv").write_text("id\ttext\ttitle\n" + "".join("\t".join(r) + "\n" for r in rows[:25]), encoding="utf-8")
    questions = [{"question": " ".join(rng.choice(WORDS) for _ in range(4)), "answer": [rng.choice(WORDS)]} for _ in range(6)]
    (d / "q.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    ctx = [{"title": t, "text": x, "passage_id": i} for i, x, t in rows]
    train = [{"question": q["question"], "answers": q["answer"], "positive_ctxs": [ctx[i]], "negative_ctxs": [],
              "hard_negative_ctxs": [ctx[i + 10], ctx[i + 20]]} for i, q in enumerate(questions * 2)]
    (d / "train.json").write_text(json.dumps(train), encoding="utf-8")
    return d


def retrieved(index: Path, corpus: Path, *extra: str) -> object:
    """Top-5 ids and scores for the corpus questions (or the refusal); the results file goes to a scratch folder."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "results.json"
        run = cli(["retrieve", "--index", str(index), "--questions", str(corpus / "q.jsonl"), "--out", str(out),
                   "--top-k", "5", *extra])
        if run.code != 0:
            return run
        return [[(c["id"], round(float(c["score"]), 4)) for c in e["ctxs"]] for e in json.loads(out.read_text())]


def encode_case(corpus: Path, model: Path, root: Path) -> Case:
    from densepr.dense.passage_encoding import load_embeddings

    def argv(work: Path) -> list[str]:
        return ["encode", "--passages", str(corpus / "psgs.tsv"), "--model", str(model), "--out", str(work / "emb"),
                "--chunk-size", "8", "--batch-size", "4", "--backend", "torch", "--precision", "fp32"]

    def read(work: Path) -> object:
        with tempfile.TemporaryDirectory() as scratch:
            index = cli(["index", "--embeddings", str(work / "emb"), "--out", f"{scratch}/flat"])
            if index.code != 0:
                return index
            vectors, ids, _ = load_embeddings(work / "emb")
            return ids, vectors.tobytes(), retrieved(Path(scratch) / "flat", corpus)

    reference = root / "encode-ref"
    reference.mkdir(parents=True)
    assert cli(argv(reference)).code == 0
    return Case(argv, read, read(reference), artifacts={
        "emb": lambda work: ["index", "--embeddings", str(work / "emb"), "--out", str(work / "flat"), "--verify"]})


def index_case(kind: str, corpus: Path, model: Path, root: Path) -> Case:
    """Rebuilding an index folder that holds an index of the old corpus."""
    def build(passages: str, out: Path) -> list[str]:
        if kind == "bm25":
            return ["bm25", "--passages", str(corpus / passages), "--out", str(out)]
        emb = root / f"emb-{passages}"
        if not emb.exists():
            assert cli(["encode", "--passages", str(corpus / passages), "--model", str(model), "--out", str(emb),
                        "--backend", "torch", "--precision", "fp32"]).code == 0
        return ["index", "--embeddings", str(emb), "--out", str(out)]

    extra = ("--retriever", "bm25") if kind == "bm25" else ()
    old, new = root / f"{kind}-old", root / f"{kind}-new"
    assert cli(build("old.tsv", old)).code == 0 and cli(build("psgs.tsv", new)).code == 0
    case = Case(lambda work: build("psgs.tsv", work / "index"), lambda work: retrieved(work / "index", corpus, *extra),
                retrieved(new, corpus, *extra), retrieved(old, corpus, *extra),
                lambda work: shutil.copytree(old, work / "index"),
                {"index": lambda work: ["retrieve", "--index", str(work / "index"), "--questions", str(corpus / "q.jsonl"),
                                        "--out", str(work / "results.json"), "--verify", *extra]})
    assert case.expected != case.before
    return case


def train_case(corpus: Path, model: Path, root: Path) -> Case:
    from safetensors.numpy import load_file

    def argv(work: Path) -> list[str]:
        return ["train", "--train", str(corpus / "train.json"), "--model", str(model), "--out", str(work / "run"),
                "--batch-size", "4", "--epochs", "2", "--max-steps", "4", "--save-every", "2", "--warmup-steps", "1", "--no-bf16",
                "--log-every", "1"]

    def read(work: Path) -> object:
        final = work / "run" / "final"
        if not final.is_dir():
            return None  # nothing published: a later command finds no model
        return {f.relative_to(final).as_posix(): {k: v.tobytes() for k, v in load_file(f).items()}
                for f in sorted(final.rglob("*.safetensors"))}

    reference = root / "train-ref"
    assert cli(argv(reference)).code == 0
    case = Case(argv, read, read(reference), artifacts={"run/final": None, "run/checkpoint-0000004": argv})  # resumes
    assert case.expected and all(len(tensors) > 5 for tensors in case.expected.values())
    return case


def collection_case(action: str, corpus: Path, model: Path, root: Path) -> Case:
    """``collection create`` of a folder, or ``collection sync`` after 3 edits, 2 deletions and 3 new files."""
    rng = random.Random(1)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 60))) for _ in range(30)]

    def write_docs(folder: Path, changed: bool) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for i, body in enumerate(texts[:24]):
            if not (changed and i in (3, 9)):
                (folder / f"doc{i}.{'md' if i % 2 else 'txt'}").write_text(body + (" war" if changed and i < 3 else ""))
        for i in range(24, 27 if changed else 24):
            (folder / f"doc{i}.txt").write_text(texts[i])

    def create(work: Path) -> list[str]:
        return ["collection", "create", str(work / "docs"), "--out", str(work / "kb"), "--model", str(model), "--words", "20"]

    def read(work: Path) -> object:
        with tempfile.TemporaryDirectory() as scratch:
            run = cli(["retrieve", "--collection", str(work / "kb"), "--questions", str(corpus / "q.jsonl"), "--out",
                       f"{scratch}/r.json", "--top-k", "5"])
            if run.code != 0:
                return run
            return [[(c["id"], round(float(c["score"]), 4)) for c in e["ctxs"]] for e in json.loads(Path(f"{scratch}/r.json").read_text())]

    def prepare(work: Path) -> None:
        write_docs(work / "docs", changed=False)
        if action == "sync":
            assert cli(create(work)).code == 0
            write_docs(work / "docs", changed=True)

    argv = create if action == "create" else lambda work: ["collection", "sync", str(work / "kb")]
    old, new = root / f"{action}-old", root / f"{action}-new"
    for folder, changed in ((old, False), (new, True)):
        write_docs(folder / "docs", changed)
        assert cli(create(folder)).code == 0
    segment = f"kb/segments/s00000{2 if action == 'sync' else 1}"
    verified = {segment: lambda work: ["retrieve", "--collection", str(work / "kb"), "--questions", str(corpus / "q.jsonl"),
                                       "--out", str(work / "results.json"), "--verify"]}
    case = Case(argv, read, read(new if action == "sync" else old), read(old) if action == "sync" else None, prepare,
                verified)
    assert action == "create" or case.expected != case.before
    return case


CASES = {"collection-create": lambda *a: collection_case("create", *a),
         "collection-sync": lambda *a: collection_case("sync", *a), "encode": encode_case, "flat": lambda *a: index_case("flat", *a), "bm25": lambda *a: index_case("bm25", *a),
         "train": train_case}
MIN_STEPS = {"collection-create": 8, "collection-sync": 8, "encode": 10, "flat": 3, "bm25": 3, "train": 4}  # e.g. encode: 5 chunks of vectors and ids, the shard...


@pytest.mark.parametrize("name", list(CASES))
def test_a_kill_at_any_write_step_is_refused_or_recovered(name, corpus, tiny_bert, tmp_path):
    outcomes = kill_matrix(CASES[name](corpus, tiny_bert, tmp_path), tmp_path / "w")
    report(name, "kill", outcomes)
    assert len(outcomes) >= MIN_STEPS[name]


def test_a_full_disk_is_refused_in_one_line_and_loses_nothing(tmp_path):
    """Runs :func:`test_full_disk_sweep` in a mount namespace of its own, over a 32 MB tmpfs."""
    disk = tmp_path / "tmpfs"
    disk.mkdir()
    mount = f"mount -t tmpfs -o size=32m tmpfs {disk}"
    try:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True, timeout=30)
    except FileNotFoundError:
        probe = None
    if probe is None or probe.returncode:
        pytest.skip("no tmpfs can be mounted here (unshare -rm); tests/test_faults.py fills a disk with a patched writer")
    run = subprocess.run(["unshare", "-rm", "sh", "-c", f"{mount} && exec {sys.executable} -m pytest -q -p no:cacheprovider "
                          f"{__file__}::test_full_disk_sweep"], env=dict(os.environ, **{TMPFS: str(disk)}),
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0 and f"{len(CASES)} passed" in run.stdout, run.stdout[-4000:] + run.stderr[-2000:]


def fill(disk: Path, leave: int) -> Path:
    """A file taking all of ``disk``'s free space but ``leave`` bytes."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    stat = os.statvfs(disk)
    with open(filler, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, max(stat.f_bavail * stat.f_frsize - leave, 1))
    return filler


@pytest.mark.skipif(TMPFS not in os.environ, reason="runs inside test_a_full_disk_is_refused_in_one_line_and_loses_nothing")
@pytest.mark.parametrize("name", list(CASES))
def test_full_disk_sweep(name, corpus, tiny_bert, tmp_path):
    """With less and less free space, each command ends in one line (and recovers once space is freed) or succeeds."""
    case, work = CASES[name](corpus, tiny_bert, tmp_path), Path(os.environ[TMPFS]) / name
    outcomes: list[tuple[str, str]] = []
    (work.parent / "filler").unlink(missing_ok=True)
    for free in (0, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 23):
        filler = fill(case.fresh(work).parent, free)
        run = cli(case.argv(work))
        if run.code == 0:
            filler.unlink()
            assert case.read(work) == case.expected
            break
        assert run.refused and "No space left on device" in run.err, f"{free} bytes free: exit {run.code}\n{run.err}"
        outcomes.append((f"{free} bytes free", after_fault(f"a full disk ({free} bytes free)", work, case.argv(work),
                                                           case.read, case.expected, case.before, fixed=filler.unlink)))
    else:
        pytest.fail(f"{name} did not fit in 8 MB")
    report(name, "disk full", outcomes)
    assert outcomes


@pytest.mark.parametrize("name", list(CASES))
def test_a_flipped_byte_in_any_file_is_refused_with_verify(name, corpus, tiny_bert, tmp_path):
    """``densepr verify`` and the later command's ``--verify`` name the file of each flipped byte; a ``retrieve`` does
    without ``--verify`` too, since loading an index checksums it by default."""
    case, work = CASES[name](corpus, tiny_bert, tmp_path), tmp_path / "w"
    assert cli(case.argv(case.fresh(work))).code == 0
    outcomes: list[tuple[str, str]] = []
    for artifact, verified in case.artifacts.items():
        folder = work / artifact
        for manifest in folder.glob("*manifest.json"):
            for file in json.loads(manifest.read_text())["files"]:
                path = folder / file
                raw = bytearray(path.read_bytes())
                raw[len(raw) // 2] ^= 0x10
                path.write_bytes(bytes(raw))
                later = [verified(work)] if verified else []
                if later and later[0][0] == "retrieve":  # loading an index checksums it by default: no --verify needed
                    later.append([arg for arg in later[0] if arg != "--verify"])
                for run in [cli(["verify", str(folder)])] + [cli(argv) for argv in later]:
                    assert run.refused and f"{path}: its checksum differs" in run.err, f"{path}: {run.err}"
                outcomes.append((f"{artifact}/{file}", "refused"))
                raw[len(raw) // 2] ^= 0x10
                path.write_bytes(bytes(raw))
        assert cli(["verify", str(folder)]).code == 0
    report(name, "flipped byte", outcomes)
    assert len(outcomes) >= 2
