"""Fitting the decision to decline: the packaged calibration, and one for a site's own documents.

* :func:`fit_packaged` fits the calibration the package ships on every evaluation set that may be
  fitted on (``eval/sets.toml``), each against an index of its own corpus, with the probe bank
  asked of each index as further questions to decline. It reports leave-one-corpus-out figures
  (fit without a corpus, score that corpus's set) and writes, beside the calibration, the
  features of every labelled case (``data/reference_features.jsonl``) for :func:`fit_corpus`.
* :func:`fit_corpus` fits a calibration for documents nobody wrote cases for: answerable probe
  questions made from the corpus's own section headings, the probe bank on its index as questions
  to decline, and the packaged reference cases of other corpora. Half of the corpus's probes are
  kept apart and scored, so the figures it prints are out of sample. The calibration is stored
  with the build (and carried over to later builds of the same index folder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from assistant.answer.calibration import Calibration, decision_figures, fit
from assistant.answer.probes import bank
from assistant.evaluation.cases import SetSpec
from assistant.index import BUILD_CALIBRATION
from assistant.ingest import SUPPORTED_SUFFIXES
from assistant.pipeline import Assistant

__all__ = [
    "BUILD_CALIBRATION",
    "REFERENCE_FILE",
    "CorpusCalibration",
    "fingerprint",
    "fit_corpus",
    "fit_packaged",
    "heading_probes",
    "load_reference",
]

log = logging.getLogger(__name__)

#: the labelled features the packaged calibration was fitted on (package data)
REFERENCE_FILE = "data/reference_features.jsonl"
#: section headings asked of a corpus as answerable probes (at most)
HEADING_PROBES = 200
_SEED = 15

Rows = list[tuple[dict[str, float], bool]]


def load_reference() -> list[tuple[str, dict[str, float], bool]]:
    """(corpus fingerprint, features, answerable) of the labelled cases the packaged
    calibration was fitted on; empty if the package has none."""
    try:
        raw = resources.files("assistant").joinpath(REFERENCE_FILE).read_text("utf-8")
    except (OSError, FileNotFoundError):
        return []
    out = []
    for line in raw.splitlines():
        if line.strip():
            row = json.loads(line)
            out.append((str(row.get("corpus", "")), dict(row["features"]), bool(row["answerable"])))
    return out


def fit_packaged(
    specs: Sequence[SetSpec],
    rows: Callable[[SetSpec], Rows],
    probes: Callable[[Path], Rows],
) -> tuple[Calibration, dict[str, dict[str, float]], list[dict[str, object]]]:
    """The packaged calibration, its leave-one-corpus-out figures by set, and the reference
    rows to write beside it."""
    train = [s for s in specs if s.kind == "cases" and not s.held_out]
    corpora = list(dict.fromkeys(s.corpus for s in train))
    figures: dict[str, dict[str, float]] = {}
    for corpus in corpora:
        others = [s for s in train if s.corpus != corpus]
        if not others:
            continue
        data = [r for s in others for r in rows(s)]
        data += [r for c in corpora for r in probes(c)]
        cal = fit([f for f, _ in data], [a for _, a in data])
        for spec in (s for s in train if s.corpus == corpus):
            scored = rows(spec)
            figures[spec.name] = decision_figures(
                [cal.answers(f) for f, _ in scored], [a for _, a in scored]
            )
    data = [r for s in train for r in rows(s)] + [r for c in corpora for r in probes(c)]
    cal = fit(
        [f for f, _ in data],
        [a for _, a in data],
        fitted_on=", ".join(s.name for s in train)
        + f", and the probe bank asked of each of their {len(corpora)} corpora",
    )
    reference: list[dict[str, object]] = [
        {
            "set": s.name,
            "corpus": fingerprint(s.corpus),
            "answerable": a,
            "features": {k: round(v, 5) for k, v in f.items()},
        }
        for s in train
        for f, a in rows(s)
    ]
    return cal, figures, reference


def fingerprint(corpus: Path | Sequence[str]) -> str:
    """One digest of a corpus's files (their sha256s, in any order): the same documents give
    the same fingerprint wherever they lie."""
    if isinstance(corpus, Path):
        digests = sorted(
            hashlib.sha256(p.read_bytes()).hexdigest()
            for p in corpus.rglob("*")
            if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
        )
    else:
        digests = sorted(corpus)
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]


def heading_probes(assistant: Assistant, limit: int = HEADING_PROBES) -> list[str]:
    """Questions made from the corpus's own section headings ("What does the guidance say about
    <heading>?"): each is answered by the passages under that heading."""
    snapshot = assistant.index.get()
    sections = (
        str(meta.get("section") or "").split(" › ")[0] for _, meta in snapshot.store.metadatas()
    )
    headings = sorted({s for s in sections if len(s.split()) >= 2})
    random.Random(_SEED).shuffle(headings)
    return [f"What does it say about {h.rstrip('.?:')}?" for h in headings[:limit]]


@dataclass(frozen=True)
class CorpusCalibration:
    calibration: Calibration
    probes_answerable: int
    probes_unanswerable: int
    #: out of sample: decisions on the half of the corpus's probes not fitted on
    figures: dict[str, float]


def fit_corpus(assistant: Assistant) -> CorpusCalibration:
    """A calibration for the assistant's own index, without hand-written cases (see the
    module). Raises :class:`~assistant.errors.ConfigError` when the corpus has no headings to
    make answerable probes of and no reference cases are packaged."""
    snapshot = assistant.index.get()
    positives = [(assistant.features(q), True) for q in heading_probes(assistant)]
    negatives = [(assistant.features(q.question), False) for q in bank()]
    # reference cases asked of these very documents are left out: they would be in sample
    own_corpus = fingerprint(list(snapshot.meta.files.values()))
    reference = [(f, a) for corpus, f, a in load_reference() if corpus != own_corpus]
    rng = random.Random(_SEED)
    own = positives + negatives
    rng.shuffle(own)
    half = len(own) // 2
    fitted, kept = own[:half], own[half:]
    trial = fit([f for f, _ in fitted + reference], [a for _, a in fitted + reference])
    figures = decision_figures([trial.answers(f) for f, _ in kept], [a for _, a in kept])
    data = own + reference
    cal = fit(
        [f for f, _ in data],
        [a for _, a in data],
        fitted_on=f"{len(positives)} heading probes and {len(negatives)} bank questions asked "
        f"of build {snapshot.build_id}, and {len(reference)} packaged reference cases of "
        "other corpora",
    )
    return CorpusCalibration(cal, len(positives), len(negatives), figures)
