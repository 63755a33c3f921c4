"""Known-answer cases (``eval/*.jsonl``) and the sets that name them (``eval/sets.toml``).

The case format is documented in ``eval/README.md``. A set of kind ``cases`` holds one question
per line (with optional earlier turns as ``history``); a set of kind ``conversations`` holds
conversations of two or three turns, asked one after the other, each turn with its own expected
answer (or none: it must be declined). Every set names the corpus it is asked of, so
``assistant eval`` can evaluate each set against an index of its own corpus.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import InputError
from assistant.schema import Turn

__all__ = [
    "TURN_KINDS",
    "Conversation",
    "EvalCase",
    "SetSpec",
    "load_cases",
    "load_conversations",
    "load_sets",
    "normalise",
]

#: what a turn of a conversation is: its first question, a question that leans on the earlier
#: turns, a new self-contained question on another topic, an off-topic question, or a question
#: of the same field the documents do not cover
TURN_KINDS = ("first", "follow-up", "switch", "off-topic", "out-of-scope")


def normalise(text: str) -> str:
    """Case-folded, whitespace-collapsed text, for matching facts and evidence."""
    return " ".join(text.casefold().split())


@dataclass(frozen=True)
class EvalCase:
    id: str
    question: str
    answerable: bool
    must: list[list[str]] = field(default_factory=list)
    evidence: str = ""
    history: list[Turn] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    kind: str = ""  # a conversation turn's kind (TURN_KINDS); "" for a case of a plain set


@dataclass(frozen=True)
class Conversation:
    """Turns asked one after the other; each turn's history is the conversation so far (the
    questions asked and the answers actually given)."""

    id: str
    turns: list[EvalCase]
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SetSpec:
    """One evaluation set: its cases, the corpus they are asked of, and its kind."""

    name: str
    cases: Path
    corpus: Path
    kind: str = "cases"  # or "conversations"
    #: never used to fit anything (calibration, weights): only measured
    held_out: bool = False
    #: a set one brings (``--set FILE``), asked through the configured index
    brought: bool = False

    def load(self) -> list[EvalCase] | list[Conversation]:
        if self.kind == "conversations":
            return load_conversations(self.cases)
        return load_cases(self.cases)


def _case(raw: Any, where: str, *, kind: str = "") -> EvalCase:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a case must be a JSON object")
    for key, typ in (("question", str), ("answerable", bool)):
        if not isinstance(raw.get(key), typ):
            raise InputError(f"{where}: field {key!r} must be a {typ.__name__}")
    if not kind and not isinstance(raw.get("id"), str):
        raise InputError(f"{where}: field 'id' must be a str")
    must = raw.get("must") or []
    if not (isinstance(must, list) and all(
        isinstance(g, list) and g and all(isinstance(a, str) and a for a in g) for g in must
    )):  # fmt: skip
        raise InputError(f"{where}: 'must' must be a list of non-empty lists of strings")
    history = raw.get("history") or []
    if not isinstance(history, list) or not all(
        isinstance(t, dict) and t.get("role") in ("user", "assistant")
        and isinstance(t.get("content"), str) for t in history
    ):  # fmt: skip
        raise InputError(f"{where}: 'history' must be a list of {{role, content}} turns")
    evidence = raw.get("evidence") or ""
    if not isinstance(evidence, str):
        raise InputError(f"{where}: 'evidence' must be a string")
    return EvalCase(
        id=str(raw.get("id", "")),
        question=raw["question"],
        answerable=raw["answerable"],
        must=[list(g) for g in must],
        evidence=evidence,
        history=[Turn(t["role"], t["content"]) for t in history],
        tags=[str(t) for t in raw.get("tags") or []],
        kind=kind,
    )


def _json_lines(path: Path) -> list[tuple[int, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"case set {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read case set {path}: {err}") from err
    out: list[tuple[int, Any]] = []
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append((no, json.loads(line)))
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{no}: not valid JSON ({err.msg})") from None
    if not out:
        raise InputError(f"case set {path} has no cases")
    return out


def _unique(path: Path, no: int, case_id: str, seen: set[str]) -> None:
    if case_id in seen:
        raise InputError(f"{path}:{no}: duplicate case id {case_id!r}")
    seen.add(case_id)


def load_cases(path: Path) -> list[EvalCase]:
    cases: list[EvalCase] = []
    seen: set[str] = set()
    for no, raw in _json_lines(path):
        if isinstance(raw, dict) and "turns" in raw:
            raise InputError(
                f"{path}:{no}: a conversation (it has 'turns'); evaluate the file as a set of "
                "kind conversations (`assistant eval --set FILE --conversations`)"
            )
        case = _case(raw, f"{path}:{no}")
        _unique(path, no, case.id, seen)
        cases.append(case)
    return cases


def load_conversations(path: Path) -> list[Conversation]:
    """Conversations, one per line: ``{"id", "tags", "turns": [{"kind", "question",
    "answerable", "must", "evidence"}, …]}``."""
    conversations: list[Conversation] = []
    seen: set[str] = set()
    for no, raw in _json_lines(path):
        where = f"{path}:{no}"
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise InputError(f"{where}: a conversation must be a JSON object with an 'id'")
        turns = raw.get("turns")
        if not isinstance(turns, list) or not turns:
            raise InputError(f"{where}: 'turns' must be a non-empty list")
        parsed: list[EvalCase] = []
        for i, turn in enumerate(turns, start=1):
            kind = turn.get("kind") if isinstance(turn, dict) else None
            if kind not in TURN_KINDS:
                raise InputError(
                    f"{where}, turn {i}: 'kind' must be one of {', '.join(TURN_KINDS)}"
                )
            case = _case(turn, f"{where}, turn {i}", kind=str(kind))
            parsed.append(
                EvalCase(
                    id=f"{raw['id']}/{i}", question=case.question, answerable=case.answerable,
                    must=case.must, evidence=case.evidence, tags=[str(kind)], kind=case.kind,
                )
            )  # fmt: skip
        _unique(path, no, raw["id"], seen)
        conversations.append(
            Conversation(raw["id"], parsed, [str(t) for t in raw.get("tags") or []])
        )
    return conversations


def load_sets(path: Path) -> list[SetSpec]:
    """The sets a registry file names (``eval/sets.toml``): ``[sets.NAME]`` tables with
    ``cases`` and ``corpus`` (paths relative to the file), ``kind`` and ``held_out``."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"set registry {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise InputError(f"cannot read the set registry {path}: {err}") from err
    tables = raw.get("sets")
    if not isinstance(tables, dict) or not tables:
        raise InputError(f"{path}: no [sets.NAME] tables")
    specs: list[SetSpec] = []
    for name, table in tables.items():
        where = f"{path}: [sets.{name}]"
        if not isinstance(table, dict):
            raise InputError(f"{where} must be a table")
        for key in ("cases", "corpus"):
            if not isinstance(table.get(key), str):
                raise InputError(f'{where} needs {key} = "path"')
        kind = table.get("kind", "cases")
        if kind not in ("cases", "conversations"):
            raise InputError(f'{where}: kind must be "cases" or "conversations"')
        specs.append(
            SetSpec(
                name=name,
                cases=(path.parent / table["cases"]).resolve(),
                corpus=(path.parent / table["corpus"]).resolve(),
                kind=kind,
                held_out=bool(table.get("held_out", False)),
            )
        )
    return specs
