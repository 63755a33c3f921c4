"""A site owner's own documents with the bundled model: index → calibrate → ask, as the README
shows it, and the calibration stored with the index carried over to the next build."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from assistant import cli
from assistant.answer.calibration import Calibration
from assistant.index import BUILD_CALIBRATION
from assistant.pipeline import Assistant
from assistant.settings import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def current_build(index: Path) -> Path:
    build = json.loads((index / "CURRENT").read_text())["build"]
    return index / "builds" / build


def test_calibrate_fits_a_decision_for_a_corpus_without_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for page in ("sorting", "logging", "argparse", "unicode"):
        shutil.copy(ROOT / "eval" / "corpora" / "howto" / f"{page}.html", docs)
    index = tmp_path / "index"
    assert cli.main(["index", "--corpus", str(docs), "--index", str(index)]) == 0
    assert cli.main(["calibrate", "--corpus", str(docs), "--index", str(index)]) == 0
    err = capsys.readouterr().err
    assert "heading probes" in err
    assert "on the half kept apart: refusal precision" in err
    stored = current_build(index) / BUILD_CALIBRATION
    cal = Calibration.load(stored)
    assert cal.probe_normalised
    assert "packaged reference cases of other corpora" in cal.fitted_on
    assert (current_build(index) / "probes.json").is_file()  # the build's probe figures

    settings = Settings.from_env(corpus_dir=docs, index_dir=index)
    assistant = Assistant.from_settings(settings)
    try:
        assert assistant.calibration_for(assistant.index.get()) == cal  # the index's own
        answer = assistant.ask("What is the capital of France?")
        assert answer.refused
        on_topic = assistant.ask("How do I sort a list in descending order?")
        assert not on_topic.refused
    finally:
        assistant.close()

    # a rebuild (a document changed) keeps the calibration fitted for these documents
    (docs / "unicode.html").write_text("<h1>Unicode</h1><p>Python 3 strings are Unicode.</p>")
    assert cli.main(["index", "--corpus", str(docs), "--index", str(index)]) == 0
    assert Calibration.load(current_build(index) / BUILD_CALIBRATION) == cal
