"""Shared fixtures.

Every test runs with every ``ASSISTANT_*`` path pointing under its own ``tmp_path`` and the
Hugging Face hub offline, so nothing is written into the repository's corpus/, index/ or data/
and nothing is downloaded. The real model and the real index are built once per session.
"""

from __future__ import annotations

import os

# before anything imports huggingface_hub (it reads these at import time)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.register_assert_rewrite("fakes")  # its shared checks report like test assertions

from fakes import FakeEmbedder, always_answer, always_decline, write_corpus  # noqa: E402

from assistant.answer.calibration import Calibration  # noqa: E402
from assistant.index import BuildReport, IndexHandle, build_index  # noqa: E402
from assistant.pipeline import Assistant  # noqa: E402

if TYPE_CHECKING:
    from assistant.embeddings import Embedder

ROOT = Path(__file__).resolve().parents[1]
REAL_CORPUS = ROOT / "corpus"
MODEL_CACHE = ROOT / ".cache" / "models"

#: variables third-party code or ``assistant.cli.prepare_runtime`` may set; restored per test
_RUNTIME_VARS = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "ANONYMIZED_TELEMETRY",
    "TOKENIZERS_PARALLELISM",
    "TRANSFORMERS_VERBOSITY",
)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ASSISTANT_* path under tmp_path; offline; runtime variables restored afterwards."""
    for name in list(os.environ):
        if name.startswith("ASSISTANT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", str(tmp_path / "env-index"))
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("ASSISTANT_CORPUS_DIR", str(tmp_path / "env-corpus"))
    # the OpenVINO export of the bundled model: made once, shared by every test and server
    monkeypatch.setenv("ASSISTANT_MODEL_CACHE_DIR", str(MODEL_CACHE))
    for name in _RUNTIME_VARS:  # recorded, so whatever a test (or the CLI) sets is undone
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


# -- fakes ----------------------------------------------------------------------------------------


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def answering() -> Calibration:
    return always_answer()


@pytest.fixture
def declining() -> Calibration:
    return always_decline()


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def tiny_index(tiny_corpus: Path, tmp_path: Path, fake_embedder: FakeEmbedder) -> Path:
    """The tiny corpus indexed with the fake embedder; returns the index folder."""
    index_dir = tmp_path / "index"
    build_index(tiny_corpus, index_dir, fake_embedder)
    return index_dir


@pytest.fixture
def tiny_handle(tiny_index: Path, fake_embedder: FakeEmbedder) -> Iterator[IndexHandle]:
    handle = IndexHandle.of(tiny_index, fake_embedder)
    yield handle
    snapshot = handle._snapshot
    if snapshot is not None:
        snapshot.close()


@pytest.fixture
def tiny_assistant(
    tiny_handle: IndexHandle, fake_embedder: FakeEmbedder, answering: Calibration
) -> Assistant:
    return Assistant(tiny_handle, fake_embedder, calibration=answering)


# -- the real model and corpus (integration) ------------------------------------------------------


@pytest.fixture(scope="session")
def real_embedder() -> Embedder:
    from assistant.embeddings import make_embedder

    return make_embedder(cache_dir=MODEL_CACHE)  # the default backend: OpenVINO where it runs


@pytest.fixture(scope="session")
def real_build(
    tmp_path_factory: pytest.TempPathFactory, real_embedder: Embedder
) -> tuple[Path, BuildReport]:
    index_dir = tmp_path_factory.mktemp("real-index")
    report = build_index(REAL_CORPUS, index_dir, real_embedder)
    return index_dir, report


@pytest.fixture(scope="session")
def real_index(real_build: tuple[Path, BuildReport]) -> Path:
    """The folder of an index of the repository's corpus, built with the bundled model."""
    return real_build[0]


@pytest.fixture(scope="session")
def real_handle(real_index: Path, real_embedder: Embedder) -> Iterator[IndexHandle]:
    handle = IndexHandle.of(real_index, real_embedder)
    yield handle
    if handle._snapshot is not None:
        handle._snapshot.close()


@pytest.fixture(scope="session")
def real_assistant(real_handle: IndexHandle, real_embedder: Embedder) -> Assistant:
    return Assistant(real_handle, real_embedder, calibration=Calibration.load())


# -- a real PostgreSQL (integration) ---------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL cluster (Debian's binaries) for the session: its SQLAlchemy URL.
    Missing binaries are a failure, not a skip: ``make services`` installs them."""
    from devtools.postgres import running_postgres
    from devtools.servers import ServerStartError

    stack = ExitStack()
    try:
        url = stack.enter_context(running_postgres(tmp_path_factory.mktemp("postgres")))
    except ServerStartError as err:
        pytest.fail(str(err), pytrace=False)
    with stack:
        yield url
