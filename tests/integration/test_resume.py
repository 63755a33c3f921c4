"""A first build killed with SIGKILL part-way is resumed by the next `assistant index`: the
chunks it had written are kept, only the rest are embedded, and the result is the same index an
uninterrupted build makes. Real processes, the bundled model, small write batches."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli_subprocess import base_env, cli

from assistant.embeddings import BUNDLED_MODEL
from assistant.index import built_backend, open_index

pytestmark = pytest.mark.slow

REAL_CORPUS = Path(__file__).resolve().parents[2] / "corpus"

BATCH = 8
PROGRESS = re.compile(r"embedding chunks:.*?(\d+)/(\d+)")


def written(log: Path) -> tuple[int, int]:
    """(chunks written, chunks to write) as the progress bar last said."""
    found = PROGRESS.findall(log.read_text(encoding="utf-8", errors="replace"))
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


def contents(index: Path) -> tuple[set[str], int, int]:
    snap = open_index(index, BUNDLED_MODEL, embed_backend=built_backend(index) or "torch")
    try:
        return snap.store.ids(), snap.units.count(), len(snap.lexical)
    finally:
        snap.close()


def test_killed_first_build_is_resumed_and_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    for folder in (killed, whole):
        shutil.copytree(REAL_CORPUS, folder / "corpus")
    env = base_env(killed, index_batch=str(BATCH))
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "assistant.cli", "index"], env=env, cwd=killed,
            stdout=out, stderr=out,
        )  # fmt: skip
    deadline = time.monotonic() + 240
    while written(log)[0] < 2 * BATCH and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    done, total = written(log)
    assert proc.poll() is None, f"the build ended before it could be killed: {log.read_text()}"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert 2 * BATCH <= done < total, log.read_text()

    index = killed / "index"
    assert not (index / "CURRENT").exists()  # nothing served yet: it was the first build
    [partial] = (index / "builds").glob("*.partial")
    assert (partial / "resume.json").is_file()

    rerun = cli(["index"], env, killed)
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert "(resumed an interrupted build)" in rerun.stderr
    counts = re.search(r"as (\d+) chunks \((\d+) embedded, (\d+) reused, 0 removed\)", rerun.stderr)
    assert counts, rerun.stderr
    chunks, embedded, reused = map(int, counts.groups())
    assert chunks == total
    assert reused >= done  # what was written before the kill is kept
    assert embedded == total - reused
    assert not list((index / "builds").glob("*.partial"))

    reference = cli(["index"], base_env(whole, index_batch=str(BATCH)), whole)  # in one go
    assert reference.returncode == 0, reference.stderr
    assert contents(index) == contents(whole / "index")
    found = cli(["search", "Who hosts Specialised Commissioning?", "--json"], env, killed)
    assert found.returncode == 0, found.stderr
    assert "Leicestershire" in found.stdout
