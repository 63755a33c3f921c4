"""Index changes while serving: `assistant index` runs twice beside a busy app.py.

The server keeps answering a corpus question from several threads the whole time; every answer
must be a 200 with a cited (not declined) answer holding the expected fact. After each build,
without a restart, the server serves the new build (/api/health names it) and answers from the
new document; after the second build, which changes that document, the old fact is gone.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from rel_helpers import (
    CCG_FACT,
    CCG_QUESTION,
    Tally,
    assert_serving_build_is_whole,
    cli_env,
    copy_corpus,
    copy_index,
    current_build,
    partial_builds,
    run_cli,
)
from servers import running_app

pytestmark = pytest.mark.slow

LOADERS = 4
LOAD_QUESTIONS = [
    (CCG_QUESTION, CCG_FACT),
    ("Who hosts Specialised Commissioning?", "Leicestershire and Rutland"),
]
PANEL_FILE = "quokka-liaison-panel.txt"
PANEL_QUESTION = "When does the quokka liaison panel meet?"
#: the document each build adds or changes, and the fact the answer must then hold
VERSIONS = [
    ("The quokka liaison panel meets on the ninth Thursday of each year.", "ninth Thursday"),
    ("The quokka liaison panel meets on the eleventh Tuesday of each year.", "eleventh Tuesday"),
]


@dataclass(frozen=True)
class Result:
    started: float
    ended: float
    problem: str  # empty when the request got a 200 with a cited answer holding the fact


def keep_asking(base: str, n: int, stop: threading.Event, out: list[Result], tally: Tally) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        while not stop.is_set():
            question, fact = LOAD_QUESTIONS[n % len(LOAD_QUESTIONS)]
            n += 1
            started = time.monotonic()
            problem = ""
            try:
                r = http.post("/api/ask", json={"question": question})
                body = r.json()
                if r.status_code != 200:
                    problem = f"{r.status_code}: {r.text[:200]}"
                elif body["refused"] or not body["citations"] or fact not in body["answer"]:
                    problem = f"not a cited answer with {fact!r}: {body['answer'][:200]}"
            except (httpx.HTTPError, ValueError, KeyError) as err:
                problem = f"{type(err).__name__}: {err}"
            out.append(Result(started, time.monotonic(), problem))
            tally.add(requests_sent=1, errors=int(bool(problem)))


def test_two_rebuilds_while_serving(real_index: Path, tmp_path: Path, tally: Tally) -> None:
    corpus = copy_corpus(tmp_path / "corpus")
    index = copy_index(real_index, tmp_path / "index")
    env = cli_env(corpus, index, tmp_path / "data")
    server_env = {"ASSISTANT_INDEX_DIR": str(index), "ASSISTANT_DATA_DIR": str(tmp_path / "data")}
    results: list[Result] = []
    stop = threading.Event()
    with running_app(server_env, tmp_path / "server.log") as base:
        builds = [httpx.get(f"{base}/api/health").json()["index"]["build"]]
        assert builds[0] == current_build(index)
        loaders = [
            threading.Thread(target=keep_asking, args=(base, n, stop, results, tally))
            for n in range(LOADERS)
        ]
        for t in loaders:
            t.start()
        try:
            windows = []
            for text, fact in VERSIONS:
                (corpus / PANEL_FILE).write_text(f"Quokka liaison panel\n\n{text}\n", "utf-8")
                started = time.monotonic()
                run = run_cli(["index"], env)
                windows.append((started, time.monotonic()))
                assert run.returncode == 0, run.stderr
                assert "Traceback" not in run.stderr
                build = assert_serving_build_is_whole(index)
                assert build not in builds
                assert partial_builds(index) == []
                # no restart: the next question is answered from the new build
                r = httpx.post(f"{base}/api/ask", json={"question": PANEL_QUESTION}, timeout=60)
                tally.add(requests_sent=1, errors=int(r.status_code != 200))
                assert r.status_code == 200, r.text
                body = r.json()
                assert not body["refused"], body["answer"]
                assert fact in body["answer"]
                assert [c["doc_id"] for c in body["citations"]][:1] == ["quokka-liaison-panel"]
                for old_text, old_fact in VERSIONS:
                    if old_text != text:
                        assert old_fact not in body["answer"]
                assert httpx.get(f"{base}/api/health").json()["index"]["build"] == build
                builds.append(build)
            time.sleep(0.5)  # a few more questions on the last build
        finally:
            stop.set()
            for t in loaders:
                t.join(timeout=60)

    problems = [r.problem for r in results if r.problem]
    assert not problems, (len(problems), problems[:3])
    for started, ended in windows:  # the server was busy during each build
        during = [r for r in results if r.started < ended and r.ended > started]
        assert len(during) >= LOADERS, (len(during), ended - started)
    print(f"\nindex swap: {len(results)} answers during {len(VERSIONS)} rebuilds, builds {builds}")
