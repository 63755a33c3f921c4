"""The OpenVINO embedding backend: the same sentence-transformers model, run by another runtime.

On first use the model is exported locally (``openvino.convert_model`` of its torch module, from
the local files only) into a cache folder named by the settings; later loads read the export from
there. Texts go through the model's own tokenizer (``tokenizer.json``, truncated at the model's
``max_seq_length``), then its pooling as ``modules.json`` says, then normalisation: the steps
sentence-transformers takes, without torch. Precision is OpenVINO's inference precision: f32;
bf16 where the CPU has it (avx512_bf16 or AMX); int8 (weights and activations quantised with
NNCF, which must be installed).

An export is trusted only while its vectors agree with torch's: at export the torch model's
vectors of a few probe texts are stored beside it, and every load embeds them again and refuses
the backend (:class:`BackendUnavailableError`) if their mean cosine falls below
:data:`MIN_PROBE_COSINE`. The caller then embeds with torch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import threading
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from assistant.embeddings.base import UnitVectorEmbeddings
from assistant.errors import AssistantError

__all__ = [
    "MIN_PROBE_COSINE",
    "BackendUnavailableError",
    "OpenVINOEmbedder",
    "Pooling",
    "auto_precisions",
    "cpu_precisions",
    "openvino_offline",
]

log = logging.getLogger(__name__)

#: the agreement with torch an export must keep on the probe texts (mean cosine): the quality
#: bar at which the answers were measured to stay those of torch (docs/benchmarks.md)
MIN_PROBE_COSINE = 0.999
#: texts of no particular domain that every export is checked on against torch
PROBE_TEXTS = (
    "Who decides which services are bought for the local population?",
    "The committee meets every month and publishes its minutes on the website.",
    "Install the package, then run the command again with the new settings.",
    "A short sentence.",
    "Prices rose sharply in the third quarter, while demand for housing fell across the region "
    "and lenders tightened the conditions of new mortgages for first-time buyers.",
    "How do I reset my password if I no longer have access to the email address?",
    "Children aged five to eleven attend primary school; most then move to secondary school.",
    "The patient was referred to a specialist clinic after the results of the blood test.",
)


class BackendUnavailableError(AssistantError):
    """An embedding backend that cannot run here: runtime missing, export failed, CPU lacking
    the precision, or vectors that disagree with torch's."""


@dataclass(frozen=True)
class Pooling:
    """How token vectors become one vector, as the model's ``modules.json`` says."""

    mode: str  # "mean", "cls" or "max"
    max_seq_length: int

    @classmethod
    def of(cls, folder: Path) -> Pooling:
        try:
            modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
            bert = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise BackendUnavailableError(
                f"no sentence-transformers layout in {folder}: {err}"
            ) from err
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            raise BackendUnavailableError(f"modules {kinds} of {folder} are not supported")
        config_path = folder / modules[1]["path"] / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        modes = [m for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
                 if config.get(f"pooling_mode_{m}")]  # fmt: skip
        names = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}
        if len(modes) != 1 or modes[0] not in names:
            raise BackendUnavailableError(f"pooling {modes} of {folder} is not supported")
        return cls(mode=names[modes[0]], max_seq_length=int(bert.get("max_seq_length", 512)))

    def __call__(
        self, tokens: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]
    ) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Unit vectors from token vectors (batch × tokens × dims) and their attention mask."""
        tokens = tokens.astype(np.float32, copy=False)
        if self.mode == "cls":
            out = tokens[:, 0]
        elif self.mode == "max":
            out = np.where(mask[..., None] > 0, tokens, -1e9).max(axis=1)
        else:
            m = mask[..., None].astype(np.float32)
            out = (tokens * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.asarray(out / np.clip(norms, 1e-12, None), dtype=np.float32)


def openvino_offline() -> Any:
    """``openvino``, imported with its telemetry off. Importing OpenVINO, converting a model and
    NNCF's quantisation each send usage events to Google Analytics unless the user declined in a
    consent file; nothing here may reach the network, so the ``openvino_telemetry`` package is
    made unimportable first, and OpenVINO and NNCF fall back to their own no-op stubs."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino


def cpu_precisions() -> frozenset[str]:
    """The inference precisions OpenVINO's CPU plugin offers on this machine (empty: none)."""
    try:
        ov = openvino_offline()
        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:
        return frozenset()
    named = {"FP32": "f32", "BF16": "bf16", "INT8": "int8"}
    return frozenset(named[c] for c in caps if c in named)


def auto_precisions() -> list[str]:
    """The precisions ``auto`` tries, fastest first: bf16 where the CPU has it, then f32."""
    have = cpu_precisions()
    return [p for p in ("bf16", "f32") if p in have] or ["f32"]


class OpenVINOEmbedder(UnitVectorEmbeddings):
    """A sentence-transformers model run by OpenVINO, returning unit vectors."""

    def __init__(
        self,
        model: str,
        location: Path,
        *,
        precision: str = "auto",
        batch_size: int = 64,
        cache_dir: Path,
        weights_sha256: str,
        verify: bool = True,
    ) -> None:
        try:
            ov = openvino_offline()
            from tokenizers import Tokenizer
        except ImportError as err:
            raise BackendUnavailableError(f"the OpenVINO runtime is not installed ({err})") from err
        have = cpu_precisions()
        if precision == "auto":
            precision = auto_precisions()[0]
        if precision not in have:
            raise BackendUnavailableError(f"this CPU offers no {precision} inference to OpenVINO")
        self.model_name = model
        self.backend = f"openvino-{precision}"
        self.batch_size = batch_size
        self.pooling = Pooling.of(location)
        self._tokenizer = _tokenizer(Tokenizer, location, self.pooling.max_seq_length)
        folder = _exported(location, weights_sha256, precision, cache_dir, self.pooling)
        config = {"INFERENCE_PRECISION_HINT": precision} if precision != "int8" else {}
        try:
            self._compiled = ov.Core().compile_model(folder / "model.xml", "CPU", config)
        except RuntimeError as err:
            raise BackendUnavailableError(
                f"OpenVINO cannot compile {folder} (delete the folder to export again): {err}"
            ) from err
        self._inputs = {i.get_any_name() for i in self._compiled.inputs}
        self._local = threading.local()
        self.dimension = int(self._compiled.outputs[0].get_partial_shape()[2].get_length())
        cosine = float(np.mean(np.sum(self.encode(PROBE_TEXTS) * _probe(folder), axis=1)))
        self.probe_cosine = cosine
        if verify and cosine < MIN_PROBE_COSINE:
            raise BackendUnavailableError(
                f"{self.backend} vectors agree with torch's at mean cosine {cosine:.5f} "
                f"(under {MIN_PROBE_COSINE})"
            )
        log.info("loaded embedding model %s with %s (%d dimensions, probe cosine to torch %.6f)",
                 model, self.backend, self.dimension, cosine)  # fmt: skip

    def encode(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Unit vectors, one row per text (batched longest first, as sentence-transformers)."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch([t.strip() for t in texts])
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        request = self._request()
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = len(encodings[rows[0]].ids)
            feed = {name: np.zeros((len(rows), width), dtype=np.int64) for name in
                    ("input_ids", "attention_mask", "token_type_ids")}  # fmt: skip
            for r, i in enumerate(rows):
                e = encodings[i]
                n = len(e.ids)
                feed["input_ids"][r, :n] = e.ids
                feed["attention_mask"][r, :n] = e.attention_mask
                feed["token_type_ids"][r, :n] = e.type_ids
            request.infer({k: v for k, v in feed.items() if k in self._inputs})
            tokens = request.get_output_tensor(0).data
            out[rows] = self.pooling(tokens, feed["attention_mask"])
        return out

    def _request(self) -> Any:
        """This thread's infer request (one compiled model, many threads asking at once)."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request


def _tokenizer(tokenizer_cls: Any, location: Path, max_length: int) -> Any:
    path = location / "tokenizer.json"
    if not path.is_file():
        raise BackendUnavailableError(f"no tokenizer.json in {location}")
    tok = tokenizer_cls.from_file(str(path))
    tok.no_padding()  # each batch is padded to its own longest text
    tok.enable_truncation(max_length=max_length)
    return tok


def _probe(folder: Path) -> np.ndarray[Any, np.dtype[np.float32]]:
    try:
        return np.asarray(np.load(folder / "probe.npy"), dtype=np.float32)
    except (OSError, ValueError) as err:
        raise BackendUnavailableError(
            f"the export in {folder} is damaged (delete the folder to export again): {err}"
        ) from err


def _exported(
    location: Path, sha256: str, precision: str, cache_dir: Path, pooling: Pooling
) -> Path:
    """The cached export of the model at ``location`` (exported now if missing): its IR is the
    same for f32 and bf16 (a compile-time hint), int8 has its own."""
    kind = "int8" if precision == "int8" else "fp32"
    version = re.sub(r"[^0-9A-Za-z.]+", "-", metadata.version("openvino"))
    folder = cache_dir / f"openvino-{version}-{sha256[:16]}-{kind}"
    if (folder / "model.xml").is_file() and (folder / "probe.npy").is_file():
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".export-{uuid.uuid4().hex}"
    log.info("exporting the embedding model to OpenVINO (%s) in %s: once", kind, folder)
    try:
        with warnings.catch_warnings():  # the tracer's notes on the model's Python branches
            warnings.simplefilter("ignore")
            _export(location, tmp, kind, pooling)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process exported it first: keep theirs
            if not (folder / "model.xml").is_file():
                raise
    except BackendUnavailableError:
        raise
    except Exception as err:
        raise BackendUnavailableError(f"exporting to OpenVINO failed: {err}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _export(location: Path, out: Path, kind: str, pooling: Pooling) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(location), device="cpu", local_files_only=True)
    example = st.tokenizer(list(PROBE_TEXTS), padding=True, truncation=True,
                           max_length=pooling.max_seq_length, return_tensors="pt")  # fmt: skip
    ov = openvino_offline()
    ir = ov.convert_model(st[0].auto_model, example_input=dict(example))
    if kind == "int8":
        ir = _quantised(ir, st, location, pooling.max_seq_length)
    out.mkdir(parents=True)
    ov.save_model(ir, out / "model.xml", compress_to_fp16=False)
    reference = st.encode(list(PROBE_TEXTS), normalize_embeddings=True, convert_to_numpy=True)
    np.save(out / "probe.npy", np.asarray(reference, dtype=np.float32))
    info = {"source": str(location), "kind": kind, "openvino": metadata.version("openvino")}
    (out / "export.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


def _quantised(ir: Any, st: Any, location: Path, max_length: int) -> Any:
    """``ir`` with int8 weights and activations (NNCF post-training quantisation), calibrated on
    the probe texts and the sentences of the model's own README."""
    try:
        openvino_offline()
        import nncf
    except ImportError as err:
        raise BackendUnavailableError(f"int8 needs NNCF (pip install nncf): {err}") from err
    texts = list(PROBE_TEXTS) + _readme_sentences(location / "README.md")
    batches = []
    for i in range(0, len(texts), 8):
        enc = st.tokenizer(texts[i : i + 8], padding=True, truncation=True,
                           max_length=max_length, return_tensors="np")  # fmt: skip
        batches.append({k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    return nncf.quantize(ir, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(batches))  # fmt: skip


def _readme_sentences(path: Path, limit: int = 200) -> list[str]:
    """Sentences of prose (no code, tables or links) from a model card, for calibration."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    prose = re.sub(r"```.*?```", " ", text, flags=re.S)
    lines = [
        ln
        for ln in prose.splitlines()
        if ln.strip() and not ln.lstrip().startswith(("|", "#", "-", "<", "!"))
    ]
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(lines))
    return [s for s in sentences if 20 <= len(s) <= 600][:limit]
