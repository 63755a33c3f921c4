"""`assistant eval` with the bundled model over the real corpus: the command as a user runs it on
a small set, and the whole bundled set once, in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.answer.calibration import Calibration
from assistant.embeddings import Embedder
from assistant.evaluation.baselines import assistant_system, open_baselines
from assistant.evaluation.cases import load_cases
from assistant.evaluation.report import write_report
from assistant.evaluation.run import run_systems
from assistant.pipeline import Assistant

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = {"assistant", "langchain-tutorial", "bm25"}

SMALL_SET = [
    {
        "id": "num-001",
        "question": "Roughly how many CCGs hold the bulk of the NHS money for commissioning?",
        "answerable": True,
        "must": [["209"]],
        "evidence": "Most of the NHS commissioning budget is now managed by 209 clinical "
        "commissioning groups",
        "tags": ["number", "nhs-commissioning"],
    },
    {
        "id": "num-002",
        "question": "How many regional teams has NHS England got?",
        "answerable": True,
        "must": [["four", "4"]],
        "evidence": "It has four regional teams but is one single organisation",
        "tags": ["number", "nhs-commissioning"],
    },
    {
        "id": "fu-001",
        "question": "Does that make them separate organisations, each with its own board?",
        "answerable": True,
        "must": [["single organisation", "one organisation"], ["one board", "single board"]],
        "evidence": "one single organisation operating to a common model with one board",
        "history": [
            {"role": "user", "content": "How many regional teams does NHS England have?"},
            {"role": "assistant", "content": "NHS England has four regional teams."},
        ],
        "tags": ["follow-up", "nhs-commissioning"],
    },
    {
        "id": "def-001",
        "question": "In the most basic definition, commissioning means planning services and "
        "doing which two other things to them?",
        "answerable": True,
        "must": [["agreeing", "agree"], ["monitoring", "monitor"]],
        "evidence": "commissioning is the process of planning, agreeing and monitoring services",
        "tags": ["definition", "nhs-commissioning"],
    },
    {
        "id": "oos-001",
        "question": "What is the boiling point of water at the top of Mount Everest?",
        "answerable": False,
        "tags": ["off-topic"],
    },
]


def _run_eval(real_index: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    case_set = tmp_path / "small.jsonl"
    case_set.write_text("\n".join(json.dumps(c) for c in SMALL_SET) + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ASSISTANT_INDEX_DIR=str(real_index),
        ASSISTANT_CORPUS_DIR=str(ROOT / "corpus"),
        ASSISTANT_DATA_DIR=str(tmp_path / "data"),
    )
    return subprocess.run(
        [sys.executable, "-m", "assistant.cli", "eval", "--set", str(case_set), *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip


def test_eval_command_prints_json_and_writes_the_report(real_index: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    proc = _run_eval(real_index, tmp_path, "--json", "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    by_set = json.loads(proc.stdout)  # stdout is one JSON object and nothing else
    assert list(by_set) == ["small"]  # the set one brings is named after its file
    summary = by_set["small"]
    assert summary["notes"] == [
        f"declining decided by the assistant's own calibration ({Calibration.load().fitted_on})"
    ]
    assert set(summary["systems"]) == SYSTEMS
    assert (summary["cases"], summary["k"], summary["set"]) == (5, 10, "small")
    for name, system in summary["systems"].items():
        assert system["counts"]["cases"] == 5, name
        assert system["counts"]["unanswerable"] == 1, name
        assert 0.0 <= system["metrics"]["hit@10"] <= 1.0, name
        assert "results" not in system
    assert summary["systems"]["assistant"]["metrics"]["hit@10"] == 1.0
    assert summary["systems"]["bm25"]["counts"]["refused"] == 0
    assert "evaluating small: assistant" in proc.stderr  # progress goes to stderr
    page = (report / "eval.html").read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == 2
    for name in SYSTEMS:
        assert name in page
    full = json.loads((report / "eval.json").read_text(encoding="utf-8"))["small"]
    assert [r["id"] for r in full["systems"]["assistant"]["results"]] == [
        c["id"] for c in SMALL_SET
    ]


def test_the_gate_passes_and_fails_on_the_real_metrics(real_index: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate.toml"
    # every small-set question is answerable from the top 10, and the off-topic one is declined
    gate.write_text('[min]\n"hit@10" = 1.0\nrefusal_recall = 1.0\n', encoding="utf-8")
    passed = _run_eval(real_index, tmp_path, "--no-baselines", "--gate", str(gate))
    assert passed.returncode == 0, passed.stderr
    assert "gate passed" in passed.stderr
    # no real run answers in under a microsecond
    gate.write_text('[min]\n"hit@10" = 1.0\n[max]\ntotal_p50_ms = 0.001\n', encoding="utf-8")
    failed = _run_eval(real_index, tmp_path, "--no-baselines", "--gate", str(gate))
    assert failed.returncode == 7, failed.stderr
    assert "gate: small: total_p50_ms = " in failed.stderr
    assert "above its ceiling 0.001" in failed.stderr
    assert "hit@10" not in failed.stderr.split("gate:", 1)[1]  # only the failing metric is named
    assert "Traceback" not in failed.stderr


def test_the_bundled_set_runs_in_full(
    real_assistant: Assistant, real_embedder: Embedder, tmp_path: Path
) -> None:
    cases = load_cases(ROOT / "eval" / "cases.jsonl")
    with open_baselines(ROOT / "corpus", real_embedder, k=10) as baselines:
        run = run_systems(cases, [assistant_system(real_assistant), *baselines], k=10)
    html_path, json_path = write_report(run, tmp_path)
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["cases"] == 141
    for name in SYSTEMS:
        system = data["systems"][name]
        assert len(system["results"]) == 141, name
        assert system["counts"]["cases"] == 141, name
    # the assistant ranks the evidence better than either baseline (the point of its design)
    mrr = {name: data["systems"][name]["metrics"]["mrr"] for name in SYSTEMS}
    assert mrr["assistant"] > max(mrr["langchain-tutorial"], mrr["bm25"]), mrr
    assert "data:image/png;base64," in html_path.read_text(encoding="utf-8")
