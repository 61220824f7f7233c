"""A griffe extension for the API pages: a docstring's ``>>>`` examples become fenced Python blocks (as written
they would render as nested quotes), with their ``# doctest:`` directives dropped."""

from __future__ import annotations

import re
from typing import Any

import griffe

DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")


def fence(text: str) -> str:
    """``text`` with each run of ``>>>``/``...`` lines (and the output lines after them) inside a ```` ```pycon ```` fence."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith((">>>", "...")):
            if not inside:
                out += ["```pycon"]
                inside = True
            out.append(DIRECTIVE.sub("", line))
        elif inside and stripped:
            out.append(line)  # the expected output
        else:
            if inside:
                out.append("```")
                inside = False
            out.append(line)
    return "\n".join(out + (["```"] if inside else []))


class DoctestFences(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **_: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence(obj.docstring.value)
