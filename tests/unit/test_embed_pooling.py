"""The embedding backends' parts that need no model: pooling, backend names, settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.embeddings import split_backend
from assistant.embeddings.runtime import BackendUnavailableError, Pooling
from assistant.errors import ConfigError
from assistant.settings import Settings


def _model_folder(tmp_path: Path, modules: list[str], pooling: dict[str, bool]) -> Path:
    paths = ["", "1_Pooling", "2_Normalize"]
    layout = [
        {"idx": i, "name": str(i), "path": paths[i], "type": f"sentence_transformers.models.{t}"}
        for i, t in enumerate(modules)
    ]
    (tmp_path / "modules.json").write_text(json.dumps(layout), encoding="utf-8")
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 128}', "utf-8")
    (tmp_path / "1_Pooling").mkdir()
    config = {f"pooling_mode_{k}": v for k, v in pooling.items()}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return tmp_path


def test_pooling_reads_the_models_layout(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path, ["Transformer", "Pooling", "Normalize"],
                           {"mean_tokens": True, "cls_token": False})  # fmt: skip
    assert Pooling.of(folder) == Pooling(mode="mean", max_seq_length=128)


@pytest.mark.parametrize(
    ("modules", "pooling", "why"),
    [
        (["Transformer", "Pooling", "Dense"], {"mean_tokens": True}, "modules"),
        (["Transformer", "Pooling"], {"mean_sqrt_len_tokens": True}, "pooling"),
        (["Transformer", "Pooling"], {"mean_tokens": True, "max_tokens": True}, "pooling"),
    ],
)
def test_pooling_refuses_what_it_cannot_reproduce(
    tmp_path: Path, modules: list[str], pooling: dict[str, bool], why: str
) -> None:
    with pytest.raises(BackendUnavailableError, match=why):
        Pooling.of(_model_folder(tmp_path, modules, pooling))


def test_pooling_without_a_layout_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="no sentence-transformers layout"):
        Pooling.of(tmp_path)


def test_mean_pooling_ignores_padding_and_normalises() -> None:
    tokens = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    out = Pooling("mean", 256)(tokens, mask)
    assert out.tolist() == [[1.0, 0.0]]  # mean (2, 0), padding left out, then unit length


def test_cls_and_max_pooling() -> None:
    tokens = np.array([[[0.0, 2.0], [3.0, 1.0], [9.0, 9.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    assert Pooling("cls", 256)(tokens, mask).tolist() == [[0.0, 1.0]]
    top = Pooling("max", 256)(tokens, mask)  # (3, 2): the padded row's 9s are left out
    assert top[0] == pytest.approx(np.array([3.0, 2.0]) / np.hypot(3.0, 2.0))


def test_backend_names() -> None:
    assert split_backend("openvino-bf16") == ("openvino", "bf16")
    assert split_backend("torch") == ("torch", "auto")
    assert split_backend("auto") == ("auto", "auto")


def test_backend_settings() -> None:
    assert Settings().embed_backend == "auto"
    assert Settings().embed_precision == "auto"
    env = {"ASSISTANT_EMBED_BACKEND": "openvino", "ASSISTANT_EMBED_PRECISION": "int8"}
    assert Settings.from_env(env).embed_precision == "int8"
    with pytest.raises(
        ConfigError, match="ASSISTANT_EMBED_BACKEND must be auto, torch or openvino"
    ):
        Settings(embed_backend="onnx")
    with pytest.raises(ConfigError, match="ASSISTANT_EMBED_PRECISION must be"):
        Settings(embed_precision="fp8")
    with pytest.raises(ConfigError, match="needs ASSISTANT_EMBED_BACKEND=openvino"):
        Settings(embed_backend="torch", embed_precision="bf16")
