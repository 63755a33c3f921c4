"""The personal-data guard: finds patient and staff details in what people type, before anything
stores, logs or searches it.

Found: NHS numbers (ten digits whose last is the modulus-11 check digit), National Insurance
numbers (the real prefix rules, six digits, suffix A-D), email addresses, UK phone numbers
(mobile 07…, +44 7…, landline 01…/02…), payment card numbers (13-19 digits passing the Luhn
check) and dates of birth: a date after "DOB", "date of birth" or "born", or straight after a
capitalised First Last name ("Jane Smith, 14/03/1962"). A document date ("from 1 April 2013",
"published 14 March 2012"), "NHS 111" or "209 CCGs" is not personal data.

:func:`screen` applies the setting ``ASSISTANT_PII_CHECK``: ``block`` refuses the text with a
:class:`~assistant.errors.PersonalDataError` naming the kinds found (never the values),
``redact`` masks each one as ``[NHS number]``, ``[email address]``…, ``off`` lets it through.
Plain regular expressions and two check digits: no model, nothing fetched.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from assistant.errors import ConfigError, PersonalDataError
from assistant.schema import Turn

__all__ = [
    "PII_MODES",
    "Finding",
    "find_personal_data",
    "luhn_valid",
    "nhs_number_valid",
    "personal_data_kinds",
    "redact",
    "screen",
    "screen_turns",
]

#: what ASSISTANT_PII_CHECK may say
PII_MODES = ("block", "redact", "off")

NHS_NUMBER = "NHS number"
NI_NUMBER = "National Insurance number"
EMAIL = "email address"
PHONE = "phone number"
CARD = "payment card number"
DOB = "date of birth"

_NHS = re.compile(r"(?<![\d.,/-])\d{3}([ -]?)\d{3}\1\d{4}(?![\d.,/-]?\d)")
# prefix: first letter not D F I Q U V, second not D F I O Q U V; never BG GB KN NK NT TN ZZ
_NINO = re.compile(
    r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"\b[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# +44 7700 900123, +44 (0)20 7946 0000, 07700 900123, (01632) 960001: the digits after the
# trunk 0 are counted below (9 or 10, starting 1, 2 or 7)
_PHONE = re.compile(
    r"(?<![\w+/.])(?:(?:\+|00)44[ -]?(?:\(0\)[ -]?)?\(?|\(0|0)([127](?:[ -]?\)?[ -]?\d){8,9})"
    r"(?![\d/]|\.\d)"
)
# cards start 2-6 (Mastercard, Amex/JCB/Diners, Visa, Maestro/Mastercard, Discover/UnionPay)
_CARD = re.compile(r"(?<![\d.,/-])[2-6](?:[ -]?\d){12,18}(?![\d.,/-]?\d)")

_MONTHS = (
    "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    "sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_DATE = (
    r"(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?i:{_MONTHS})\.?,?\s+\d{{4}}"
    rf"|(?i:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})(?![\w/])"
)
_DOB_WORD = re.compile(
    r"\b(?:d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|born(?:\s+on)?|birthday)"
    rf"(?:\s*(?:is|was|[:=,.-]))*\s*(?P<date>{_DATE})",
    re.IGNORECASE,
)
_NAME_WORD = r"(?:O'|Mc|Mac)?[A-Z][a-z]+(?:-[A-Z][a-z]+)?"
_NAMED_DATE = re.compile(
    rf"\b(?P<first>{_NAME_WORD})\s+(?:[A-Z]\.?\s+)?(?P<last>{_NAME_WORD})"
    rf"\s*(?:[,:;(-]\s*)?(?P<date>{_DATE})"
)
#: capitalised words that are not names: a document, a body or a time, before a date
_NOT_NAMES = frozenset(
    [
        "act",
        "acts",
        "april",
        "august",
        "bill",
        "board",
        "boards",
        "care",
        "clinical",
        "commissioning",
        "council",
        "december",
        "directions",
        "edition",
        "england",
        "february",
        "framework",
        "friday",
        "fund",
        "group",
        "groups",
        "guidance",
        "health",
        "january",
        "july",
        "june",
        "march",
        "may",
        "monday",
        "national",
        "nhs",
        "november",
        "october",
        "order",
        "policy",
        "published",
        "regulations",
        "saturday",
        "september",
        "service",
        "services",
        "standing",
        "strategy",
        "sunday",
        "the",
        "thursday",
        "trust",
        "trusts",
        "tuesday",
        "update",
        "updated",
        "version",
        "wednesday",
    ]
)


@dataclass(frozen=True)
class Finding:
    """One piece of personal data: its kind and where it is in the text."""

    kind: str
    start: int
    end: int


def nhs_number_valid(digits: str) -> bool:
    """Whether ten digits are an NHS number: weights 10..2 on the first nine, 11 minus the sum
    modulo 11 is the tenth (11 means 0; 10 means no number has these nine digits)."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    check = 11 - sum(int(d) * (10 - i) for i, d in enumerate(digits[:9])) % 11
    return (0 if check == 11 else check) == int(digits[9])


def luhn_valid(digits: str) -> bool:
    """Whether a number passes the Luhn check (the last digit of every payment card)."""
    if not digits.isdigit():
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _nhs(text: str) -> Iterator[Finding]:
    for m in _NHS.finditer(text):
        if nhs_number_valid(_digits(m.group())):
            yield Finding(NHS_NUMBER, m.start(), m.end())


def _phones(text: str) -> Iterator[Finding]:
    for m in _PHONE.finditer(text):
        if len(_digits(m.group(1))) in (9, 10):
            yield Finding(PHONE, m.start(), m.end())


def _cards(text: str) -> Iterator[Finding]:
    for m in _CARD.finditer(text):
        digits = _digits(m.group())
        if luhn_valid(digits) and len(set(digits)) > 1:
            yield Finding(CARD, m.start(), m.end())


def _simple(pattern: re.Pattern[str], kind: str) -> Callable[[str], Iterator[Finding]]:
    def find(text: str) -> Iterator[Finding]:
        return (Finding(kind, m.start(), m.end()) for m in pattern.finditer(text))

    return find


def _dates_of_birth(text: str) -> Iterator[Finding]:
    for m in _DOB_WORD.finditer(text):
        yield Finding(DOB, m.start("date"), m.end("date"))
    for m in _NAMED_DATE.finditer(text):
        if not {m["first"].lower(), m["last"].lower()} & _NOT_NAMES:
            yield Finding(DOB, m.start("date"), m.end("date"))


#: most specific first: where two findings overlap, the earlier detector's is kept
_DETECTORS: tuple[Callable[[str], Iterator[Finding]], ...] = (
    _simple(_EMAIL, EMAIL),
    _nhs,
    _simple(_NINO, NI_NUMBER),
    _phones,
    _cards,
    _dates_of_birth,
)


def _visible(text: str) -> str:
    """The text without invisible format characters (zero-width spaces, joiners, BOMs), which
    would otherwise split a number the guard looks for."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def find_personal_data(text: str) -> list[Finding]:
    """Every piece of personal data in ``text`` (positions in ``_visible(text)``), in order."""
    text = _visible(text)
    found: list[Finding] = []
    for detect in _DETECTORS:
        for f in detect(text):
            if not any(f.start < g.end and g.start < f.end for g in found):
                found.append(f)
    return sorted(found, key=lambda f: f.start)


def personal_data_kinds(text: str) -> list[str]:
    """The kinds of personal data in ``text`` ("NHS number", "email address"…), each once."""
    return list(dict.fromkeys(f.kind for f in find_personal_data(text)))


def redact(text: str) -> str:
    """``text`` with each piece of personal data replaced by its kind, e.g. ``[NHS number]``
    (unchanged when there is none)."""
    found = find_personal_data(text)
    if not found:
        return text
    visible = _visible(text)
    parts: list[str] = []
    at = 0
    for f in found:
        parts += [visible[at : f.start], f"[{f.kind}]"]
        at = f.end
    return "".join([*parts, visible[at:]])


def screen(texts: Sequence[str], mode: str, what: str = "question") -> list[str]:
    """``texts`` (a question and its earlier turns, or a piece of feedback) as ``mode`` lets
    them through: ``block`` raises :class:`PersonalDataError` if any holds personal data,
    ``redact`` returns them masked, ``off`` returns them as they are."""
    if mode not in PII_MODES:
        raise ConfigError(
            f"ASSISTANT_PII_CHECK must be one of {', '.join(PII_MODES)}, not {mode!r}"
        )
    if mode == "off":
        return list(texts)
    if mode == "redact":
        return [redact(t) for t in texts]
    kinds = list(dict.fromkeys(k for t in texts for k in personal_data_kinds(t)))
    if kinds:
        raise PersonalDataError(kinds, what)
    return list(texts)


def screen_turns(
    question: str, history: Sequence[Turn], mode: str, what: str = "question"
) -> tuple[str, list[Turn]]:
    """The question and the earlier turns past :func:`screen`: what the user typed (the question,
    the earlier questions) is refused or masked as ``mode`` says; the assistant's own turns are
    only masked (an answer may quote a contact address from the guidance: that refuses nothing).
    """
    said = [t.content for t in history if t.role == "user"]
    query, *said = screen([question, *said], mode, what)
    mine = iter(said)
    turns = [
        Turn(t.role, next(mine) if t.role == "user" else _masked(t.content, mode)) for t in history
    ]
    return query, turns


def _masked(text: str, mode: str) -> str:
    return text if mode == "off" else redact(text)
