"""The manual: the generated references cover every command, option and endpoint, and the quick start's commands
run as written (against the test corpus)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DOCS as DOC_RECORDS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))

import reference_gen  # noqa: E402  (docs/reference_gen.py)


def test_cli_reference_covers_every_command_and_option():
    from densepr.cli.main import COMMANDS, build_parser

    page = reference_gen.cli_markdown()
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert all(f"`{s}`" in page for a in parser._actions for s in a.option_strings if s not in ("-h", "--help"))
    missing = []
    for name, parser in sub.choices.items():
        section = page.split(f"## densepr {name}\n", 1)[1].split("\n## densepr ", 1)[0]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            names = action.option_strings or [action.metavar or action.dest]
            missing += [f"{name} {n}" for n in names if f"`{n}" not in section]
    assert set(sub.choices) == set(COMMANDS)
    assert not missing, missing


def test_http_reference_covers_every_endpoint_and_field():
    schema = reference_gen.openapi_schema()
    page = reference_gen.http_markdown(schema)
    for path, methods in schema["paths"].items():
        for method in methods:
            assert f"### {method.upper()} {path}\n" in page
    for name, comp in schema["components"]["schemas"].items():
        assert f"### {name}\n" in page
        for field in comp.get("properties", {}):
            assert f"| `{field}` |" in page
    assert "/ask" in schema["paths"] and "min_confidence" in page


def quickstart_commands() -> list[str]:
    """The command lines of the quick start's bash blocks, but installs (pip), the server and its client."""
    text = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    lines = [line.split("  #", 1)[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)
             for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith(("pip ", "curl ", "densepr serve", "#"))]


@pytest.mark.slow
def test_quickstart_commands_run(tmp_path):
    commands = quickstart_commands()
    assert any(c.startswith("densepr collection create") for c in commands) and any("evaluate" in c for c in commands)
    (tmp_path / "my-docs").mkdir()
    for doc in DOC_RECORDS:
        (tmp_path / "my-docs" / f"{doc['id']}.txt").write_text(f"{doc['title']}\n\n{doc['text']}\n", encoding="utf-8")
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOC_RECORDS), encoding="utf-8")
    questions = [{"question": "where was einstein born", "answer": ["Ulm"]},
                 {"question": "what river flows through paris", "answer": ["Seine"]}]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    outputs = {}
    for command in commands:
        argv = [sys.executable, "-m", "densepr", "-q", *_split(command)[1:]]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
        outputs[command] = done.stdout
    asked = outputs['densepr ask --collection kb/ "Where was Einstein born?"']  # an answer, or declined with its guess
    assert asked.startswith(("Answer:", "No confident answer (confidence ")) and "passage d1.txt#1" in asked
    assert json.loads(outputs['densepr ask --json --top-k 3 "What is the capital of France?"'].splitlines()[0])["answer"]
    assert "top-" in outputs["densepr evaluate results.json"].lower()


def _split(command: str) -> list[str]:
    import shlex

    return shlex.split(command)
