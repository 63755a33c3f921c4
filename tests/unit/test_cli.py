"""The command line, in-process, with the fake embedder standing in for the real model."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from fakes import FakeEmbedder, write_corpus

from assistant import embeddings
from assistant.cli import main


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every model the CLI loads is a FakeEmbedder of that name; returns the names loaded."""
    loaded: list[str] = []

    def load(model: str = embeddings.BUNDLED_MODEL, **_: object) -> FakeEmbedder:
        loaded.append(model)
        return FakeEmbedder(model_name=model)

    monkeypatch.setattr(embeddings, "make_embedder", load)
    return loaded


@pytest.fixture
def served(tiny_index: Path, monkeypatch: pytest.MonkeyPatch, fake_model: list[str]) -> Path:
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", str(tiny_index))
    monkeypatch.setenv("ASSISTANT_EMBED_MODEL", "fake-hash")
    return tiny_index


def error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("assistant: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("question", ["", "   "])
def test_ask_empty_question(
    question: str, capsys: pytest.CaptureFixture[str], fake_model: list[str]
) -> None:
    assert main(["ask", question]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "empty" in error_line(err)
    assert fake_model == []  # rejected before any model is loaded


def test_ask_without_index(capsys: pytest.CaptureFixture[str], fake_model: list[str]) -> None:
    assert main(["ask", "How many CCGs are there?"]) == 4
    out, err = capsys.readouterr()
    assert out == ""
    assert "`assistant index`" in error_line(err)


def test_ask_with_another_model_than_the_index(
    served: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSISTANT_EMBED_MODEL", "another-model")
    assert main(["ask", "Who hosts the apple archive?"]) == 4
    out, err = capsys.readouterr()
    assert out == ""
    line = error_line(err)
    assert "rebuild" in line
    assert "another-model" in line


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["search", "apple", "-k", "0"], {}, "ASSISTANT_TOP_K must be at least 1"),
        (
            ["search", "apple"],
            {"ASSISTANT_TOP_K": "many"},
            "ASSISTANT_TOP_K must be a whole number",
        ),
        (["ask", "apple"], {"ASSISTANT_PORT": "0"}, "ASSISTANT_PORT"),
    ],
)
def test_bad_configuration_exits_2(
    args: list[str],
    env: dict[str, str],
    says: str,
    served: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert says in error_line(err)


def test_ask_json(served: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "Who hosts the apple archive?", "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert out.count("\n") == 1
    assert data["question"] == "Who hosts the apple archive?"
    assert isinstance(data["refused"], bool)
    assert set(data) >= {"question", "answer", "refused", "citations", "timings_ms"}
    assert "Traceback" not in err


def test_ask_text_lists_sources_or_closest_passages(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", "zeppelin quantum?"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("The guidance here does not cover this question")
    assert "Closest passages:" in out


def test_search_json(served: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "Who hosts the apple archive?", "-k", "2", "--json"]) == 0
    out, _ = capsys.readouterr()
    data = json.loads(out)
    assert data["question"] == "Who hosts the apple archive?"
    assert [r["rank"] for r in data["results"]] == [1, 2]
    top = data["results"][0]
    assert top["doc_id"] == "orchards"
    assert top["section"] == "The apple archive"
    assert "Lincoln orchard trust" in top["text"]
    assert set(top) >= {"rank", "doc_id", "title", "section", "text", "score"}


def test_search_text(served: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "dredging contract", "-k", "1"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("1. [")
    assert "Harbour maintenance notes — Dredging" in out


def test_batch_from_stdin(
    served: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sys, "stdin", io.StringIO("Who hosts the apple archive?\n\nWhen does pruning happen?\n")
    )
    assert main(["ask", "-"]) == 2  # one of the lines was not a question
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 3
    assert "answer" in rows[0]
    assert "error" not in rows[0]
    assert rows[1]["question"] == ""
    assert "empty" in rows[1]["error"]
    assert rows[2]["question"] == "When does pruning happen?"
    assert "Traceback" not in err

    monkeypatch.setattr(sys, "stdin", io.StringIO("apple archive\ndredging\n"))
    assert main(["search", "-", "-k", "1"]) == 0
    out, _ = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["results"][0]["doc_id"] for r in rows] == ["orchards", "harbours"]


def test_index_reports_skipped_files_and_reuses_chunks(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fake_model: list[str],
) -> None:
    corpus = write_corpus(
        tmp_path / "cli-corpus",
        {
            "good.txt": "Ferry timetable\n\nThe night ferry leaves the harbour at nine.",
            "empty.txt": b"",
        },
    )
    monkeypatch.setenv("ASSISTANT_CORPUS_DIR", str(corpus))
    monkeypatch.setenv("ASSISTANT_EMBED_MODEL", "fake-hash")
    assert main(["index"]) == 6
    _, err = capsys.readouterr()
    assert "assistant: skipped empty.txt: empty file (0 bytes)" in err
    assert "indexed 1 documents as 1 chunks (1 embedded, 0 reused, 0 removed)" in err
    assert "1 file(s) skipped" in err
    assert fake_model == ["fake-hash"]

    assert main(["index"]) == 6
    _, err = capsys.readouterr()
    assert "(0 embedded, 1 reused, 0 removed)" in err

    (corpus / "empty.txt").unlink()
    assert main(["index", "--rebuild"]) == 0
    _, err = capsys.readouterr()
    assert "(1 embedded, 0 reused, 0 removed)" in err

    assert main(["search", "night ferry", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out)["results"][0]["text"] == "The night ferry leaves the harbour at nine."


def test_index_of_a_missing_corpus_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_model: list[str]
) -> None:
    assert main(["index", "--corpus", str(tmp_path / "missing")]) == 3
    _, err = capsys.readouterr()
    assert "does not exist" in error_line(err)


def test_interrupted_index_says_so_and_the_next_run_resumes(
    tiny_corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fake_model: list[str],
) -> None:
    from assistant.index.chroma import ChromaStore

    monkeypatch.setenv("ASSISTANT_CORPUS_DIR", str(tiny_corpus))
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("ASSISTANT_EMBED_MODEL", "fake-hash")

    def ctrl_c(*_: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ChromaStore, "add", ctrl_c)
        assert main(["index"]) == 130
    _, err = capsys.readouterr()
    assert "assistant: interrupted; the previous index keeps serving" in err
    assert "run `assistant index` again to carry on" in err
    assert "Traceback" not in err

    assert main(["index"]) == 0
    _, err = capsys.readouterr()
    assert "(6 embedded, 0 reused, 0 removed)" in err
    assert "(resumed an interrupted build)" in err


# -- pii: the personal-data guard ---------------------------------------------------------------

PERSONAL = "Jane Smith, DOB 14/03/1962, NHS number 943 476 5919: who commissions her care?"


def test_ask_with_personal_data_is_refused_before_loading_anything(
    capsys: pytest.CaptureFixture[str], fake_model: list[str]
) -> None:
    assert main(["ask", PERSONAL]) == 2
    out, err = capsys.readouterr()
    line = error_line(err)
    assert "date of birth" in line
    assert "NHS number" in line
    assert "rephrase" in line
    assert "943" not in err
    assert out == ""
    assert fake_model == []  # refused before the model or the index was opened


def test_batch_masks_personal_data_in_what_it_prints(
    served: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"Who hosts the apple archive?\n{PERSONAL}\n"))
    assert main(["ask", "-"]) == 2
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert "answer" in rows[0]
    assert "personal data" in rows[1]["error"]
    assert "943 476 5919" not in out
    assert "14/03/1962" not in out
    assert "[NHS number]" in rows[1]["question"]
    assert "Traceback" not in err


def test_ask_redacts_when_set_so(
    served: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSISTANT_PII_CHECK", "redact")
    assert main(["ask", f"Who hosts the apple archive? {PERSONAL}", "--json"]) == 0
    out, _ = capsys.readouterr()
    result = json.loads(out)
    assert "943 476 5919" not in out
    assert "[NHS number]" in result["question"]
