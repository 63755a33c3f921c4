"""Evaluation sets (eval/sets.toml), conversations run turn by turn, leave-one-corpus-out
calibration, and the packaged probe bank and reference cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.answer.probes import NORMALISED, ProbeStats, bank, bank_sample, measure
from assistant.errors import InputError
from assistant.evaluation.calibrate import fingerprint, load_reference
from assistant.evaluation.cases import SetSpec, load_cases, load_conversations, load_sets
from assistant.evaluation.run import System, run_systems
from assistant.evaluation.suite import leave_one_corpus_out, select_sets
from assistant.schema import Answer, Citation

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def test_the_registry_names_every_set_with_its_corpus() -> None:
    specs = {s.name: s for s in load_sets(ROOT / "eval" / "sets.toml")}
    assert set(specs) == {"guidance", "conversations", "howto", "debian-faq"}
    assert specs["guidance"].corpus == specs["conversations"].corpus == (ROOT / "corpus")
    assert specs["howto"].corpus == ROOT / "eval" / "corpora" / "howto"
    assert specs["conversations"].kind == "conversations"
    assert [s.name for s in specs.values() if s.held_out] == ["debian-faq"]
    for spec in specs.values():  # every set loads, and its corpus is in the repository
        assert spec.load()
        assert any(spec.corpus.iterdir())


def test_the_bundled_sets_are_big_enough() -> None:
    howto = load_cases(ROOT / "eval" / "howto.jsonl")
    answerable = [c for c in howto if c.answerable]
    near = [c for c in howto if "near-miss" in c.tags]
    off = [c for c in howto if "off-topic" in c.tags]
    assert (len(howto), len(answerable), len(near), len(off)) >= (60, 45, 10, 5)
    assert min(len(answerable) - 45, len(near) - 10, len(off) - 5) >= 0
    conversations = load_conversations(ROOT / "eval" / "conversations.jsonl")
    assert len(conversations) >= 30
    assert all(2 <= len(c.turns) <= 3 and c.turns[0].kind == "first" for c in conversations)
    kinds = {t.kind for c in conversations for t in c.turns}
    assert kinds == {"first", "follow-up", "switch", "off-topic", "out-of-scope"}


def test_a_registry_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "sets.toml"
    path.write_text('[sets.a]\ncases = "a.jsonl"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"needs corpus"):
        load_sets(path)
    path.write_text('[sets.a]\ncases = "a.jsonl"\ncorpus = "c"\nkind = "chat"\n')
    with pytest.raises(InputError, match="kind must be"):
        load_sets(path)


def test_a_set_one_brings_is_asked_of_the_given_corpus(tmp_path: Path) -> None:
    cases = write(tmp_path / "mine.jsonl", [{"id": "a", "question": "q?", "answerable": False}])
    chosen, known = select_sets(ROOT / "eval" / "sets.toml", [str(cases)], corpus=tmp_path)
    assert [(s.name, s.corpus, s.kind, s.brought) for s in chosen] == [
        ("mine", tmp_path.resolve(), "cases", True)
    ]
    assert {s.name for s in known} >= {"guidance", "howto"}
    turns = {"kind": "first", "question": "q?", "answerable": False}
    convs = write(tmp_path / "chats.jsonl", [{"id": "c", "turns": [turns]}])
    chosen, _ = select_sets(ROOT / "eval" / "sets.toml", [str(convs)], corpus=tmp_path)
    assert chosen[0].kind == "conversations"
    with pytest.raises(InputError, match="does not exist"):
        select_sets(ROOT / "eval" / "sets.toml", ["nope"], corpus=tmp_path)


def test_a_conversation_file_is_checked(tmp_path: Path) -> None:
    bad = {"id": "c", "turns": [{"kind": "chat", "question": "q?", "answerable": True}]}
    with pytest.raises(InputError, match="'kind' must be one of"):
        load_conversations(write(tmp_path / "c.jsonl", [bad]))
    with pytest.raises(InputError, match="a conversation"):
        load_cases(write(tmp_path / "d.jsonl", [{"id": "c", "turns": []}]))


def _answer(question: str, text: str, passage: str = "") -> Answer:
    citations = [] if not passage else [
        Citation(n=1, chunk_id="x", doc_id="d", title="t", section="", quote=text, passage=passage)
    ]  # fmt: skip
    return Answer(question, text or "declined", refused=not passage, citations=citations)


def test_conversations_run_turn_by_turn_with_the_answers_given(tmp_path: Path) -> None:
    conv = {
        "id": "c1",
        "turns": [
            {"kind": "first", "question": "Who hosts it?", "answerable": True,
             "must": [["Lincoln"]], "evidence": "hosted by Lincoln"},
            {"kind": "follow-up", "question": "Since when?", "answerable": True,
             "must": [["1990"]], "evidence": "since 1990"},
            {"kind": "off-topic", "question": "Capital of France?", "answerable": False},
        ],
    }  # fmt: skip
    seen: list[list[tuple[str, str]]] = []

    def ask(case):  # type: ignore[no-untyped-def]
        seen.append([(t.role, t.content) for t in case.history])
        if case.question.startswith("Who"):
            return _answer(case.question, "Hosted by Lincoln.", "It is hosted by Lincoln.")
        if case.question.startswith("Since"):
            return _answer(case.question, "Since 1990.", "Open since 1990.")
        return _answer(case.question, "Paris is nice.", "It is hosted by Lincoln.")

    system = System("s", "fake", ask=ask, search=lambda case, k: [])
    run = run_systems(load_conversations(write(tmp_path / "c.jsonl", [conv])), [system])
    results = run.runs[0].results
    assert [r.case.id for r in results] == ["c1/1", "c1/2", "c1/3"]
    assert seen[2] == [
        ("user", "Who hosts it?"), ("assistant", "Hosted by Lincoln."),
        ("user", "Since when?"), ("assistant", "Since 1990."),
    ]  # fmt: skip
    metrics = run.runs[0].summary.metrics
    assert metrics["follow_ups_answered"] == 1.0
    assert metrics["switches_own_topic_or_declined"] == 0.0  # the off-topic turn was answered


def test_leave_one_corpus_out_never_fits_on_the_scored_corpus(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    specs = [
        SetSpec("a1", tmp_path / "a1.jsonl", a), SetSpec("a2", tmp_path / "a2.jsonl", a),
        SetSpec("b1", tmp_path / "b1.jsonl", b), SetSpec("held", tmp_path / "h.jsonl", b,
        held_out=True), SetSpec("chat", tmp_path / "c.jsonl", b, kind="conversations"),
    ]  # fmt: skip
    asked: list[str] = []
    probed: list[Path] = []

    def rows(spec: SetSpec) -> list[tuple[dict[str, float], bool]]:
        asked.append(spec.name)
        return [({"top_dense": 0.9}, True), ({"top_dense": 0.1}, False)]

    def probes(corpus: Path) -> list[tuple[dict[str, float], bool]]:
        probed.append(corpus)
        return [({"top_dense": 0.0}, False)]

    cal = leave_one_corpus_out(specs[0], specs, rows, probes)
    assert cal is not None
    assert asked == ["b1"]  # not a1/a2 (same corpus), the held-out set, conversations
    assert set(probed) == {a, b}  # the scored corpus's probes are not labelled cases
    assert "leaving out a" in cal.fitted_on
    assert leave_one_corpus_out(specs[0], specs[:2], rows, probes) is None


def test_the_probe_bank_and_its_fixed_sample() -> None:
    questions = bank()
    assert len(questions) >= 400
    assert {q.kind for q in questions} == {"off-topic", "near-miss"}
    assert bank_sample() == bank_sample()  # the same questions for every build
    assert len({q.question for q in bank_sample()}) == len(bank_sample())


def test_probe_stats_read_features_against_the_probes(tmp_path: Path) -> None:
    values = iter([0.2, 0.4])
    stats = measure(lambda q: dict.fromkeys(NORMALISED, next(values)), bank_sample(2))
    assert stats.mean["top_dense"] == pytest.approx(0.3)
    assert stats.spread["top_dense"] == pytest.approx(0.1)
    assert stats.normalise({"top_dense": 0.5, "specific_found": 0.5}) == pytest.approx(
        {"top_dense": 2.0, "specific_found": 0.5}  # shares and flags are left as they are
    )
    stats.save(tmp_path)
    assert ProbeStats.load(tmp_path) == stats
    (tmp_path / "probes.json").write_text("{not json")
    assert ProbeStats.load(tmp_path) is None


def test_the_packaged_reference_cases_and_corpus_fingerprints(tmp_path: Path) -> None:
    reference = load_reference()
    guidance = fingerprint(ROOT / "corpus")
    assert {corpus for corpus, _, _ in reference} == {
        guidance,
        fingerprint(ROOT / "eval" / "corpora" / "howto"),
    }
    assert sum(corpus == guidance for corpus, _, _ in reference) == 141
    first, moved = tmp_path / "first", tmp_path / "elsewhere"
    for folder, names in ((first, ("x.md", "y.txt")), (moved, ("renamed.md", "z.txt"))):
        folder.mkdir()
        (folder / names[0]).write_text("same")
        (folder / names[1]).write_text("other")
    assert fingerprint(moved) == fingerprint(first) != guidance
