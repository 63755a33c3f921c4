"""The ingest stage: the corpus folder read into :class:`~assistant.schema.SourceDocument`
values."""

from assistant.ingest.corpus import (
    MANIFEST_NAME,
    SUPPORTED_SUFFIXES,
    check_corpus_dir,
    corpus_files,
    ingest,
    load_manifest,
    read_document,
    slugify_path,
)
from assistant.ingest.markdown import normalise_markdown
from assistant.ingest.text import UnreadableFile, normalise_plain_text

__all__ = [
    "MANIFEST_NAME",
    "SUPPORTED_SUFFIXES",
    "UnreadableFile",
    "check_corpus_dir",
    "corpus_files",
    "ingest",
    "load_manifest",
    "normalise_markdown",
    "normalise_plain_text",
    "read_document",
    "slugify_path",
]
