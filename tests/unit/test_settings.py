"""Settings: ASSISTANT_* variables parsed and checked, overrides win, errors name the variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from assistant.errors import ConfigError
from assistant.settings import DEFAULT_EMBED_MODEL, DEFAULT_TOP_K, Settings


def test_defaults_without_variables() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.top_k == DEFAULT_TOP_K
    assert s.embed_model == DEFAULT_EMBED_MODEL
    assert s.calibration_file is None
    assert s.log_questions is False


def test_parses_ints_bools_and_paths() -> None:
    s = Settings.from_env(
        {
            "ASSISTANT_TOP_K": "7",
            "ASSISTANT_MAX_QUESTION_CHARS": " 250 ",
            "ASSISTANT_PORT": "8080",
            "ASSISTANT_LOG_QUESTIONS": "yes",
            "ASSISTANT_INDEX_DIR": "/srv/idx",
            "ASSISTANT_CALIBRATION_FILE": "/etc/cal.json",
            "ASSISTANT_EMBED_MODEL": "some/model",
            "ASSISTANT_HOST": "0.0.0.0",
        }
    )
    assert s.top_k == 7
    assert s.max_question_chars == 250
    assert s.port == 8080
    assert s.log_questions is True
    assert s.index_dir == Path("/srv/idx")
    assert isinstance(s.index_dir, Path)
    assert s.calibration_file == Path("/etc/cal.json")
    assert s.embed_model == "some/model"
    assert s.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("1", True), ("true", True), (" ON ", True), ("Yes", True)],
        *[("0", False), ("false", False), ("off", False), ("NO", False)],
    ],
)
def test_bool_spellings(raw: str, expected: bool) -> None:
    assert Settings.from_env({"ASSISTANT_LOG_QUESTIONS": raw}).log_questions is expected


def test_paths_expand_the_home_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Settings.from_env({"ASSISTANT_DATA_DIR": "~/data"})
    assert s.data_dir == tmp_path / "data"


def test_empty_variable_is_ignored() -> None:
    assert Settings.from_env({"ASSISTANT_TOP_K": "", "ASSISTANT_HOST": ""}) == Settings()


def test_reads_the_process_environment_by_default(tmp_path: Path) -> None:
    # the autouse fixture points these at tmp_path
    s = Settings.from_env()
    assert s.index_dir == tmp_path / "env-index"
    assert s.data_dir == tmp_path / "env-data"
    assert s.corpus_dir == tmp_path / "env-corpus"


def test_overrides_win_and_none_overrides_are_ignored() -> None:
    env = {"ASSISTANT_TOP_K": "3", "ASSISTANT_INDEX_DIR": "/from/env"}
    s = Settings.from_env(env, top_k=9, index_dir=None, corpus_dir=Path("/flag"))
    assert s.top_k == 9
    assert s.index_dir == Path("/from/env")
    assert s.corpus_dir == Path("/flag")
    assert Settings.from_env(env, top_k=None).top_k == 3


@pytest.mark.parametrize(
    ("var", "raw", "says"),
    [
        ("ASSISTANT_TOP_K", "five", "whole number"),
        ("ASSISTANT_PORT", "80.5", "whole number"),
        ("ASSISTANT_LOG_QUESTIONS", "maybe", "true or false"),
        ("ASSISTANT_TOP_K", "0", "at least 1"),
        ("ASSISTANT_MAX_QUESTION_CHARS", "-3", "at least 1"),
        ("ASSISTANT_MAX_FILE_BYTES", "0", "at least 1"),
        ("ASSISTANT_EMBED_BATCH_SIZE", "0", "at least 1"),
        ("ASSISTANT_SEARCH_EF", "0", "at least 1"),
        ("ASSISTANT_PORT", "70000", "TCP port"),
        ("ASSISTANT_EMBED_MODEL", "   ", "empty"),
    ],
)
def test_invalid_values_name_the_variable(var: str, raw: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({var: raw})
    assert var in str(caught.value)
    assert says in str(caught.value)
    assert caught.value.exit_code == 2


def test_invalid_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ASSISTANT_TOP_K"):
        Settings.from_env({}, top_k=0)
    with pytest.raises(ConfigError, match="no_such_setting"):
        Settings.from_env({}, no_such_setting=1)


def test_settings_are_frozen_and_with_checks_values() -> None:
    s = Settings()
    assert s.with_(top_k=2).top_k == 2
    assert s.top_k == DEFAULT_TOP_K
    with pytest.raises(ConfigError):
        s.with_(top_k=0)
    with pytest.raises(AttributeError):
        s.top_k = 3  # type: ignore[misc]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    missing = [
        f"ASSISTANT_{f.name.upper()}"
        for f in dataclasses.fields(Settings)
        if f"ASSISTANT_{f.name.upper()}" not in readme
    ]
    assert missing == []
