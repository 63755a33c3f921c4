"""Faults: `kill -9` during indexing and during feedback writes, a read-only index folder, a full
disk. Each must leave the previous index serving (or every committed feedback row readable) and,
where the command can tell, say what went wrong in one line with no traceback.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rel_helpers import (
    CCG_FACT,
    CCG_QUESTION,
    CLI,
    Run,
    Tally,
    ask_in_process,
    assert_one_line_error,
    assert_serving_build_is_whole,
    cli_env,
    copy_corpus,
    copy_index,
    current_build,
    partial_builds,
    run_cli,
)
from servers import REPO

from assistant.records.feedback import FeedbackStore

if TYPE_CHECKING:
    from assistant.embeddings import Embedder

pytestmark = pytest.mark.slow

SEED = 1337
KILL_LANES = 2  # independent index folders, killed side by side
#: chunks per write batch: kills land between batches, so a resumed build has work to keep
KILL_BATCH = "8"
KILLS_PER_LANE = 3
#: documents added one per attempt: (file stem, title, text, question, fact the answer holds)
FACTS = [
    ("quokka-panel", "Quokka liaison panel",
     "The quokka liaison panel meets on the ninth Thursday of each year.",
     "When does the quokka liaison panel meet?", "ninth Thursday"),
    ("wombat-board", "Wombat tariff board",
     "The wombat tariff board sets the burrow levy at 417 pounds per burrow.",
     "What burrow levy does the wombat tariff board set?", "417"),
    ("numbat-forum", "Numbat procurement forum",
     "The numbat procurement forum is chaired by the Harbour Master of Lerwick.",
     "Who chairs the numbat procurement forum?", "Harbour Master of Lerwick"),
    ("bilby-fund", "Bilby innovation fund",
     "The bilby innovation fund awards grants of 2,350 pounds to each hedgerow project.",
     "How much does the bilby innovation fund award to each hedgerow project?", "2,350"),
    ("echidna-council", "Echidna oversight council",
     "The echidna oversight council has 23 members drawn from lighthouse keepers.",
     "How many members does the echidna oversight council have?", "23 members"),
    ("platypus-office", "Platypus audit office",
     "The platypus audit office is based in the town of Llandrindod Wells.",
     "Where is the platypus audit office based?", "Llandrindod Wells"),
    ("dingo-committee", "Dingo scrutiny committee",
     "The dingo scrutiny committee publishes its report every 14 months.",
     "How often does the dingo scrutiny committee publish its report?", "14 months"),
    ("kookaburra-trust", "Kookaburra care trust",
     "The kookaburra care trust was founded by a retired ferry captain named Morwenna Tregarth.",
     "Who founded the kookaburra care trust?", "Morwenna Tregarth"),
]  # fmt: skip


def assert_serves(index: Path, embedder: Embedder, question: str, fact: str) -> None:
    answer = ask_in_process(index, embedder, question)
    assert not answer.refused, (question, answer.answer)
    assert fact in answer.answer, (question, answer.answer)


def assert_does_not_serve(index: Path, embedder: Embedder, question: str, fact: str) -> None:
    assert fact not in ask_in_process(index, embedder, question).answer


# -- kill -9 during `assistant index` --------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    total: float  # start to exit
    building: float  # start until the .partial build appears (the model is loaded by then)
    writing: float  # from then until CURRENT names the new build


def start_index(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen([*CLI, *args], env=env, cwd=REPO, stdout=out, stderr=out)


def timed_index(args: list[str], env: dict[str, str], index: Path, log: Path) -> Timing:
    """Run `assistant ARGS` to the end, noting when its build starts and when it switches."""
    before = current_build(index)
    started = time.monotonic()
    proc = start_index(args, env, log)
    building = switched = 0.0
    while proc.poll() is None:
        now = time.monotonic() - started
        if not building and partial_builds(index):
            building = now
        if building and not switched and current_build(index) != before:
            switched = now
        time.sleep(0.02)
    assert proc.returncode == 0, log.read_text()
    total = time.monotonic() - started
    return Timing(total, building or total, (switched or total) - (building or total))


def kill_lane(lane: int, tmp: Path, typical: Timing, embedder: Embedder, tally: Tally) -> list[str]:
    """Repeatedly: add a document, start `index --rebuild`, kill -9 it, check the previous build
    still serves, rerun `index` and check the new document is served. Lane 0 kills at any moment
    (uniform over a typical run); the others once the build has started (uniform over a typical
    build), where a kill can leave half-written files."""
    rng = random.Random(SEED + lane)
    corpus, index = tmp / "corpus", tmp / "index"
    env = cli_env(corpus, index, tmp / "data", index_batch=KILL_BATCH)
    served = (CCG_QUESTION, CCG_FACT)
    log = []
    kills = 0
    attempts = FACTS[lane + 1 :] + FACTS[: lane + 1]  # one new document per attempt
    while kills < KILLS_PER_LANE:
        assert attempts, f"lane {lane}: most builds finished before their kill: {log}"
        stem, title, text, question, fact = attempts.pop(0)
        (corpus / f"{stem}.txt").write_text(f"{title}\n\n{text}\n", encoding="utf-8")
        before = current_build(index)
        proc = start_index(["index", "--rebuild"], env, tmp / f"{stem}.log")
        if lane == 0:
            delay = rng.uniform(0.2, typical.total)
            when = f"{delay:.1f}s after the start"
        else:
            while proc.poll() is None and not partial_builds(index):
                time.sleep(0.02)
            delay = rng.uniform(0, typical.writing)
            when = f"{delay:.1f}s into the build"
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        if proc.wait() != -signal.SIGKILL:  # finished before the kill: a build like any other
            assert proc.returncode == 0, (tmp / f"{stem}.log").read_text()
            log.append(f"lane {lane}: finished before the kill at {when}")
            served = (question, fact)
            continue
        # killed: the build pointed to is whole and answers; it is the previous one unless the
        # kill came after the switch (while the process was cleaning up or exiting)
        after = assert_serving_build_is_whole(index)
        switched = after != before
        if switched:
            assert_serves(index, embedder, question, fact)
        else:
            assert_serves(index, embedder, *served)
            assert_does_not_serve(index, embedder, question, fact)
        leftovers = partial_builds(index)
        resumable = [p for p in leftovers if (index / "builds" / p / "resume.json").is_file()]
        # a rerun finishes, carries on what the killed build left (or clears it when it was
        # killed before it could be resumed), and serves the new document
        rerun = run_cli(["index", "--rebuild"], env)
        assert rerun.returncode in (0, 6), rerun.stderr
        assert "Traceback" not in rerun.stderr
        resumed = "(resumed an interrupted build)" in rerun.stderr
        assert resumed == bool(resumable) or "cannot resume" in rerun.stderr, rerun.stderr
        assert partial_builds(index) == []
        assert assert_serving_build_is_whole(index) not in (before, after)
        assert_serves(index, embedder, question, fact)
        served = (question, fact)
        kills += 1
        tally.add(kills_survived=1)
        landed = (
            "after the switch" if switched
            else "mid-build, a .partial left behind" if leftovers
            else "before the build started"
        )  # fmt: skip
        done = re.search(r"\((\d+) embedded, (\d+) reused", rerun.stderr)
        how = f"{'resumed' if resumed else 'rebuilt'}: {done[1]} embedded, {done[2]} reused"
        if resumed:
            tally.add(builds_resumed=1)
        log.append(f"lane {lane}: killed {when} ({landed}); rerun {how} in {rerun.seconds:.1f}s")
    return log


def test_kill_9_during_indexing(
    real_index: Path, real_embedder: Embedder, tmp_path: Path, tally: Tally
) -> None:
    lanes = [tmp_path / f"lane{lane}" for lane in range(KILL_LANES)]
    for lane in lanes:  # each lane: the corpus, and its index as the previous build
        copy_corpus(lane / "corpus")
        copy_index(real_index, lane / "index")
    # a typical run: one uninterrupted `index --rebuild`, with a new document
    stem, title, text, question, fact = FACTS[0]
    (lanes[0] / "corpus" / f"{stem}.txt").write_text(f"{title}\n\n{text}\n", encoding="utf-8")
    env = cli_env(
        lanes[0] / "corpus", lanes[0] / "index", lanes[0] / "data", index_batch=KILL_BATCH
    )
    typical = timed_index(["index", "--rebuild"], env, lanes[0] / "index", tmp_path / "first.log")
    assert_serves(lanes[0] / "index", real_embedder, question, fact)
    with ThreadPoolExecutor(max_workers=KILL_LANES) as pool:
        runs = [
            pool.submit(kill_lane, n, lane, typical, real_embedder, tally)
            for n, lane in enumerate(lanes)
        ]
        logs = [line for run in runs for line in run.result()]
    print(
        f"\na typical `index --rebuild`: {typical.total:.1f}s, the build starting after "
        f"{typical.building:.1f}s and switching {typical.writing:.1f}s later\n" + "\n".join(logs)
    )
    print(f"kills survived: {KILL_LANES * KILLS_PER_LANE} (assistant index)")


# -- kill -9 during feedback writes ----------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
from assistant.records.feedback import FeedbackStore
store = FeedbackStore(Path(sys.argv[1]))
print("ready", flush=True)
n = int(sys.stdin.readline())
first = True
while True:
    store.add(f"question {n}", "answer " * 40, 1 if n % 2 else -1, comment=f"comment {n}")
    if first:
        print("writing", flush=True)
        first = False
    n += 1
"""
FEEDBACK_ROUNDS = 5


def writer(data: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_feedback_survives_kill_9_during_writes(tmp_path: Path, tally: Tally) -> None:
    rng = random.Random(SEED)
    data = tmp_path / "data"
    store = FeedbackStore(data)
    counts = [0]
    upcoming = writer(data)
    try:
        for _ in range(FEEDBACK_ROUNDS):
            proc, upcoming = upcoming, None
            assert proc.stdout is not None
            assert proc.stdin is not None
            assert proc.stdout.readline() == "ready\n"
            proc.stdin.write(f"{counts[-1]}\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "writing\n"
            upcoming = writer(data)  # the next one starts up while this one writes
            time.sleep(rng.uniform(0.05, 0.6))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL

            with sqlite3.connect(data / "feedback.sqlite3") as db:
                assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            rows = store.rows()
            # every committed row is there, in order, each exactly once: no gap, no torn row
            assert [r["question"] for r in rows] == [f"question {n}" for n in range(len(rows))]
            assert all(r["comment"] == f"comment {n}" for n, r in enumerate(rows))
            ids = [r["id"] for r in rows]
            assert ids == sorted(set(ids))
            assert len(rows) > counts[-1]  # the writer got somewhere before it was killed
            counts.append(len(rows))
            tally.add(kills_survived=1)
    finally:
        if upcoming is not None:
            upcoming.kill()
            upcoming.wait()
    row = store.add("after the kills", "still writable", 1)
    assert store.rows()[-1]["id"] == row
    assert len(store.rows()) == counts[-1] + 1
    print(f"\nfeedback rows after each kill: {counts[1:]}")


# -- read-only index folder, full disk -------------------------------------------------------

NEW_DOC = FACTS[0]
FULL_AT = 800  # blocks of 512 bytes: 400 kB, past the start of a build, short of its end


def _full_disk(blocks: int) -> list[str]:
    """A command prefix: no file may grow past ``blocks`` x 512 bytes (EFBIG, as on a full
    disk); SIGXFSZ ignored (kept across exec), so a write fails with an error instead of killing
    the process."""
    return ["sh", "-c", f'trap "" XFSZ; ulimit -f {blocks} && exec "$@"', "sh"]


def _read_only_mounts_work(folder: Path) -> bool:
    """Whether this machine lets us bind-mount a folder read-only in a private mount namespace."""
    if shutil.which("unshare") is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" '
         '&& ! touch "$1/x" 2>/dev/null', "sh", str(folder)],
        capture_output=True, check=False,
    )  # fmt: skip
    return probe.returncode == 0


def _read_only(index: Path) -> list[str]:
    """A command prefix running the rest with ``index`` read-only (for that process only)."""
    script = (
        'dir="$1"; shift; '
        'mount --bind "$dir" "$dir" && mount -o remount,bind,ro "$dir" && exec "$@"'
    )
    return ["unshare", "-m", "sh", "-c", script, "sh", str(index)]


FAULTS = ["index-under-a-file", "read-only-index", "disk-full-chroma", "disk-full-copy"]


def _fault_run(name: str, tmp: Path, real_index: Path) -> tuple[Run, Path | None]:
    """Run `assistant index` under one fault; returns the run and the index that must survive."""
    corpus = copy_corpus(tmp / "corpus")
    stem, title, text, _, _ = NEW_DOC
    (corpus / f"{stem}.txt").write_text(f"{title}\n\n{text}\n", encoding="utf-8")
    index = copy_index(real_index, tmp / "index")
    env = cli_env(corpus, index, tmp / "data")
    if name == "index-under-a-file":
        (tmp / "not-a-folder").write_text("a file where the index folder's parent should be")
        env = cli_env(corpus, tmp / "not-a-folder" / "index", tmp / "data")
        return run_cli(["index"], env), None
    if name == "read-only-index":
        if not _read_only_mounts_work(tmp / "probe"):
            pytest.skip("no private read-only bind mounts here (needs unshare and CAP_SYS_ADMIN)")
        return run_cli(["index"], env, prefix=_read_only(index)), index
    if name == "disk-full-chroma":  # --rebuild: no copy, Chroma's own writes hit the limit
        return run_cli(["index", "--rebuild"], env, prefix=_full_disk(FULL_AT)), index
    # an update copies the previous Chroma files first; the limit is below their size
    assert max(f.stat().st_size for f in index.rglob("*") if f.is_file()) > FULL_AT * 512
    return run_cli(["index"], env, prefix=_full_disk(FULL_AT)), index


@pytest.fixture(scope="module")
def fault_runs(
    real_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[tuple[Run, Path | None]]]]:
    """The four runs start together (each loads the model), each checked by its own test."""
    with ThreadPoolExecutor(max_workers=len(FAULTS)) as pool:
        yield {
            name: pool.submit(_fault_run, name, tmp_path_factory.mktemp(name), real_index)
            for name in FAULTS
        }


@pytest.mark.parametrize("fault", FAULTS)
def test_index_fault_is_one_clear_line(
    fault: str,
    fault_runs: dict[str, Future[tuple[Run, Path | None]]],
    real_embedder: Embedder,
    tally: Tally,
) -> None:
    run, index = fault_runs[fault].result()
    line = assert_one_line_error(run)
    expected = {
        "index-under-a-file": "cannot write to the index folder",
        "read-only-index": "cannot write to the index folder",
        "disk-full-chroma": "building the index failed",
        "disk-full-copy": "building the index failed",
    }[fault]
    assert expected in line
    assert "[(" not in line  # one reason a person can read, not the repr of a list of them
    if index is not None:  # the previous index is untouched and still answers
        assert partial_builds(index) == []
        assert_serving_build_is_whole(index)
        assert_serves(index, real_embedder, CCG_QUESTION, CCG_FACT)
        assert_serves_not_new(index, real_embedder)
    print(f"\n{fault}: exit {run.returncode}: {line}")


def assert_serves_not_new(index: Path, embedder: Embedder) -> None:
    _, _, _, question, fact = NEW_DOC
    assert_does_not_serve(index, embedder, question, fact)
