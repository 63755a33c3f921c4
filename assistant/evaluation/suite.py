"""The evaluation suite: every set of ``eval/sets.toml`` against an index of its own corpus.

Each set is evaluated against an index of the corpus it names (built, or brought up to date,
under ``<index dir>/eval/``), beside the baselines over the same corpus. The decision to answer
or decline is *out of sample*: for each set, the calibration is fitted on the evidence features
of the other sets whose corpus differs (leave one corpus out), never on the set being scored.
A set one brings (``--set FILE``) is evaluated against the configured index with the
assistant's own calibration, which was not fitted on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from assistant.answer.calibration import Calibration, fit
from assistant.answer.probes import bank
from assistant.embeddings import Embedder
from assistant.errors import InputError
from assistant.evaluation.baselines import assistant_system, open_baselines
from assistant.evaluation.cases import Conversation, EvalCase, SetSpec, load_sets
from assistant.evaluation.run import EvalRun, Progress, System, run_systems
from assistant.index import IndexHandle, build_index
from assistant.ingest import slugify_path
from assistant.pipeline import Assistant
from assistant.settings import Settings

__all__ = [
    "FeatureRows",
    "SetRunner",
    "SuiteRun",
    "eval_index_dir",
    "leave_one_corpus_out",
    "open_runner",
    "run_suite",
    "select_sets",
]

log = logging.getLogger(__name__)

#: (features, answerable) rows of one set, for fitting a calibration
FeatureRows = list[tuple[dict[str, float], bool]]


def eval_index_dir(index_root: Path, corpus: Path) -> Path:
    """Where the suite keeps the index of ``corpus``: ``<index_root>/eval/<corpus name>``."""
    return index_root / "eval" / slugify_path(corpus.resolve().as_posix().lstrip("/"))


@dataclass
class SuiteRun:
    """The runs of every set, in the order they were evaluated."""

    runs: list[tuple[SetSpec, EvalRun]] = field(default_factory=list)

    def to_json(self, *, cases: bool = True) -> dict[str, object]:
        return {spec.name: run.to_json(cases=cases) for spec, run in self.runs}


def leave_one_corpus_out(
    spec: SetSpec,
    specs: Sequence[SetSpec],
    rows: Callable[[SetSpec], FeatureRows],
    probes: Callable[[Path], FeatureRows],
) -> Calibration | None:
    """The calibration for scoring ``spec``: fitted on every set of ``specs`` that may be
    fitted on (single questions, not held out) and asks another corpus, and on the probe
    questions asked of each of those corpora and of ``spec``'s own (no case of ``spec``'s
    corpus is used); None if no such set exists."""
    train = [s for s in specs if s.kind == "cases" and not s.held_out and s.corpus != spec.corpus]
    if not train:
        return None
    corpora = list(dict.fromkeys([*(s.corpus for s in train), spec.corpus]))
    data = [row for s in train for row in rows(s)] + [r for c in corpora for r in probes(c)]
    return fit(
        [f for f, _ in data],
        [a for _, a in data],
        fitted_on=", ".join(s.name for s in train)
        + f" and the probe questions of {len(corpora)} corpora (leaving out {spec.corpus.name})",
    )


class SetRunner:
    """Opens (and keeps open) one assistant per corpus and evaluates sets with it."""

    def __init__(
        self,
        index_root: Path,
        embedder: Embedder,
        calibration: Calibration,
        *,
        max_question_chars: int = 1000,
        max_file_bytes: int = 20_000_000,
        build_progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.index_root = index_root
        self.embedder = embedder
        self.calibration = calibration
        self.max_question_chars = max_question_chars
        self.max_file_bytes = max_file_bytes
        self.build_progress = build_progress
        self._assistants: dict[Path, Assistant] = {}
        self._rows: dict[str, FeatureRows] = {}

    def assistant(self, corpus: Path) -> Assistant:
        """An assistant over an up-to-date index of ``corpus`` (built on first use)."""
        corpus = corpus.resolve()
        if corpus not in self._assistants:
            index_dir = eval_index_dir(self.index_root, corpus)
            report = build_index(
                corpus, index_dir, self.embedder, max_file_bytes=self.max_file_bytes,
                progress=self.build_progress,
            )  # fmt: skip
            for skipped in report.skipped:
                log.warning("evaluation corpus %s: skipped %s: %s", corpus, skipped.path,
                            skipped.reason)  # fmt: skip
            handle = IndexHandle.of(index_dir, self.embedder)
            self._assistants[corpus] = Assistant(
                handle, self.embedder, calibration=self.calibration,
                max_question_chars=self.max_question_chars,
            )  # fmt: skip
        return self._assistants[corpus]

    def probes(self, corpus: Path) -> FeatureRows:
        """The whole probe bank asked of ``corpus``'s index, as questions to decline."""
        key = f"probes:{corpus.resolve()}"
        if key not in self._rows:
            assistant = self.assistant(corpus)
            self._rows[key] = [(assistant.features(q.question), False) for q in bank()]
        return self._rows[key]

    def rows(self, spec: SetSpec) -> FeatureRows:
        """The evidence features of every case of ``spec`` (cached)."""
        if spec.name not in self._rows:
            cases = spec.load()
            assistant = self.assistant(spec.corpus)
            self._rows[spec.name] = [
                (assistant.features(c.question, c.history), c.answerable)
                for c in cases
                if isinstance(c, EvalCase)
            ]
        return self._rows[spec.name]

    def run(
        self,
        spec: SetSpec,
        cases: Sequence[EvalCase] | Sequence[Conversation],
        assistant: Assistant,
        *,
        k: int,
        baselines: bool,
        extra: Sequence[System] = (),
        notes: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> EvalRun:
        """``cases`` by ``assistant`` (and ``extra`` systems, and the baselines over the set's
        corpus when ``baselines``)."""
        with ExitStack() as stack:
            systems: list[System] = [assistant_system(assistant), *extra]
            if baselines:
                systems += stack.enter_context(
                    open_baselines(
                        spec.corpus, assistant.embedder, k=k,
                        max_question_chars=self.max_question_chars,
                        max_file_bytes=self.max_file_bytes,
                    )
                )  # fmt: skip
            return run_systems(
                cases, systems, k=k, case_set=spec.name, progress=progress, notes=notes
            )

    def close(self) -> None:
        for assistant in self._assistants.values():
            index = assistant.index
            if isinstance(index, IndexHandle):
                index.close()
        self._assistants.clear()


@contextmanager
def open_runner(*args: object, **kwargs: object) -> Iterator[SetRunner]:
    runner = SetRunner(*args, **kwargs)  # type: ignore[arg-type]
    try:
        yield runner
    finally:
        runner.close()


def select_sets(
    registry: Path, names: Sequence[str], *, corpus: Path, conversations: bool = False
) -> tuple[list[SetSpec], list[SetSpec]]:
    """(the sets to evaluate, every set of the registry). A name that is a file, not a set of
    the registry, is a set one brings, asked of ``corpus``."""
    known = load_sets(registry) if registry.is_file() or not names else []
    by_name = {s.name: s for s in known}
    chosen: list[SetSpec] = []
    for name in names or list(by_name):
        if name in by_name:
            chosen.append(by_name[name])
            continue
        path = Path(name)
        if not path.is_file():
            raise InputError(
                f"{name!r} is not a set of {registry} ({', '.join(by_name) or 'none'}), and no "
                "case file of that name exists (the file does not exist)"
            )
        kind = "conversations" if conversations or _holds_turns(path) else "cases"
        chosen.append(SetSpec(path.stem, path.resolve(), corpus.resolve(), kind, brought=True))
    return chosen, known


def _holds_turns(path: Path) -> bool:
    """Whether a case file's first case is a conversation (has ``turns``)."""
    try:
        with path.open(encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
    except (OSError, UnicodeDecodeError):
        return False
    return '"turns"' in first


def run_suite(
    settings: Settings,
    *,
    registry: Path,
    names: Sequence[str] = (),
    conversations: bool = False,
    calibration: str | None = None,
    k: int = 10,
    baselines: bool = True,
    llm: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    embedder: Embedder | None = None,
) -> SuiteRun:
    """Evaluate the chosen sets (every set of ``registry`` by default); see the module.
    ``embedder``: the model to embed with instead of the one the settings configure."""
    from assistant.answer.llm import chat_model
    from assistant.embeddings import embedder_from

    chosen, known = select_sets(
        registry, names, corpus=settings.corpus_dir, conversations=conversations
    )
    llm_settings = settings.with_(llm=llm or settings.llm)
    model = chat_model(llm_settings)  # fails now (a bad ASSISTANT_LLM), not after a first run
    fixed = None
    if calibration not in (None, "loco", "index"):
        fixed = Calibration.load(Path(str(calibration)))
    embedder = embedder or embedder_from(settings)
    suite = SuiteRun()
    with ExitStack() as stack:
        runner = stack.enter_context(
            open_runner(
                settings.index_dir, embedder, Calibration.load(settings.calibration_file),
                max_question_chars=settings.max_question_chars,
                max_file_bytes=settings.max_file_bytes, build_progress=progress,
            )
        )  # fmt: skip
        for spec in chosen:
            if spec.brought:
                base = Assistant.from_settings(settings.with_(llm=""), embedder)
                stack.callback(base.close)
            else:
                base = runner.assistant(spec.corpus)
            assistant, note = _deciding(spec, base, calibration, fixed, known, runner)
            extra: list[System] = []
            if model is not None:
                generative = assistant.with_llm(model, llm_timeout=llm_settings.llm_timeout)
                extra.append(assistant_system(generative, name="assistant-llm"))
            cases = spec.load()
            run = runner.run(spec, cases, assistant, k=k, baselines=baselines, extra=extra,
                             notes=[note], progress=_set_progress(progress, spec.name))  # fmt: skip
            suite.runs.append((spec, run))
    return suite


def _deciding(
    spec: SetSpec,
    base: Assistant,
    calibration: str | None,
    fixed: Calibration | None,
    known: Sequence[SetSpec],
    runner: SetRunner,
) -> tuple[Assistant, str]:
    """The assistant to evaluate ``spec`` with, deciding to decline by the calibration file
    (``fixed``), one fitted on the other corpora's sets (loco) or its own (index); and the
    report's note saying which."""
    mode = calibration or ("index" if spec.brought else "loco")
    if fixed is not None:
        cal, note = fixed, f"declining decided by the calibration file {calibration}"
    elif mode == "loco":
        fitted = leave_one_corpus_out(spec, known, runner.rows, runner.probes)
        if fitted is None:
            raise InputError(
                f"set {spec.name}: no other corpus's set to fit the decision to decline "
                "on (leave one corpus out); use --calibration index"
            )
        cal = fitted
        note = f"declining decided by a calibration fitted on {cal.fitted_on}"
    else:
        cal = base.calibration_for(base.index.get())
        note = f"declining decided by the assistant's own calibration ({cal.fitted_on})"
    return (base if mode == "index" and fixed is None else base.with_calibration(cal)), note


def _set_progress(
    progress: Callable[[str, int, int], None] | None, where: str
) -> Callable[[str, int, int], None]:
    """``progress`` for one set's steps, each named after the set."""

    def step(name: str, done: int, total: int) -> None:
        if progress is not None:
            progress(f"{where}: {name}", done, total)

    return step
