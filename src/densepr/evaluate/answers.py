"""DPR's answer matching: does a passage contain an answer?

``string`` mode: Unicode NFD normalisation, DPR's ``SimpleTokenizer`` (runs of letters,
digits and marks, or any single other non-space character), uncased, token subsequence.
``regex`` mode (CuratedTREC): case-insensitive ``re.search`` of each answer pattern.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

import regex

from densepr.errors import DenseprError

MATCH_MODES = ("string", "regex")
_TOKEN = regex.compile(r"[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]", flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)
_SEP = "\x00"  # never inside a token: control characters are not tokens


def tokenize(text: str) -> list[str]:
    """DPR ``SimpleTokenizer`` words of NFD-normalised ``text``, lower-cased.

    >>> tokenize("Café-au-lait, 1.5!")
    ['cafe\u0301', '-', 'au', '-', 'lait', ',', '1', '.', '5', '!']
    """
    return [t.lower() for t in _TOKEN.findall(unicodedata.normalize("NFD", text))]


@functools.lru_cache(maxsize=1 << 17)
def _joined_tokens(text: str) -> str:
    return _SEP + _SEP.join(tokenize(text)) + _SEP


@functools.lru_cache(maxsize=1 << 14)
def _compiled(pattern: str) -> re.Pattern | None:
    try:
        return re.compile(unicodedata.normalize("NFD", pattern), flags=re.IGNORECASE | re.UNICODE | re.MULTILINE)
    except re.error:
        return None  # DPR treats an uncompilable pattern as no match


def has_answer(answers: Sequence[str], text: str, match: str = "string") -> bool:
    """True if ``text`` contains any of ``answers`` under DPR's matching rules.

    >>> has_answer(["Linda Davis"], "recorded by Reba McEntire and LINDA davis.")
    True
    >>> has_answer([r"Sept?(ember)?"], "in september", match="regex")
    True
    """
    if match == "string":
        haystack = _joined_tokens(text)
        for answer in answers:
            tokens = tokenize(answer)
            if tokens and _SEP + _SEP.join(tokens) + _SEP in haystack:
                return True
        return False
    if match == "regex":
        normalized = unicodedata.normalize("NFD", text)
        return any(p is not None and p.search(normalized) for p in map(_compiled, answers))
    raise DenseprError(f"unknown match mode {match!r}; choose from {', '.join(MATCH_MODES)}")
