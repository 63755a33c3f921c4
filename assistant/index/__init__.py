"""The index stage: chunks and their vectors in Chroma, sentence vectors and BM25 beside them.

:mod:`~assistant.index.build` writes a build aside and switches to it (resuming an interrupted one
with :mod:`~assistant.index.resume`); :mod:`~assistant.index.snapshot` opens the serving build for
queries; :mod:`~assistant.index.layout` is the folder on disk;
:mod:`~assistant.index.chroma`, :mod:`~assistant.index.sentences` and
:mod:`~assistant.index.lexical` are the three stores a build holds.
"""

from assistant.index.build import WRITE_BATCH, BuildReport, Progress, build_index, check_index_dir
from assistant.index.layout import BUILD_CALIBRATION, BuildMeta, collection_names
from assistant.index.snapshot import IndexHandle, IndexSnapshot, built_backend, open_index

__all__ = [
    "BUILD_CALIBRATION",
    "WRITE_BATCH",
    "BuildMeta",
    "BuildReport",
    "IndexHandle",
    "IndexSnapshot",
    "Progress",
    "build_index",
    "built_backend",
    "check_index_dir",
    "collection_names",
    "open_index",
]
