"""The generated reference pages: the command line from its parser (built from the options dataclasses), the HTTP
API from the service's OpenAPI schema. Both are written at build time, so they cannot drift from the code."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`" + (" ..." if action.nargs in ("+", "*") else "")
    value = "" if action.nargs == 0 else f" {(action.metavar or action.dest).upper()}"
    return ", ".join(f"`{s}{value}`" for s in action.option_strings)


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS, False) or not action.option_strings:
        return ""
    return f"`{action.default}`"


def _help(action: argparse.Action) -> str:
    text = (action.help or "").replace("%%", "%")
    if action.choices and "choose from" not in text:
        text += f" (one of: {', '.join(map(str, action.choices))})"
    return _cell(text)


def cli_markdown() -> str:
    """Every ``densepr`` command with every option: flags, default and help, group by group."""
    from densepr.cli.main import COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = ["Every command and option, generated from the parser (itself generated from the options dataclasses of",
             "`densepr.cli.options`) each time the site is built: `densepr [global options] COMMAND [options]`.", "",
             "**global options**", "", "| option | default | description |", "|---|---|---|"]
    lines += [f"| {_flags(a)} | {_default(a)} | {_help(a)} |" for a in parser._actions
              if a.option_strings and not isinstance(a, argparse._HelpAction)]
    lines += ["", "| command | what it does |", "|---|---|"]
    lines += [f"| [`{name}`](#densepr-{name}) | {_cell(c.help)} |" for name, c in COMMANDS.items()]
    for name, command_parser in sub.choices.items():
        usage = command_parser.format_usage().removeprefix("usage: ").strip()
        lines += ["", f"## densepr {name}", "", _cell(COMMANDS[name].help) + ".", "", "```text", usage, "```"]
        for group in command_parser._action_groups:
            actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
            if not actions:
                continue
            lines += ["", f"**{group.title}**", "", "| option | default | description |", "|---|---|---|"]
            lines += [f"| {_flags(a)} | {_default(a)} | {_help(a)} |" for a in actions]
    return "\n".join(lines) + "\n"


def openapi_schema() -> dict:
    """The service's OpenAPI schema, from an app over a two-passage BM25 index (no model is loaded)."""
    from densepr import pipeline
    from densepr.serve.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs.jsonl"
        docs.write_text(json.dumps({"id": "1", "title": "Ulm", "text": "Einstein was born in Ulm."}) + "\n", encoding="utf-8")
        pipeline.make_passages(inputs=[str(docs)], out=Path(tmp) / "psgs.tsv")
        pipeline.build_bm25(passages=Path(tmp) / "psgs.tsv", out=Path(tmp) / "bm25", progress=False)
        return create_app(index=str(Path(tmp) / "bm25")).openapi()


def _type(schema: dict, components: dict) -> str:
    if "$ref" in schema:
        return f"[{schema['$ref'].rsplit('/', 1)[-1]}](#{schema['$ref'].rsplit('/', 1)[-1].lower()})"
    if "anyOf" in schema:
        return " or ".join(_type(s, components) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type(schema.get('items', {}), components)}"
    return schema.get("type", "any")


def http_markdown(schema: dict | None = None) -> str:
    """Each endpoint (method, path, summary, request body, responses) and each schema with its fields."""
    schema = schema or openapi_schema()
    components = schema.get("components", {}).get("schemas", {})
    lines = [f"`densepr serve` {schema['info']['version']}: {schema['info'].get('description', '')} Generated from the",
             "service's OpenAPI schema each time the site is built; a running service also serves it at `/openapi.json`",
             "and renders it at `/docs`.", "", "## Endpoints"]
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            lines += ["", f"### {method.upper()} {path}", "", op.get("description") or op.get("summary", "")]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                lines += ["", f"Request body: {_type(body, components)}."]
            codes = ", ".join(f"`{code}` {r.get('description', '')}" for code, r in op.get("responses", {}).items())
            lines += ["", f"Responses: {codes}."]
    lines += ["", "## Schemas"]
    for name, comp in components.items():
        lines += ["", f"### {name}", "", comp.get("description", "")]
        fields = comp.get("properties", {})
        if fields:
            required = set(comp.get("required", []))
            lines += ["", "| field | type | required | default | description |", "|---|---|---|---|---|"]
            lines += [f"| `{f}` | {_cell(_type(s, components))} | {'yes' if f in required else ''} | "
                      f"{_cell(json.dumps(s['default'])) if 'default' in s else ''} | {_cell(s.get('description', ''))} |"
                      for f, s in fields.items()]
    return "\n".join(lines) + "\n"
