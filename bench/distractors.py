"""A distractor corpus for scale tests, made from Debian's python3-doc HTML pages.

The pages are read with the assistant's own reader (:func:`assistant.ingest.read_document`) and
written out as Markdown documents of normalised text under ``bench/data/distractors-<size>/``,
so that indexing them yields about ``<size>`` chunks (counted with
:func:`assistant.chunking.chunk_document` on the written files, as indexing reads them):

* up to the number of chunks all pages give (~33,600), a seeded random subset of pages;
* beyond that, every page, then seeded *variants* of the pages: sentences shuffled within each
  paragraph and a distinct first line, so no copy duplicates another's bytes or text (ingest
  skips duplicates).

The material has nothing to do with health and care commissioning: an assistant that ranks it
above the guidance, or answers from it, has a retrieval problem that the seed corpus hides.

    python -m bench.distractors --sizes 10k,100k     # or: make distractors
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_SEED",
    "Page",
    "default_html_dir",
    "distractor_dir",
    "load_pages",
    "main",
    "parse_size",
    "variant_text",
    "write_distractors",
]

log = logging.getLogger("bench.distractors")

BENCH_DATA = Path(__file__).resolve().parent / "data"
DEFAULT_SEED = 20240607
#: where Debian's python3-doc puts its HTML pages (one folder per Python version)
DOC_GLOB = "/usr/share/doc/python3*/html"
#: written beside the documents (hidden: ingest skips it): what was made, so reruns can skip
STAMP = ".distractors.json"
_CACHE_FORMAT = 1
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"“‘])")


@dataclass(frozen=True)
class Page:
    """One python3-doc page as normalised text (``# `` headings, ``- `` items, paragraphs)."""

    rel: str  # path under the html folder
    text: str
    chunks: int  # chunks the assistant's chunker makes of it


def default_html_dir() -> Path | None:
    """The newest python3-doc HTML folder on this machine, or None if it is not installed."""
    found = sorted(Path("/").glob(DOC_GLOB.lstrip("/")), key=lambda p: _version_key(p.parent.name))
    return found[-1] if found else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def parse_size(label: str) -> int:
    """``"10k"`` → 10000, ``"2500"`` → 2500."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", label)
    if not m:
        raise ValueError(f"not a size: {label!r} (use e.g. 10k, 100k or 2500)")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def distractor_dir(label: str, root: Path = BENCH_DATA) -> Path:
    return root / f"distractors-{label}"


def _md_chunks(text: str, rel: str) -> int:
    """Chunks the assistant makes of ``text`` written as a Markdown file named ``rel``."""
    from assistant.chunking import chunk_document
    from assistant.ingest import normalise_markdown, slugify_path
    from assistant.schema import DocInfo, SourceDocument

    norm = normalise_markdown(text)
    info = DocInfo(doc_id=slugify_path(rel), title=rel, path=rel)
    return len(chunk_document(SourceDocument(info=info, text=norm, sha256="")))


def load_pages(html_dir: Path, cache: Path | None = None) -> list[Page]:
    """Every readable page under ``html_dir``, read as the assistant reads HTML (~60 s).

    The result is cached in ``cache`` (a JSON file), keyed by the pages' names, sizes and
    modification times.
    """
    from assistant.ingest import UnreadableFile, read_document

    files = sorted(p for p in html_dir.rglob("*.html") if "_sources" not in p.parts)
    key = hashlib.sha256(
        "\n".join(
            f"{p.relative_to(html_dir)}\t{p.stat().st_size}\t{p.stat().st_mtime_ns}" for p in files
        ).encode()
    ).hexdigest()
    if cache is not None and cache.is_file():
        try:
            raw = json.loads(cache.read_text(encoding="utf-8"))
            if raw.get("format") == _CACHE_FORMAT and raw.get("key") == key:
                return [Page(**p) for p in raw["pages"]]
        except (OSError, ValueError, TypeError, KeyError):
            log.warning("page cache %s unreadable: reading the pages again", cache)
    pages: list[Page] = []
    started = time.perf_counter()
    for n, path in enumerate(files, start=1):
        rel = path.relative_to(html_dir).as_posix()
        try:
            doc = read_document(path, rel, None)
        except UnreadableFile as err:
            log.info("skipped %s: %s", rel, err.reason)
            continue
        text = doc.text
        if not text.startswith("# "):  # every document opens with its title
            text = f"# {doc.info.title}\n\n{text}"
        pages.append(Page(rel=rel, text=text, chunks=_md_chunks(text, rel)))
        if n % 100 == 0:
            log.info("read %d/%d pages (%.0f s)", n, len(files), time.perf_counter() - started)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "format": _CACHE_FORMAT,
            "key": key,
            "source": str(html_dir),
            "pages": [p.__dict__ for p in pages],
        }
        cache.write_text(json.dumps(body), encoding="utf-8")
    return pages


def variant_text(text: str, copy: int, rng: random.Random) -> str:
    """A copy of a page that is not a duplicate: a distinct first line, and the sentences of
    each prose paragraph in a seeded random order (headings and list items stay as they are)."""
    blocks = text.split("\n\n")
    out: list[str] = []
    for i, block in enumerate(blocks):
        if i == 0 and block.startswith("# "):
            first = block.splitlines()[0]
            out.append(f"{first} (variant {copy})" + block[len(first) :])
            continue
        if block.startswith(("#", "- ")) or "\n" in block:  # headings, lists, code: kept
            out.append(block)
            continue
        sentences = _SENTENCE_END.split(block)
        if len(sentences) > 1:
            rng.shuffle(sentences)
        out.append(" ".join(sentences))
    if not out or not out[0].startswith("# "):
        out.insert(0, f"# Variant {copy}")
    return "\n\n".join(out) + "\n"


def _file_name(rel: str, copy: int) -> str:
    from assistant.ingest import slugify_path

    return f"v{copy}/{slugify_path(rel)}.md" if copy else f"{slugify_path(rel)}.md"


def _plan(pages: Sequence[Page], target: int, seed: int) -> Iterable[tuple[Page, int]]:
    """(page, copy number) in the order they are written; copy 0 is the page itself."""
    rng = random.Random(seed)
    order = list(pages)
    rng.shuffle(order)
    copy = 0
    while True:
        for page in order:
            yield page, copy
        copy += 1
        rng.shuffle(order)
        if copy > 1000 or target <= 0:
            return


def write_distractors(
    pages: Sequence[Page], target: int, out_dir: Path, *, seed: int = DEFAULT_SEED
) -> dict[str, object]:
    """Write documents into ``out_dir`` until their chunks reach about ``target``.

    Unchanged files are not rewritten (an unchanged rerun leaves the index as it is); files of
    an earlier, different run are removed. Returns what was written (also stored in ``STAMP``).
    """
    if not pages:
        raise ValueError("no pages to make distractors of")
    stamp_path = out_dir / STAMP
    pages_key = hashlib.sha256("".join(p.text for p in pages).encode()).hexdigest()
    want = {"target": target, "seed": seed, "pages": len(pages), "pages_key": pages_key}
    if stamp_path.is_file():
        try:
            stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
            if all(stamp.get(k) == v for k, v in want.items()):
                return dict(stamp)
        except (OSError, ValueError):
            pass
    out_dir.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()
    chunks = 0
    docs = 0
    for page, copy in _plan(pages, target, seed):
        if chunks >= target:
            break
        if copy == 0:
            text, n = page.text, page.chunks
        else:
            rng = random.Random(f"{seed}:{copy}:{page.rel}")
            text = variant_text(page.text, copy, rng)
            n = _md_chunks(text, page.rel)
        if n == 0:
            continue
        # the last document may overshoot: stop before it if that lands nearer the target
        if chunks + n > target and (chunks + n - target) > (target - chunks):
            break
        path = out_dir / _file_name(page.rel, copy)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
        written.add(path)
        chunks += n
        docs += 1
    for stale in out_dir.rglob("*.md"):
        if stale not in written:
            stale.unlink()
    stamp = {**want, "documents": docs, "chunks": chunks}
    stamp_path.write_text(json.dumps(stamp, indent=2), encoding="utf-8")
    return stamp


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.distractors",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default="10k,100k", help="comma-separated (default 10k,100k)")
    parser.add_argument("--html-dir", type=Path, help=f"python3-doc pages (default {DOC_GLOB})")
    parser.add_argument("--out", type=Path, default=BENCH_DATA, help="where to write")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    labels = [s.strip() for s in args.sizes.split(",") if s.strip() and s.strip() != "seed"]
    if not labels:  # the seed corpus alone needs no distractors
        return 0
    html_dir = args.html_dir or default_html_dir()
    if html_dir is None or not html_dir.is_dir():
        print(
            "distractors: python3-doc is not installed: apt-get install python3-doc",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    pages = load_pages(html_dir, cache=args.out / "python-doc-pages.json")
    total = sum(p.chunks for p in pages)
    log.info(
        "%d pages, %d chunks, read in %.0f s", len(pages), total, time.perf_counter() - started
    )
    for label in labels:
        t0 = time.perf_counter()
        stamp = write_distractors(
            pages, parse_size(label), distractor_dir(label, args.out), seed=args.seed
        )
        log.info(
            "%s: %s documents, %s chunks in %s (%.0f s)",
            *(label, stamp["documents"], stamp["chunks"], distractor_dir(label, args.out)),
            time.perf_counter() - t0,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
