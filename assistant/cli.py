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

    ix = sub.add_parser("index", parents=[common], help="build or update the index")
    ix.add_argument("--rebuild", action="store_true", help="re-embed everything from scratch")

    for name, what in (("search", "ranked passages"), ("ask", "a cited answer")):
        sp = sub.add_parser(name, parents=[common], help=f"{what} for a question")
        sp.add_argument("question", help="the question, or - to read one question per line")
        sp.add_argument("-k", type=int, help="passages to retrieve (ASSISTANT_TOP_K)")
        sp.add_argument("--json", action="store_true", help="print JSON (JSON lines for -)")
    sub.choices["ask"].add_argument(
        "--llm", metavar="MODEL",
        help="answer with a chat model: local, or a LangChain provider string such as "
        "openai:gpt-4o-mini (ASSISTANT_LLM)",
    )  # fmt: skip

    cal = sub.add_parser(
        "calibrate", parents=[common], help="fit the answer-or-decline decision on a case set"
    )
    cal.add_argument("--set", type=Path, default=Path("eval/cases.jsonl"), dest="case_set")
    cal.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("calibration.json"),
        help="where to write the calibration (default: the one the package ships)",
    )  # fmt: skip

    ev = sub.add_parser(
        "eval", parents=[common], help="evaluate the assistant and baselines on a case set",
        description="Run the assistant and two baselines (the LangChain tutorial pipeline, BM25 "
        "alone) on a known-answer set, offline: retrieval, key facts, citations, declining, "
        "latency. `assistant eval export-feedback` prints thumbs-down answers from the chat page "
        "as draft cases instead.",
    )  # fmt: skip
    ev.add_argument(
        "action", nargs="?", choices=["run", "export-feedback"], default="run",
        help="run the evaluation (default) or export feedback as draft cases",
    )  # fmt: skip
    ev.add_argument("--set", type=Path, default=Path("eval/cases.jsonl"), dest="case_set",
                    help="the case set (default: eval/cases.jsonl)")  # fmt: skip
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
                    help="exit 7 when the assistant's metrics fall outside the [min]/[max] "
                    "bounds in FILE (e.g. eval/thresholds.toml)")  # fmt: skip
    return p


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
    from assistant.embeddings import SentenceTransformerEmbedder
    from assistant.index import build_index, check_index_dir
    from assistant.ingest import check_corpus_dir
    from assistant.pipeline import chroma_server

    check_corpus_dir(settings.corpus_dir)  # before the model loads: a typo fails in a moment
    check_index_dir(settings.index_dir)
    embedder = SentenceTransformerEmbedder(
        settings.embed_model, batch_size=settings.embed_batch_size
    )
    labels = {
        "read": ("reading files", "file"),
        "copy": ("carrying over vectors", "chunk"),
        "embed": ("embedding chunks", "chunk"),
    }
    try:
        with _progress_bars(labels) as progress:
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

    batch = args.question == "-"
    if not batch:  # reject an empty question before loading anything
        from assistant.pipeline import clean_question

        clean_question(args.question, settings.max_question_chars)
    assistant = Assistant.from_settings(settings)
    failures = 0
    for question in _questions(args.question, sys.stdin):
        try:
            result = one(assistant, question)
        except InputError as err:
            if not batch:
                raise
            failures += 1
            result = {"question": question, "error": str(err)}
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
    from assistant.calibration import fit
    from assistant.evalset import load_cases
    from assistant.pipeline import Assistant

    cases = load_cases(args.case_set)
    assistant = Assistant.from_settings(settings)
    rows = [assistant.features(c.question, c.history) for c in cases]
    cal = fit(rows, [c.answerable for c in cases], fitted_on=str(args.case_set))
    cal.save(args.out)
    print(
        f"assistant: calibrated on {len(cases)} cases from {args.case_set}: "
        f"answers {cal.stats['answer_recall']:.0%} of answerable, "
        f"declines {cal.stats['decline_recall']:.0%} of unanswerable; wrote {args.out}",
        file=sys.stderr,
    )
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "export-feedback":
        return _export_feedback(settings)
    from contextlib import ExitStack

    from assistant.baselines import assistant_system, open_baselines
    from assistant.evalset import load_cases
    from assistant.evaluation import System, run_systems
    from assistant.gate import GATE_EXIT_CODE, load_thresholds
    from assistant.pipeline import Assistant
    from assistant.report import render_text, write_report

    if args.eval_k < 1:
        raise InputError(f"-k must be at least 1, not {args.eval_k}")
    cases = load_cases(args.case_set)
    gate = load_thresholds(args.gate) if args.gate is not None else None
    if args.report is not None:  # fail before the run, not after it
        try:
            args.report.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot write the report into {args.report}: {err}") from err
    from assistant.llm import chat_model

    llm_settings = settings.with_(llm=args.llm or settings.llm)
    llm = chat_model(llm_settings)  # fails now (a bad ASSISTANT_LLM), not after the first run
    assistant = Assistant.from_settings(settings.with_(llm=""))
    with ExitStack() as stack:
        progress = stack.enter_context(_progress_bars({}))
        systems: list[System] = [assistant_system(assistant)]
        if llm is not None:
            generative = assistant.with_llm(llm, llm_timeout=llm_settings.llm_timeout)
            systems.append(assistant_system(generative, name="assistant-llm"))
        if not args.no_baselines:
            systems += stack.enter_context(
                open_baselines(
                    settings.corpus_dir, assistant.embedder, k=args.eval_k,
                    max_question_chars=settings.max_question_chars,
                    max_file_bytes=settings.max_file_bytes,
                )
            )  # fmt: skip
        run = run_systems(
            cases, systems, k=args.eval_k, case_set=str(args.case_set), progress=progress
        )
    if args.report is not None:
        try:
            html_path, json_path = write_report(run, args.report)
        except OSError as err:
            raise InputError(f"cannot write the report into {args.report}: {err}") from err
        print(f"assistant: wrote {html_path} and {json_path}", file=sys.stderr)
    if args.json:
        print(json.dumps(run.to_json(cases=False), ensure_ascii=False))
    else:
        print(render_text(run))
    if gate is not None:
        shortfalls = gate.check(run.runs[0].summary.metrics)
        for shortfall in shortfalls:
            print(f"assistant: gate: {shortfall}", file=sys.stderr)
        if shortfalls:
            print(f"assistant: gate failed ({len(shortfalls)} metric(s) outside {args.gate})",
                  file=sys.stderr)  # fmt: skip
            return GATE_EXIT_CODE
        print(f"assistant: gate passed ({args.gate})", file=sys.stderr)
    return 0


def _export_feedback(settings: Settings) -> int:
    from assistant.evaluation import feedback_drafts

    db = settings.data_dir / "feedback.sqlite3"
    if not db.is_file():
        print(f"assistant: no feedback yet ({db} does not exist); nothing to export",
              file=sys.stderr)  # fmt: skip
        return 0
    drafts = feedback_drafts(db)
    for draft in drafts:
        print(json.dumps(draft, ensure_ascii=False))
    print(f"assistant: exported {len(drafts)} thumbs-down answer(s) from {db} as draft cases; "
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
