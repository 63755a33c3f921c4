"""Ingestion: read the corpus folder into :class:`~assistant.schema.SourceDocument` values.

The walk of the folder, its ``manifest.json``, document ids and titles, and the dispatch of each
file to the reader of its format (:mod:`~assistant.ingest.markdown`,
:mod:`~assistant.ingest.html`, :mod:`~assistant.ingest.pdf`, :mod:`~assistant.ingest.docx`);
every reader produces the normalised text described in :mod:`~assistant.ingest.text`.

A file that cannot be read is not an error: :func:`ingest` reports it as a
:class:`~assistant.schema.SkippedFile` with a reason a person can act on, and goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path, PurePosixPath

from assistant.errors import CorpusError
from assistant.ingest.docx import read_docx
from assistant.ingest.html import read_html
from assistant.ingest.markdown import normalise_markdown
from assistant.ingest.pdf import read_pdf
from assistant.ingest.text import UnreadableFile, clean_line, decode_text, normalise_plain_text
from assistant.schema import DocInfo, IngestReport, SkippedFile, SourceDocument

__all__ = [
    "MANIFEST_NAME",
    "SUPPORTED_SUFFIXES",
    "check_corpus_dir",
    "corpus_files",
    "ingest",
    "load_manifest",
    "read_document",
    "slugify_path",
]

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")

MANIFEST_NAME = "manifest.json"
#: files at the top of the corpus folder that document the folder rather than belong to it
_FOLDER_DOCS = frozenset({"readme.md", "readme.txt"})
_STATUSES = ("current", "historical")
_MAX_TITLE_CHARS = 120


# --------------------------------------------------------------------------------------------
# manifest


def load_manifest(corpus_dir: Path) -> dict[str, DocInfo]:
    """The manifest's entries keyed by path relative to ``corpus_dir`` (forward slashes).

    A missing ``manifest.json`` means no entries. A manifest that cannot be used raises
    :class:`CorpusError` naming the file and the problem.
    """
    path = Path(corpus_dir) / MANIFEST_NAME
    if not path.is_file():
        return {}
    raw = _read_manifest_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("documents"), list):
        raise CorpusError(f'manifest {path} must be a JSON object with a "documents" list')

    entries: dict[str, DocInfo] = {}
    ids: dict[str, str] = {}
    for n, item in enumerate(raw["documents"], start=1):
        where = f"manifest {path}, document #{n}"
        info = _manifest_entry(item, where)
        if info.doc_id in ids:
            raise CorpusError(f'{where}: id "{info.doc_id}" is also used for {ids[info.doc_id]}')
        if info.path in entries:
            raise CorpusError(f"{where}: file {info.path} is listed twice")
        ids[info.doc_id] = info.path
        entries[info.path] = info
    return entries


def _read_manifest_json(path: Path) -> object:
    """The manifest's JSON; :class:`CorpusError` if it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise CorpusError(
            f"manifest {path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"manifest {path} is not valid UTF-8 (byte 0x{err.object[err.start]:02x} "
            f"at offset {err.start}); save it as UTF-8"
        ) from None
    except OSError as err:
        raise CorpusError(f"manifest {path} cannot be read: {err.strerror or err}") from None


def _manifest_entry(item: object, where: str) -> DocInfo:
    """One document of the manifest, checked; ``where`` names it in the errors."""
    if not isinstance(item, dict):
        raise CorpusError(f"{where} must be a JSON object")
    values: dict[str, str] = {}
    for key in ("id", "file", "title", "source", "era", "status", "note"):
        value = item.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise CorpusError(f'{where}: "{key}" must be a string, not {value!r}')
        values[key] = value.strip()
    for key in ("id", "file", "title"):
        if not values.get(key):
            raise CorpusError(f'{where} has no "{key}"')
    rel = _manifest_rel(values["file"])
    if rel is None:
        raise CorpusError(
            f'{where}: "file" must be a relative path inside the corpus folder, '
            f"not {values['file']!r}"
        )
    status = values.get("status") or "current"
    if status not in _STATUSES:
        raise CorpusError(
            f'{where} ({values["id"]}): "status" must be "current" or "historical", not {status!r}'
        )
    return DocInfo(
        doc_id=values["id"],
        title=values["title"],
        path=rel,
        source=values.get("source", ""),
        era=values.get("era", ""),
        status=status,
        note=values.get("note", ""),
    )


def _manifest_rel(file: str) -> str | None:
    """The manifest's ``file`` as a clean relative path, or None if it leaves the folder."""
    parts = [p for p in file.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or file.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        return None
    return "/".join(parts)


# --------------------------------------------------------------------------------------------
# the walk


def ingest(
    corpus_dir: Path,
    *,
    max_file_bytes: int = 20_000_000,
    progress: Callable[[str], None] | None = None,
) -> IngestReport:
    """Read every supported file under ``corpus_dir``; report the ones that cannot be used.

    Raises :class:`CorpusError` only when the folder itself (or its manifest) is unusable.
    """
    corpus_dir = Path(corpus_dir)
    check_corpus_dir(corpus_dir)
    manifest = load_manifest(corpus_dir)
    reader = _CorpusReader(manifest, max_file_bytes)
    seen: set[str] = set()
    for rel, path in corpus_files(corpus_dir):
        seen.add(rel)
        reader.read(rel, path)
        if progress is not None:
            progress(rel)

    for rel in sorted(set(manifest) - seen):
        logger.warning(
            "manifest %s lists %s, which is not in the corpus folder",
            corpus_dir / MANIFEST_NAME,
            rel,
        )
    documents, skipped = reader.documents, reader.skipped
    logger.info(
        "ingested %d documents from %s, skipped %d files", len(documents), corpus_dir, len(skipped)
    )
    return IngestReport(documents=documents, skipped=skipped)


class _CorpusReader:
    """Reads the files of one corpus in turn: the documents, the files skipped and why, and what
    a later file is checked against (duplicates of bytes or of text, ids already taken)."""

    def __init__(self, manifest: dict[str, DocInfo], max_file_bytes: int) -> None:
        self.manifest = manifest
        self.max_file_bytes = max_file_bytes
        self.documents: list[SourceDocument] = []
        self.skipped: list[SkippedFile] = []
        self.by_bytes: dict[str, str] = {}  # sha256 of the bytes -> path indexed
        self.by_text: dict[str, str] = {}  # sha256 of the whitespace-normalised text -> path
        self.used_ids = {info.doc_id for info in manifest.values()}

    def skip(self, rel: str, reason: str) -> None:
        logger.warning("skipped %s: %s", rel, reason)
        self.skipped.append(SkippedFile(rel, reason))

    def read(self, rel: str, path: Path) -> None:
        """Read one file into a document, or skip it with the reason."""
        suffix = PurePosixPath(rel).suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            self.skip(rel, _unsupported_reason(suffix))
            return
        try:
            data = _read_bytes(path, self.max_file_bytes)
            sha = hashlib.sha256(data).hexdigest()
            if sha in self.by_bytes:
                raise UnreadableFile(f"duplicate of {self.by_bytes[sha]}")
            doc = _document_from_bytes(data, sha, rel, suffix, self.manifest.get(rel))
            text_key = hashlib.sha256(" ".join(doc.text.split()).encode("utf-8")).hexdigest()
            if text_key in self.by_text:
                raise UnreadableFile(f"duplicate of {self.by_text[text_key]} (same text)")
        except UnreadableFile as err:
            self.skip(rel, err.reason)
            return
        if rel not in self.manifest:
            unique = _unique_id(doc.info, self.used_ids)
            doc = replace(doc, info=replace(doc.info, doc_id=unique))
        self.used_ids.add(doc.info.doc_id)
        self.by_bytes[sha] = rel
        self.by_text[text_key] = rel
        self.documents.append(doc)


def check_corpus_dir(corpus_dir: Path) -> None:
    """:class:`CorpusError` unless ``corpus_dir`` is a folder (and its manifest, if any, reads)."""
    if not corpus_dir.exists():
        raise CorpusError(f"corpus folder {corpus_dir} does not exist")
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus folder {corpus_dir} is not a folder")
    load_manifest(corpus_dir)


def corpus_files(corpus_dir: Path) -> list[tuple[str, Path]]:
    """Every non-hidden file under ``corpus_dir`` except the folder's own documentation, sorted.

    Symbolic links to folders are not followed (a link cycle cannot loop the walk).
    """
    found: list[tuple[str, Path]] = []
    for top, dirs, files in os.walk(corpus_dir, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        top_path = Path(top)
        at_top = top_path == corpus_dir
        for name in files:
            if name.startswith("."):
                continue
            if at_top and (name == MANIFEST_NAME or name.lower() in _FOLDER_DOCS):
                continue
            path = top_path / name
            found.append((path.relative_to(corpus_dir).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return found


def _unsupported_reason(suffix: str) -> str:
    supported = ", ".join(SUPPORTED_SUFFIXES)
    if not suffix:
        return f"unsupported file type: no file extension (supported: {supported})"
    return f"unsupported file type {suffix} (supported: {supported})"


def _read_bytes(path: Path, max_file_bytes: int) -> bytes:
    """The file's bytes; its size is checked before it is opened."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFile("not a regular file")
        if st.st_size == 0:
            raise UnreadableFile("empty file (0 bytes)")
        if st.st_size > max_file_bytes:
            raise UnreadableFile(f"{st.st_size} bytes, over the limit of {max_file_bytes} bytes")
        return path.read_bytes()
    except OSError as err:
        raise UnreadableFile(f"could not read the file: {err.strerror or err}") from None


def _unique_id(info: DocInfo, used: set[str]) -> str:
    """``info.doc_id``, or a variant of it if another document already has that id."""
    if info.doc_id not in used:
        return info.doc_id
    candidate = slugify_path(info.path, keep_suffix=True)
    n = 2
    while candidate in used:
        candidate = f"{slugify_path(info.path, keep_suffix=True)}-{n}"
        n += 1
    return candidate


def slugify_path(rel: str, *, keep_suffix: bool = False) -> str:
    """``"Guides/NHS Commissioning.txt"`` → ``"guides--nhs-commissioning"``."""
    path = PurePosixPath(rel)
    parts = list(path.parts)
    if not keep_suffix and parts:
        parts[-1] = path.stem
    slugs = []
    for part in parts:
        ascii_part = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^a-z0-9]+", "-", ascii_part.lower()).strip("-")
        slugs.append(slug or "doc")
    return "--".join(slugs) or "doc"


# --------------------------------------------------------------------------------------------
# one file


def read_document(path: Path, rel: str, info: DocInfo | None) -> SourceDocument:
    """Read one file into a :class:`SourceDocument`; raises :class:`UnreadableFile`.

    ``info`` is the manifest's entry for the file; without one, the id is derived from ``rel``
    and the title from the text.
    """
    suffix = PurePosixPath(rel).suffix.lower() or Path(path).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnreadableFile(_unsupported_reason(suffix))
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UnreadableFile(f"could not read the file: {err.strerror or err}") from None
    if not data:
        raise UnreadableFile("empty file (0 bytes)")
    return _document_from_bytes(data, hashlib.sha256(data).hexdigest(), rel, suffix, info)


def _document_from_bytes(
    data: bytes, sha: str, rel: str, suffix: str, info: DocInfo | None
) -> SourceDocument:
    title_hint = ""
    if suffix in (".txt",):
        text = normalise_plain_text(decode_text(data))
    elif suffix in (".md", ".markdown"):
        text = normalise_markdown(decode_text(data))
    elif suffix in (".html", ".htm"):
        text, title_hint = read_html(data)
    elif suffix == ".pdf":
        text = read_pdf(data)
    elif suffix == ".docx":
        text = read_docx(data)
    else:  # pragma: no cover - callers check the suffix first
        raise UnreadableFile(_unsupported_reason(suffix))
    if not text:
        if suffix in (".txt", ".md", ".markdown"):
            raise UnreadableFile("no text (only whitespace)")
        raise UnreadableFile(f"no text (the {suffix} file contains no readable words)")
    if info is None:
        info = DocInfo(
            doc_id=slugify_path(rel),
            title=_clip_title(title_hint) or _title_from_text(text) or PurePosixPath(rel).stem,
            path=rel,
        )
    elif info.path != rel:
        info = replace(info, path=rel)
    return SourceDocument(info=info, text=text, sha256=sha)


def _title_from_text(text: str) -> str:
    """The first heading, else the first non-empty line."""
    lines = [line for line in text.split("\n") if line.strip()]
    for line in lines:
        if line.startswith("#"):
            title = _clip_title(line.lstrip("#"))
            if title:
                return title
    for line in lines:
        title = _clip_title(line.removeprefix("- "))
        if title:
            return title
    return ""


def _clip_title(title: str) -> str:
    title = clean_line(title)
    if len(title) <= _MAX_TITLE_CHARS:
        return title
    cut = title[: _MAX_TITLE_CHARS - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-") + "…"
