"""Command line: ``assistant index | search | ask | calibrate | eval``.

A thin shell: it builds :class:`~assistant.settings.Settings` from ``ASSISTANT_*`` variables and
flags, calls the pipeline, and turns the assistant's errors into one line on stderr and an exit
status. JSON goes to stdout alone; logs and progress go to stderr.

Exit status: 0 done; 1 unexpected failure; 2 bad input or configuration; 3 corpus unreadable;
4 index missing, mismatched or not built; 5 embedding model unavailable; 6 indexed, but some
files were skipped; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from assistant.answer.calibration import Calibration
from assistant.errors import AssistantError, InputError
from assistant.schema import Answer, Passage, passage_json
from assistant.settings import Settings

__all__ = ["main", "prepare_runtime"]

EXIT_SKIPPED = 6
log = logging.getLogger("assistant")


def prepare_runtime(verbose: bool = False) -> None:
    """Offline, quiet third-party libraries; logs to stderr. Called by every shell at start."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "chromadb", "sentence_transformers", "transformers", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--corpus", type=Path, help="corpus folder (ASSISTANT_CORPUS_DIR)")
    common.add_argument("--index", type=Path, help="index folder (ASSISTANT_INDEX_DIR)")
    common.add_argument("--embed-model", help="model name or path (ASSISTANT_EMBED_MODEL)")
    common.add_argument("-v", "--verbose", action="store_true", help="log progress details")

    p = argparse.ArgumentParser(
        prog="assistant",
        description="Answers questions about health and care commissioning from the guidance, "
        "citing the passages it used.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A subcommand's parser, with the options every subcommand has."""
        return sub.add_parser(name, parents=[common], **kwargs)

    for command in (_index_command, _search_commands, _calibrate_command, _eval_command):
        command(add)
    return p


def _index_command(add: Callable[..., argparse.ArgumentParser]) -> None:
    ix = add("index", help="build or update the index")
    ix.add_argument("--rebuild", action="store_true", help="re-embed everything from scratch")


def _search_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """``search`` and ``ask``: the same question options; ``ask`` may use a chat model."""
    for name, what in (("search", "ranked passages"), ("ask", "a cited answer")):
        sp = add(name, help=f"{what} for a question")
        sp.add_argument("question", help="the question, or - to read one question per line")
        sp.add_argument("-k", type=int, help="passages to retrieve (ASSISTANT_TOP_K)")
        sp.add_argument("--json", action="store_true", help="print JSON (JSON lines for -)")
        if name == "ask":
            sp.add_argument(
                "--llm", metavar="MODEL",
                help="answer with a chat model: local, or a LangChain provider string such as "
                "openai:gpt-4o-mini (ASSISTANT_LLM)",
            )  # fmt: skip


def _calibrate_command(add: Callable[..., argparse.ArgumentParser]) -> None:
    cal = add(
        "calibrate",
        help="fit the decision to answer or decline (for your own documents: --corpus DIR)",
        description="With --corpus DIR: index DIR into the index folder (if needed) and fit the "
        "decision to decline for those documents without hand-written cases (probe questions "
        "from their headings, a packaged bank of questions to decline, the packaged reference "
        "cases); it is stored with the index. Without --corpus: refit the packaged calibration "
        "on the evaluation sets (eval/sets.toml).",
    )  # fmt: skip
    cal.add_argument("--sets", type=Path, default=Path("eval/sets.toml"), dest="registry",
                     help="the set registry to fit the packaged calibration on")  # fmt: skip
    cal.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("calibration.json"),
        help="where to write the packaged calibration (default: the one the package ships)",
    )  # fmt: skip


def _eval_command(add: Callable[..., argparse.ArgumentParser]) -> None:
    ev = add(
        "eval", help="evaluate the assistant and baselines on the case sets",
        description="Run the assistant and two baselines (the LangChain tutorial pipeline, BM25 "
        "alone) on known-answer sets, offline: retrieval, key facts, citations, declining, "
        "conversations, latency. By default every set of eval/sets.toml, each against an index "
        "of its own corpus, with the decision to decline fitted on the other corpora's sets. "
        "`assistant eval export-feedback` prints thumbs-down answers from the chat page as "
        "draft cases instead.",
    )  # fmt: skip
    ev.add_argument(
        "action", nargs="?", choices=["run", "export-feedback"], default="run",
        help="run the evaluation (default) or export feedback as draft cases",
    )  # fmt: skip
    ev.add_argument("--sets", type=Path, default=Path("eval/sets.toml"), dest="registry",
                    help="the set registry (default: eval/sets.toml)")  # fmt: skip
    ev.add_argument("--set", action="append", dest="case_sets", metavar="NAME|FILE",
                    help="a set of the registry by name (repeatable; default: all of them), or a "
                    "case file of your own, asked of --corpus (or ASSISTANT_CORPUS_DIR) through "
                    "the configured index")  # fmt: skip
    ev.add_argument("--conversations", action="store_true",
                    help="the case file of --set FILE holds conversations")  # fmt: skip
    ev.add_argument("--calibration", default=None, metavar="loco|index|FILE",
                    help="what decides to decline: loco (fitted on the other corpora's sets; "
                    "the default for the registry's sets), index (the assistant's own: the "
                    "index's calibration or the packaged one; the default for a file of your "
                    "own) or a calibration file")  # fmt: skip
    ev.add_argument("-k", type=int, default=10, dest="eval_k",
                    help="passages ranked for the retrieval metrics (default 10)")  # fmt: skip
    ev.add_argument("--json", action="store_true", help="print the summary as JSON")
    ev.add_argument("--report", type=Path, metavar="DIR",
                    help="write DIR/eval.html and DIR/eval.json")  # fmt: skip
    ev.add_argument("--no-baselines", action="store_true", help="evaluate the assistant only")
    ev.add_argument("--llm", metavar="MODEL",
                    help="also evaluate the assistant answering with this chat model (local, or "
                    "a LangChain provider string; default ASSISTANT_LLM), as assistant-llm "
                    "beside the extractive assistant")  # fmt: skip
    ev.add_argument("--gate", type=Path, metavar="FILE",
                    help="exit 7 when a set's metrics fall below its floors in FILE (e.g. "
                    "eval/thresholds.toml); the report shows the gap to each target")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    prepare_runtime(args.verbose)
    try:
        settings = Settings.from_env(
            corpus_dir=args.corpus,
            index_dir=args.index,
            embed_model=args.embed_model,
            top_k=getattr(args, "k", None),
            llm=getattr(args, "llm", None) if args.command == "ask" else None,
        )
        command: Callable[[argparse.Namespace, Settings], int] = _COMMANDS[args.command]
        return command(args, settings)
    except AssistantError as err:
        print(f"assistant: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("assistant: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `assistant search - | head`
        return 0


# -- commands ----------------------------------------------------------------------------------


def _index(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.embeddings import embedder_from
    from assistant.index import build_index, check_index_dir
    from assistant.ingest import check_corpus_dir
    from assistant.pipeline import chroma_server

    check_corpus_dir(settings.corpus_dir)  # before the model loads: a typo fails in a moment
    check_index_dir(settings.index_dir)
    embedder = embedder_from(settings)
    try:
        with _progress_bars(_BUILD_LABELS) as progress:
            report = build_index(
                settings.corpus_dir, settings.index_dir, embedder, rebuild=args.rebuild,
                max_file_bytes=settings.max_file_bytes, progress=progress,
                server=chroma_server(settings), batch=settings.index_batch,
                search_ef=settings.search_ef,
            )  # fmt: skip
    except KeyboardInterrupt:
        print("assistant: interrupted; the previous index keeps serving, and what was embedded "
              "is kept: run `assistant index` again to carry on", file=sys.stderr)  # fmt: skip
        return 130
    _measure_probes(settings, embedder)
    for s in report.skipped:
        print(f"assistant: skipped {s.path}: {s.reason}", file=sys.stderr)
    print(
        f"assistant: indexed {report.documents} documents as {report.chunks} chunks "
        f"({report.embedded} embedded, {report.reused} reused, {report.removed} removed) "
        f"in {report.seconds:.1f}s into {settings.index_dir}"
        + (" (resumed an interrupted build)" if report.resumed else "")
        + (
            f" (vectors on the Chroma server {chroma_server(settings)})"
            if settings.chroma_host
            else ""
        )
        + (f"; {len(report.skipped)} file(s) skipped" if report.skipped else ""),
        file=sys.stderr,
    )
    return EXIT_SKIPPED if report.skipped else 0


def _measure_probes(settings: Settings, embedder: Any) -> None:
    """Ask the new build the probe questions now (a few seconds), so that its first user does
    not wait for them; the figures are stored with the build."""
    from assistant.index import IndexHandle
    from assistant.pipeline import Assistant, chroma_server

    handle = IndexHandle.of(settings.index_dir, embedder, chroma_server(settings))
    assistant = Assistant(handle, embedder, calibration=Calibration.load(None))
    try:
        assistant.probe_stats(handle.get())
    finally:
        assistant.close()


@contextlib.contextmanager
def _progress_bars(
    labels: dict[str, tuple[str, str]],
) -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback ``(stage, done, total)`` drawing one tqdm bar per stage on stderr;
    ``labels`` maps a stage to its description and unit (default: "evaluating <stage>", case).
    """
    from tqdm import tqdm

    bars: dict[str, tqdm[Any]] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            desc, unit = labels.get(stage, (f"evaluating {stage}", "case"))
            bar = bars[stage] = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr,
                                     leave=True, dynamic_ncols=True)  # fmt: skip
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.close()


def _questions(arg: str, stdin: TextIO) -> Iterator[str]:
    if arg != "-":
        yield arg
        return
    for line in stdin:
        yield line.rstrip("\n")


def _run_questions(
    args: argparse.Namespace,
    settings: Settings,
    one: Callable[[Any, str], dict[str, Any]],
    text: Callable[[dict[str, Any]], str],
) -> int:
    from assistant.pipeline import Assistant
    from assistant.privacy import redact, screen

    batch = args.question == "-"
    if not batch:  # reject an empty question, or one with personal data, before loading anything
        from assistant.conversation import clean_question

        screen([clean_question(args.question, settings.max_question_chars)], settings.pii_check)
    assistant = Assistant.from_settings(settings)
    failures = 0
    for question in _questions(args.question, sys.stdin):
        try:
            result = one(assistant, question)
        except InputError as err:
            if not batch:
                raise
            failures += 1
            result = {"question": redact(question), "error": str(err)}
        if args.json or batch:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            print(text(result))
    return 2 if failures else 0


def _search(args: argparse.Namespace, settings: Settings) -> int:
    def one(assistant: Any, question: str) -> dict[str, Any]:
        passages: list[Passage] = assistant.search(question, args.k)
        results = [passage_json(p) for p in passages]
        return {"question": question, "results": results}

    def text(result: dict[str, Any]) -> str:
        lines = []
        for r in result["results"]:
            where = r["title"] + (f" — {r['section']}" if r["section"] else "")
            lines.append(f"{r['rank']}. [{r['score']:.4f}] {where}\n   {_indent(r['text'])}")
        return "\n".join(lines) or "(nothing found)"

    return _run_questions(args, settings, one, text)


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    def one(assistant: Any, question: str) -> dict[str, Any]:
        answer: Answer = assistant.ask(question)
        return answer.to_json()

    return _run_questions(args, settings, one, format_answer)


def format_answer(result: dict[str, Any]) -> str:
    lines = [result["answer"], ""]
    if result["citations"]:
        lines.append("Sources:")
        for c in result["citations"]:
            where = c["title"] + (f" — {c['section']}" if c["section"] else "")
            era = f" ({c['era']})" if c.get("era") else ""
            lines.append(f"[{c['n']}] {where}{era}\n    “{c['quote']}”")
    elif result.get("closest"):
        lines.append("Closest passages:")
        for r in result["closest"]:
            where = r["title"] + (f" — {r['section']}" if r["section"] else "")
            lines.append(f"- {where}\n    {_indent(r['text'])}")
    return "\n".join(lines).rstrip()


def _indent(text: str) -> str:
    return text.replace("\n", "\n   ")


def _calibrate(args: argparse.Namespace, settings: Settings) -> int:
    if args.corpus is not None:
        return _calibrate_corpus(settings)
    from assistant.embeddings import embedder_from
    from assistant.evaluation.calibrate import fit_packaged
    from assistant.evaluation.cases import load_sets
    from assistant.evaluation.suite import open_runner

    specs = load_sets(args.registry)
    embedder = embedder_from(settings)
    with (
        _progress_bars(_BUILD_LABELS) as progress,
        open_runner(
            settings.index_dir, embedder, Calibration.load(None), build_progress=progress
        ) as runner,
    ):
        cal, figures, reference = fit_packaged(specs, runner.rows, runner.probes)
    cal.save(args.out)
    ref_path = args.out.parent / "data" / "reference_features.jsonl"
    ref_path.parent.mkdir(parents=True, exist_ok=True)
    ref_path.write_text("".join(json.dumps(r) + "\n" for r in reference), encoding="utf-8")
    for name, f in figures.items():
        print(f"assistant: {name}, fitted without its corpus: refusal precision "
              f"{f['refusal_precision']:.3f}, recall {f['refusal_recall']:.3f}, false refusals "
              f"{f['false_refusal_rate']:.3f}", file=sys.stderr)  # fmt: skip
    print(f"assistant: calibrated on {cal.fitted_on}; wrote {args.out} and {ref_path}",
          file=sys.stderr)  # fmt: skip
    return 0


def _calibrate_corpus(settings: Settings) -> int:
    from assistant.embeddings import embedder_from
    from assistant.evaluation.calibrate import fit_corpus
    from assistant.index import build_index, check_index_dir
    from assistant.ingest import check_corpus_dir
    from assistant.pipeline import Assistant, chroma_server

    check_corpus_dir(settings.corpus_dir)
    check_index_dir(settings.index_dir)
    embedder = embedder_from(settings)
    with _progress_bars(_BUILD_LABELS) as progress:
        build_index(
            settings.corpus_dir, settings.index_dir, embedder, progress=progress,
            max_file_bytes=settings.max_file_bytes, server=chroma_server(settings),
            batch=settings.index_batch, search_ef=settings.search_ef,
        )  # fmt: skip
    assistant = Assistant.from_settings(settings.with_(llm="", calibration_file=None), embedder)
    try:
        result = fit_corpus(assistant)
        path = assistant.store_calibration(result.calibration)
    finally:
        assistant.close()
    f = result.figures
    print(
        f"assistant: calibrated for {settings.corpus_dir} on {result.probes_answerable} heading "
        f"probes and {result.probes_unanswerable} probe questions to decline; on the half kept "
        f"apart: refusal precision {f['refusal_precision']:.3f}, recall "
        f"{f['refusal_recall']:.3f}, false refusals {f['false_refusal_rate']:.3f}; stored with "
        f"the index ({path}). Next: `assistant eval --set YOUR_CASES.jsonl --corpus "
        f"{settings.corpus_dir}` with the same --index",
        file=sys.stderr,
    )
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "export-feedback":
        return _export_feedback(settings)
    from assistant.evaluation.gate import GATE_EXIT_CODE, load_thresholds
    from assistant.evaluation.report import render_text, write_report
    from assistant.evaluation.suite import run_suite

    if args.eval_k < 1:
        raise InputError(f"-k must be at least 1, not {args.eval_k}")
    gate = load_thresholds(args.gate) if args.gate is not None else None
    if args.report is not None:  # fail before the run, not after it
        try:
            args.report.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot write the report into {args.report}: {err}") from err
    with _progress_bars(_BUILD_LABELS) as progress:
        suite = run_suite(
            settings, registry=args.registry, names=args.case_sets or (),
            conversations=args.conversations, calibration=args.calibration, k=args.eval_k,
            baselines=not args.no_baselines, llm=args.llm, progress=progress,
        )  # fmt: skip
    if args.report is not None:
        try:
            html_path, json_path = write_report(suite, args.report, gate=gate)
        except OSError as err:
            raise InputError(f"cannot write the report into {args.report}: {err}") from err
        print(f"assistant: wrote {html_path} and {json_path}", file=sys.stderr)
    if args.json:
        print(json.dumps(suite.to_json(cases=False), ensure_ascii=False))
    else:
        print("\n\n".join(render_text(run, gate=gate) for _, run in suite.runs))
    if gate is None:
        return 0
    shortfalls = [
        s for spec, run in suite.runs for s in gate.check(spec.name, run.runs[0].summary.metrics)
    ]
    for shortfall in shortfalls:
        print(f"assistant: gate: {shortfall}", file=sys.stderr)
    if shortfalls:
        print(f"assistant: gate failed ({len(shortfalls)} metric(s) outside {args.gate})",
              file=sys.stderr)  # fmt: skip
        return GATE_EXIT_CODE
    print(f"assistant: gate passed ({args.gate}; {len(suite.runs)} set(s))", file=sys.stderr)
    return 0


_BUILD_LABELS = {
    "read": ("reading files", "file"),
    "copy": ("carrying over vectors", "chunk"),
    "embed": ("embedding chunks", "chunk"),
}


def _export_feedback(settings: Settings) -> int:
    from assistant.records import FeedbackStore
    from assistant.records.drafts import feedback_drafts

    store = FeedbackStore(settings.data_dir, url=settings.feedback_url)
    where = store.database.file or store.database.name
    drafts = feedback_drafts(store.rows())  # none when no feedback was ever stored
    for draft in drafts:
        print(json.dumps(draft, ensure_ascii=False))
    print(f"assistant: exported {len(drafts)} thumbs-down answer(s) from {where} as draft cases; "
          "complete 'must', 'evidence' and 'answerable' before adding them to a set",
          file=sys.stderr)  # fmt: skip
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "index": _index,
    "search": _search,
    "ask": _ask,
    "calibrate": _calibrate,
    "eval": _eval,
}

if __name__ == "__main__":
    sys.exit(main())
