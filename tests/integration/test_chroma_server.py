"""Chroma server mode against a real `chroma run` on loopback: indexing, asking, incremental
re-indexing, the CLI and app.py configured by ASSISTANT_CHROMA_HOST/PORT, and the server going
away and coming back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from legacy import to_format_1
from servers import free_port, running_app

from assistant.answer.calibration import Calibration
from assistant.embeddings import Embedder
from assistant.errors import IndexNotBuiltError, StoreUnavailableError
from assistant.index import IndexHandle, build_index, collection_names
from assistant.index.chroma import ChromaServer, server_client
from assistant.pipeline import Assistant
from assistant.settings import DEFAULT_SEARCH_EF
from devtools import servers
from devtools.servers import ServerStartError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CCG = "How many CCGs manage most of the NHS commissioning budget?"
NEW_DOC = (
    "Quokka panel\n\nThe quokka liaison panel for commissioning meets on the ninth Thursday.\n"
)


class ChromaProcess(servers.ChromaProcess):
    """:class:`devtools.servers.ChromaProcess`, whose start failing fails the test."""

    def start(self) -> ChromaServer:  # type: ignore[override]
        try:
            host, port = super().start()
        except ServerStartError as err:
            pytest.fail(str(err))
        return ChromaServer(host, port)


@contextmanager
def chroma_run(path: Path, port: int) -> Iterator[ChromaServer]:
    process = ChromaProcess(path, port)
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    with chroma_run(tmp_path_factory.mktemp("chroma-data") / "db", free_port()) as srv:
        yield srv


def _corpus(tmp: Path) -> Path:
    corpus = tmp / "corpus"
    shutil.copytree(ROOT / "corpus", corpus)
    return corpus


def _assistant(index_dir: Path, embedder: Embedder, srv: ChromaServer) -> Assistant:
    handle = IndexHandle.of(index_dir, embedder, srv)
    return Assistant(handle, embedder, calibration=Calibration.load())


def test_index_ask_and_reindex_on_a_chroma_server(
    server: ChromaServer, real_embedder: Embedder, tmp_path: Path
) -> None:
    corpus, index_dir = _corpus(tmp_path), tmp_path / "index"
    first = build_index(corpus, index_dir, real_embedder, server=server)
    assert (first.embedded, first.reused) == (first.chunks, 0)
    name = collection_names(first.build_id, server)[0]
    client = server_client(server)
    assert name in {c.name for c in client.list_collections()}
    hnsw = client.get_collection(name).configuration["hnsw"]
    assert hnsw is not None
    assert hnsw["ef_search"] == DEFAULT_SEARCH_EF  # set by the build, over HTTP
    folder = index_dir / "builds" / first.build_id
    assert not (folder / "chroma").exists()  # the passages' vectors are on the server
    assert (folder / "sentences" / "vectors.f16").stat().st_size > 0  # sentences beside BM25
    assert (
        json.loads((index_dir / "builds" / first.build_id / "meta.json").read_text())["store"]
        == "server"
    )

    assistant = _assistant(index_dir, real_embedder, server)
    answer = assistant.ask(CCG)
    assert "209" in answer.answer
    assert assistant.index.get().describe()["store"] == f"chroma server {server}"

    again = build_index(corpus, index_dir, real_embedder, server=server)  # unchanged: no embedding
    assert (again.embedded, again.reused, again.removed) == (0, first.chunks, 0)
    (corpus / "quokka.txt").write_text(NEW_DOC, encoding="utf-8")
    third = build_index(corpus, index_dir, real_embedder, server=server)
    assert third.embedded == third.chunks - first.chunks > 0
    assert third.reused == first.chunks
    quokka = assistant.ask("When does the quokka liaison panel meet?")  # served without restart
    assert "ninth Thursday" in quokka.answer
    # the first build is two builds old now: its collections are gone from the server
    left = {c.name for c in client.list_collections()}
    assert name not in left
    assert collection_names(third.build_id, server)[0] in left


def test_interrupted_build_on_a_chroma_server_is_resumed(
    server: ChromaServer, real_embedder: Embedder, tmp_path: Path
) -> None:
    corpus, index_dir = _corpus(tmp_path), tmp_path / "index"

    def ctrl_c_after_16(stage: str, done: int, total: int) -> None:
        if stage == "embed" and done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(corpus, index_dir, real_embedder, server=server, batch=8,
                    progress=ctrl_c_after_16)  # fmt: skip
    [partial] = (index_dir / "builds").glob("*.partial")
    build_id = partial.name.removesuffix(".partial")
    client = server_client(server)
    kept = client.get_collection(collection_names(build_id, server)[0]).count()
    assert kept >= 16  # its collections stay on the server for the next build

    report = build_index(corpus, index_dir, real_embedder, server=server, batch=8)
    assert report.resumed is True
    assert report.build_id == build_id
    assert (report.embedded, report.reused) == (report.chunks - kept, kept)
    assert "209" in _assistant(index_dir, real_embedder, server).ask(CCG).answer


def test_an_index_built_for_the_server_is_not_opened_as_embedded(
    server: ChromaServer, real_embedder: Embedder, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    build_index(_corpus(tmp_path), index_dir, real_embedder, server=server)
    with pytest.raises(IndexNotBuiltError, match="ASSISTANT_CHROMA_HOST"):
        IndexHandle.of(index_dir, real_embedder).get()


def test_no_server_is_a_clear_error(real_embedder: Embedder, tmp_path: Path) -> None:
    gone = ChromaServer("127.0.0.1", free_port())
    with pytest.raises(StoreUnavailableError, match="not reachable"):
        build_index(_corpus(tmp_path), tmp_path / "index", real_embedder, server=gone)
    assert not list((tmp_path / "index" / "builds").iterdir())  # nothing half-built left


def _wait_for(check: Callable[[], bool], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def test_cli_and_app_in_server_mode_survive_the_server_going_away(tmp_path: Path) -> None:
    chroma = ChromaProcess(tmp_path / "chroma-db", free_port())
    settings = {
        "ASSISTANT_CORPUS_DIR": str(_corpus(tmp_path)),
        "ASSISTANT_INDEX_DIR": str(tmp_path / "index"),
        "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
        "ASSISTANT_CHROMA_HOST": "127.0.0.1",
        "ASSISTANT_CHROMA_PORT": str(chroma.port),
    }
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")},
        "HF_HUB_OFFLINE": "1",
        **settings,
    }
    cli = [sys.executable, "-m", "assistant.cli"]
    chroma.start()
    try:
        built = subprocess.run(
            [*cli, "index"], env=env, capture_output=True, text=True, timeout=300
        )
        assert built.returncode == 0, built.stderr
        assert f"Chroma server 127.0.0.1:{chroma.port}" in built.stderr
        asked = subprocess.run(
            [*cli, "ask", CCG, "--json"], env=env, capture_output=True, text=True, timeout=300
        )
        assert asked.returncode == 0, asked.stderr
        assert "209" in json.loads(asked.stdout)["answer"]

        with running_app(settings, tmp_path / "app.log") as base:

            def ask() -> httpx.Response:
                return httpx.post(f"{base}/api/ask", json={"question": CCG}, timeout=60)

            assert ask().status_code == 200
            chroma.stop()  # the server goes away
            health = httpx.get(f"{base}/api/health", timeout=30)
            assert health.status_code == 503
            assert health.json()["status"] == "unavailable"
            assert "Chroma server" in health.json()["error"]
            refused = ask()
            assert refused.status_code == 503
            assert "not reachable" in refused.json()["error"]
            assert "Traceback" not in refused.text
            chroma.start()  # and comes back: no restart of the app
            assert _wait_for(lambda: httpx.get(f"{base}/api/health").status_code == 200)
            back = ask()
            assert back.status_code == 200
            assert "209" in back.json()["answer"]
    finally:
        chroma.stop()


def test_format_1_index_on_a_chroma_server_is_moved_without_embedding(
    server: ChromaServer, real_embedder: Embedder, tmp_path: Path
) -> None:
    """An index of format 1 kept its sentence vectors in a second server collection: it still
    answers, and the next build copies them into the build folder instead of embedding."""
    corpus, index_dir = _corpus(tmp_path), tmp_path / "index"
    first = build_index(corpus, index_dir, real_embedder, server=server)
    client = server_client(server)
    units = collection_names(first.build_id, server)[1]
    moved = to_format_1(index_dir / "builds" / first.build_id, client, units)
    assert moved > first.chunks
    assert "209" in _assistant(index_dir, real_embedder, server).ask(CCG).answer

    second = build_index(corpus, index_dir, real_embedder, server=server)
    assert (second.embedded, second.reused) == (0, first.chunks)
    handle = IndexHandle.of(index_dir, real_embedder, server)
    assert handle.get().units.count() == moved
    assert "209" in Assistant(handle, real_embedder, calibration=Calibration.load()).ask(CCG).answer
    names = {c.name for c in client.list_collections()}
    assert collection_names(second.build_id, server)[1] not in names  # no sentence collection
