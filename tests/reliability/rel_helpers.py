"""Helpers for the reliability suite: the CLI as a subprocess, corpus copies, in-process checks."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.answer.calibration import Calibration
from assistant.index import IndexHandle
from assistant.pipeline import Assistant
from devtools.servers import REPO

if TYPE_CHECKING:
    from assistant.embeddings import Embedder

CORPUS = REPO / "corpus"
CASES = REPO / "eval" / "cases.jsonl"
CLI = [sys.executable, "-m", "assistant.cli"]

#: an answerable corpus question and a fact its answer holds (tests/integration checks the same)
CCG_QUESTION = "How many CCGs manage most of the NHS commissioning budget?"
CCG_FACT = "209"

#: the real embedder is shared by threads of the test process; one question at a time
_EMBED_LOCK = threading.Lock()


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0


@dataclass
class Tally:
    requests_sent: int = 0
    errors: int = 0
    kills_survived: int = 0
    bad_inputs_tried: int = 0
    #: tests of the security review's findings (tests/reliability/test_review_*.py) run
    review_findings_checked: int = 0
    builds_resumed: int = 0
    #: channel → {"requests", "p50_ms", "p95_ms", "seconds", ...}
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    used: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            self.used = True
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def record_latency(self, channel: str, **numbers: float) -> None:
        with self._lock:
            self.used = True
            self.latency[channel] = numbers

    def summary(self) -> str:
        return (
            f"reliability: {self.requests_sent} requests sent, {self.errors} errors, "
            f"{self.kills_survived} kills survived ({self.builds_resumed} builds resumed), "
            f"{self.bad_inputs_tried} bad inputs tried, "
            f"{self.review_findings_checked} security review checks passed"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "requests_sent": self.requests_sent,
            "errors": self.errors,
            "kills_survived": self.kills_survived,
            "bad_inputs_tried": self.bad_inputs_tried,
            "review_findings_checked": self.review_findings_checked,
            "latency": self.latency,
        }


def cases() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines() if line]


def cli_env(corpus: Path, index: Path, data: Path, **assistant: str) -> dict[str, str]:
    """The environment of a CLI or server process: this one's, with only the given ASSISTANT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ASSISTANT_CORPUS_DIR=str(corpus),
        ASSISTANT_INDEX_DIR=str(index),
        ASSISTANT_DATA_DIR=str(data),
    )
    env.update({f"ASSISTANT_{k.upper()}": v for k, v in assistant.items()})
    return env


def run_cli(
    args: Sequence[str], env: dict[str, str], *, prefix: Sequence[str] = (), **popen: Any
) -> Run:
    """`assistant ARGS` in its own process (``prefix``: a command that execs the rest)."""
    started = time.monotonic()
    proc = subprocess.run(
        [*prefix, *CLI, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
        **popen,
    )
    return Run(tuple(args), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def copy_corpus(dest: Path) -> Path:
    shutil.copytree(CORPUS, dest)
    return dest


def copy_index(src: Path, dest: Path) -> Path:
    """A copy of a built index folder (the lock file left out)."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


def current_build(index_dir: Path) -> str:
    raw = json.loads((index_dir / "CURRENT").read_text(encoding="utf-8"))
    return str(raw["build"])


def partial_builds(index_dir: Path) -> list[str]:
    builds = index_dir / "builds"
    return sorted(p.name for p in builds.glob("*.partial")) if builds.is_dir() else []


def assert_serving_build_is_whole(index_dir: Path) -> str:
    """CURRENT names a finished build (meta.json present, not a .partial folder); returns it."""
    build = current_build(index_dir)
    folder = index_dir / "builds" / build
    assert not build.endswith(".partial"), build
    assert (folder / "meta.json").is_file(), f"CURRENT points to {folder}, which has no meta.json"
    assert (folder / "chroma").is_dir(), sorted(folder.iterdir())
    assert (folder / "lexical").is_dir(), sorted(folder.iterdir())
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    assert meta["build_id"] == build
    return build


def error_lines(stderr: str) -> list[str]:
    """stderr without the progress bars: what a person reads."""
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines()]
    return [line for line in lines if line and not line.startswith(("reading files", "embedding"))]


def assert_one_line_error(run: Run) -> str:
    assert run.returncode not in (0, 6), run
    assert "Traceback" not in run.stderr, run.stderr
    lines = error_lines(run.stderr)
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("assistant: error: "), run.stderr
    return lines[0]


@contextmanager
def opened_assistant(index_dir: Path, embedder: Embedder) -> Iterator[Assistant]:
    """The assistant over ``index_dir`` in this process (the real model, no server)."""
    handle = IndexHandle.of(index_dir, embedder)
    try:
        handle.get()
        yield Assistant(handle, embedder, calibration=Calibration.load())
    finally:
        for snap in (handle._snapshot, handle._retired):
            if snap is not None:
                snap.close()


def ask_in_process(index_dir: Path, embedder: Embedder, question: str) -> Any:
    with _EMBED_LOCK, opened_assistant(index_dir, embedder) as assistant:
        return assistant.ask(question)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
