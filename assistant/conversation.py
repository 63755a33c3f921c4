"""The question and its conversation: cleaning what was typed, and the earlier turns a follow-up
may lean on.

Whether a follow-up is searched with its context is decided by the evidence each search finds
(:meth:`assistant.pipeline.Assistant._evidence`); this module only proposes the candidates.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from assistant.errors import InputError, QuestionTooLongError
from assistant.index.lexical import tokenize
from assistant.schema import Turn

__all__ = [
    "clean_question",
    "contextual_question",
    "follow_up_candidates",
    "standalone_question",
]

#: words that make a question lean on the one before it ("Who hosts it?", "And how often?")
_FOLLOW_UP = re.compile(
    r"\b(it|its|they|them|their|this|that|these|those|there|he|she|his|her|the same|such|"
    r"which one)\b|^\W*(and|also|what about|how about|so)\b",
    re.IGNORECASE,
)
#: control characters and lone surrogates (not text: JSON can carry them, no tokenizer takes
#: them): a space
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
#: invisible characters inside words (zero-width space, non-joiner, joiner, word joiner, byte-order
#: mark, soft hyphen): removed, so "commis\u200bsioning" is still one word
_INVISIBLE = re.compile(r"[\u200b-\u200d\u2060\ufeff\u00ad]")


def clean_question(question: str, max_chars: int) -> str:
    """The question as searched: control characters gone, whitespace collapsed, NFC-normalised."""
    if not isinstance(question, str):
        raise InputError("the question must be text")
    text = unicodedata.normalize("NFC", _CONTROL.sub(" ", _INVISIBLE.sub("", question)))
    text = " ".join(text.split())
    if not text:
        raise InputError("the question is empty: type a question about commissioning")
    if len(text) > max_chars:
        raise QuestionTooLongError(
            f"the question is {len(text)} characters long; the limit is {max_chars}. "
            "Ask something shorter."
        )
    return text


def _previous_questions(history: Sequence[Turn]) -> list[str]:
    users = (
        " ".join(_CONTROL.sub(" ", _INVISIBLE.sub("", t.content)).split())
        for t in history
        if t.role == "user"
    )
    return [text for text in users if text]


def follow_up_candidates(question: str, history: Sequence[Turn]) -> list[str]:
    """The question with the conversation's context: after the previous user question, and
    after the two before it (a follow-up of a follow-up). Whether either is searched instead of
    the question alone is decided by the evidence each finds (:meth:`Assistant._evidence`)."""
    previous = _previous_questions(history)
    out = [f"{' '.join(previous[-n:])} {question}" for n in (1, 2) if len(previous) >= n]
    return list(dict.fromkeys(out))


def contextual_question(question: str, history: Sequence[Turn]) -> str:
    """The question after the previous user question (the context a chat model condenses)."""
    candidates = follow_up_candidates(question, history)
    return candidates[0] if candidates else question


def standalone_question(question: str, history: Sequence[Turn]) -> str:
    """The baselines' rule for follow-ups (they have no evidence to decide by): a question of
    three words or fewer, or with a pronoun, is searched after the previous user question."""
    previous = _previous_questions(history)
    if not previous:
        return question
    short = len(tokenize(question)) <= 3
    if short or _FOLLOW_UP.search(question):
        return f"{previous[-1]} {question}"
    return question
