"""The OpenVINO backend for real: exported from the bundled model, cached, checked against
torch, recorded by a build; and the fall back to torch when it cannot run."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import write_corpus

from assistant import embeddings
from assistant.embeddings import SentenceTransformerEmbedder, make_embedder
from assistant.embeddings import runtime as ov_runtime
from assistant.errors import IndexModelMismatchError
from assistant.index import build_index, open_index
from assistant.ingest import ingest
from assistant.pipeline import Assistant
from assistant.settings import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def torch_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """The guidance documents' paragraphs: real text the backends must agree on."""
    docs = ingest(ROOT / "corpus").documents
    paragraphs = [p.strip() for d in docs for p in d.text.split("\n\n") if len(p.strip()) > 40]
    return paragraphs[:200]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache of this module's own: the first load below exports for real."""
    return tmp_path_factory.mktemp("model-cache")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_export_is_made_once_then_reused(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="assistant.embeddings")
    first = make_embedder(backend="openvino", precision="f32", cache_dir=cache)
    assert first.backend == "openvino-f32"
    exports = sorted(p.name for p in cache.iterdir())
    assert len(exports) == 1, exports
    assert exports[0].endswith("-fp32")
    assert (cache / exports[0] / "model.xml").is_file()
    assert "exporting the embedding model to OpenVINO" in caplog.text
    caplog.clear()
    again = make_embedder(backend="openvino", precision="f32", cache_dir=cache)
    assert again.backend == "openvino-f32"
    assert "exporting" not in caplog.text
    assert sorted(p.name for p in cache.iterdir()) == exports  # nothing new, no temp left over
    assert _warnings(caplog) == []


@pytest.mark.parametrize(("precision", "at_least"), [("f32", 0.99999), ("bf16", 0.999)])
def test_openvino_vectors_agree_with_torch(
    cache: Path,
    torch_embedder: SentenceTransformerEmbedder,
    texts: list[str],
    precision: str,
    at_least: float,
) -> None:
    if precision not in ov_runtime.cpu_precisions():
        pytest.skip(f"this CPU offers OpenVINO no {precision}")
    ov = make_embedder(backend="openvino", precision=precision, cache_dir=cache, batch_size=16)
    assert ov.backend == f"openvino-{precision}"
    got, want = ov.encode(texts), torch_embedder.encode(texts)
    assert got.shape == want.shape == (len(texts), 384)
    assert np.linalg.norm(got, axis=1) == pytest.approx(np.ones(len(texts)), abs=1e-4)
    cosines = np.sum(got * want, axis=1)
    assert float(cosines.mean()) >= at_least
    assert float(cosines.min()) >= at_least - 1e-3
    # the same text gives the same vector alone as in a batch of others (padding left out)
    alone = ov.encode([texts[3]])[0]
    assert float(alone @ got[3]) > 0.9999
    assert ov.encode([]).shape == (0, 384)


def _falls_back(caplog: pytest.LogCaptureFixture, cache: Path, why: str, **kw: str) -> None:
    caplog.clear()
    emb = make_embedder(cache_dir=cache, **kw)
    assert emb.backend == "torch"
    warned = _warnings(caplog)
    assert len(warned) == 1, [r.getMessage() for r in warned]
    assert warned[0].exc_info is None  # one line, no traceback
    message = warned[0].getMessage()
    assert message.startswith("embedding with torch: the OpenVINO backend is unavailable here")
    assert why in message, message


def test_without_the_runtime_torch_embeds(
    cache: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino fails
    _falls_back(caplog, cache, "not installed", backend="openvino")
    _falls_back(caplog, cache, "not installed")  # auto likewise


def test_a_failed_export_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("conversion of aten::something failed")

    monkeypatch.setattr(ov_runtime, "_export", broken)
    _falls_back(caplog, tmp_path, "exporting to OpenVINO failed: conversion of aten::something")
    assert [p.name for p in tmp_path.iterdir()] == []  # the half-made export is cleared away


def test_auto_tries_the_next_precision_before_torch(
    cache: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "bf16" not in ov_runtime.cpu_precisions():
        pytest.skip("this CPU offers OpenVINO no bf16")
    # a model whose bf16 vectors drift further from torch's than this bar: f32 serves instead
    monkeypatch.setattr(ov_runtime, "MIN_PROBE_COSINE", 0.999999)
    caplog.set_level(logging.INFO, logger="assistant.embeddings")
    emb = make_embedder(cache_dir=cache)
    assert emb.backend == "openvino-f32"
    assert "OpenVINO bf16 unavailable: bf16: openvino-bf16 vectors agree" in caplog.text
    assert _warnings(caplog) == []


def test_a_precision_the_cpu_lacks_falls_back(
    cache: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ov_runtime, "cpu_precisions", lambda: frozenset({"f32"}))
    _falls_back(caplog, cache, "no bf16", backend="openvino", precision="bf16")


def test_an_export_that_disagrees_with_torch_is_refused(
    cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_embedder(backend="openvino", precision="f32", cache_dir=cache)  # exported
    spoiled = tmp_path / "cache"
    shutil.copytree(cache, spoiled)
    for probe in spoiled.glob("*/probe.npy"):  # as if the export had drifted from torch
        reference = np.load(probe)
        np.save(probe, np.roll(reference, 1, axis=1))
    _falls_back(caplog, spoiled, "agree with torch's at mean cosine", backend="openvino",
                precision="f32")  # fmt: skip


def test_a_damaged_export_falls_back(
    cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_embedder(backend="openvino", precision="f32", cache_dir=cache)  # exported
    for name in ("model.xml", "probe.npy"):  # e.g. a disk that filled up mid-write
        damaged = tmp_path / name
        shutil.copytree(cache, damaged)
        for path in damaged.glob(f"*/{name}"):
            path.write_bytes(b"<not what it should be")
        _falls_back(caplog, damaged, "delete the folder to export again", backend="openvino",
                    precision="f32")  # fmt: skip


def test_a_build_records_its_backend_and_questions_follow_it(
    tmp_path: Path, cache: Path, torch_embedder: SentenceTransformerEmbedder
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    index_dir = tmp_path / "index"
    ov = make_embedder(backend="openvino", precision="f32", cache_dir=cache)
    first = build_index(corpus, index_dir, ov)
    snap = open_index(index_dir, ov.model_name, embed_backend=ov.backend)
    assert snap.meta.embed_backend == "openvino-f32"
    assert snap.describe()["embed_backend"] == "openvino-f32"
    snap.close()

    # asked with another backend: refused with what to do, not answered from other vectors
    with pytest.raises(IndexModelMismatchError) as refused:
        open_index(index_dir, torch_embedder.model_name, embed_backend="torch")
    assert "embedded with the openvino-f32 backend" in str(refused.value)
    assert "assistant index" in str(refused.value)

    # auto: the assistant embeds questions as the serving build was embedded
    settings = Settings(index_dir=index_dir, model_cache_dir=cache)
    assistant = Assistant.from_settings(settings)
    try:
        assert assistant.embedder.backend == "openvino-f32"
        passages = assistant.search("Who manages the widget budget?")
        assert passages
        assert "42 regional boards" in passages[0].chunk.text
    finally:
        assistant.close()
    with pytest.raises(IndexModelMismatchError):
        Assistant.from_settings(settings.with_(embed_backend="torch"))

    # a change of backend re-embeds everything, however little the corpus changed
    second = build_index(corpus, index_dir, torch_embedder)
    assert second.reused == 0
    assert second.embedded == first.chunks
    assert open_index(index_dir, torch_embedder.model_name).meta.embed_backend == "torch"


def test_the_default_takes_openvino_where_it_runs(cache: Path) -> None:
    emb = embeddings.make_embedder(cache_dir=cache)
    have = ov_runtime.cpu_precisions()
    expected = "torch" if not have else ("openvino-bf16" if "bf16" in have else "openvino-f32")
    assert emb.backend == expected


def test_openvino_sends_no_telemetry(tmp_path: Path) -> None:
    """Importing OpenVINO and exporting the model send usage events to Google Analytics unless
    told not to: here its telemetry package never loads, and no client id is written."""
    code = (
        "import sys; from pathlib import Path\n"
        "from assistant.embeddings import make_embedder\n"
        f"cache = Path({str(tmp_path / 'c')!r})\n"
        "emb = make_embedder(backend='openvino', precision='f32', cache_dir=cache)\n"
        "assert emb.backend == 'openvino-f32', emb.backend\n"
        "assert sys.modules.get('openvino_telemetry') is None\n"
        "from openvino.tools.ovc import telemetry_utils\n"
        "assert telemetry_utils.tm.__name__.endswith('telemetry_stub'), telemetry_utils.tm\n"
    )
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "home" / "intel").exists()  # OpenVINO's telemetry client id
