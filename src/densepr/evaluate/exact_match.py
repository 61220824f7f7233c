"""Exact match of predicted answers (SQuAD's normalisation, as DPR's reader evaluation).

Both sides are NFD-normalised, lower-cased, stripped of punctuation and of the articles a/an/the,
and whitespace-collapsed before comparing. ``regex`` mode (CuratedTREC) matches the whole prediction
against each answer pattern instead.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence

from densepr.errors import DenseprError

_ARTICLES = re.compile(r"\b(a|an|the)\b", flags=re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD answer normalisation.

    >>> normalize_answer("  The Eiffel-Tower, in PARIS! ")
    'eiffeltower in paris'
    """
    text = unicodedata.normalize("NFD", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str], match: str = "string") -> bool:
    """True if ``prediction`` equals any gold answer after normalisation (or fully matches a regex answer)."""
    if match == "string":
        predicted = normalize_answer(prediction)
        return any(predicted == normalize_answer(a) for a in answers)
    if match == "regex":
        text = unicodedata.normalize("NFD", prediction)
        for pattern in answers:
            try:
                if re.fullmatch(unicodedata.normalize("NFD", pattern), text, flags=re.IGNORECASE):
                    return True
            except re.error:
                continue  # an uncompilable pattern matches nothing, as in DPR
        return False
    raise DenseprError(f"unknown match mode {match!r}; choose from string, regex")


def exact_match_score(predictions: Sequence[str], answers: Sequence[Sequence[str]], match: str = "string") -> float:
    """Percent of predictions exactly matching one of their gold answers."""
    if len(predictions) != len(answers):
        raise DenseprError(f"{len(predictions)} predictions for {len(answers)} answer lists")
    if not predictions:
        raise DenseprError("no predictions to score")
    return 100.0 * sum(exact_match(p, a, match) for p, a in zip(predictions, answers)) / len(predictions)
