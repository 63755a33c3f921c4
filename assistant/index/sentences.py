"""Sentence vectors of a build: a float16 array on disk beside the build, read through a memory
map.

Every sentence (unit) of every chunk is embedded on its own, so that a question can be matched
to the one sentence it asks about. These vectors are only ever fetched for the candidate passages
of a question, never searched; keeping them in Chroma would cost a round trip per question and,
because Chroma loads a collection's whole vector index into memory on first use, about 1.5 KB of
resident memory per sentence (650 MB at 100k chunks). Here they cost a memory map.

Layout of a build's ``sentences/`` folder::

    vectors.f16   rows of ``dimension`` float16 values, appended a batch at a time
    rows.tsv      one line per chunk: chunk id, first row, number of rows; written after the rows
                  themselves are on disk, so a chunk listed there is whole (what resuming needs)

A later line for the same chunk replaces an earlier one (a resumed build re-embedding a chunk
cut off mid-write); rows nothing points at are dead weight until the next build, which writes
a fresh folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from assistant.chunking import parse_unit_id, unit_id

__all__ = ["FOLDER", "SentenceSource", "SentenceVectors", "SentenceWriter"]

FOLDER = "sentences"
DTYPE = np.float16
_VECTORS = "vectors.f16"
_ROWS = "rows.tsv"


class SentenceSource(Protocol):
    """Where stored sentence vectors can be read by unit id (this module's files, or the Chroma
    collection that held them in indexes of format 1)."""

    def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]: ...

    def count(self) -> int: ...


def _read_rows(path: Path) -> tuple[dict[str, tuple[int, int]], int]:
    """The chunks listed in ``rows.tsv`` (the last line of each wins) and how many bytes of
    the file are whole lines (a kill can leave half a line at the end)."""
    rows: dict[str, tuple[int, int]] = {}
    whole = 0
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return rows, 0
    for line in data.splitlines(keepends=True):
        parts = line.decode("utf-8", "replace").rstrip("\n").split("\t")
        if not line.endswith(b"\n") or len(parts) != 3:
            break
        try:
            rows[parts[0]] = (int(parts[1]), int(parts[2]))
        except ValueError:
            break
        whole += len(line)
    return rows, whole


class SentenceVectors:
    """A finished build's sentence vectors, read-only (``count`` and ``embeddings`` by unit id,
    as float32)."""

    def __init__(self, folder: Path, dimension: int) -> None:
        self.folder = folder
        self.dimension = dimension
        self._rows, _ = _read_rows(folder / _ROWS)
        size = (folder / _VECTORS).stat().st_size if (folder / _VECTORS).exists() else 0
        n = size // (dimension * np.dtype(DTYPE).itemsize)
        self._array: np.ndarray[Any, Any] = (
            np.memmap(folder / _VECTORS, dtype=DTYPE, mode="r", shape=(n, dimension))
            if n
            else np.zeros((0, dimension), dtype=DTYPE)
        )
        self._count = sum(count for _, count in self._rows.values())

    def count(self) -> int:
        return self._count

    def chunks(self) -> set[str]:
        return set(self._rows)

    def of_chunk(self, chunk_id: str) -> np.ndarray[Any, Any] | None:
        """All sentence vectors of a chunk, in order (float32), or None if it has none here."""
        where = self._rows.get(chunk_id)
        if where is None or where[0] + where[1] > len(self._array):
            return None
        start, count = where
        return np.asarray(self._array[start : start + count], dtype=np.float32)

    def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]:
        out: dict[str, np.ndarray[Any, Any]] = {}
        cache: dict[str, np.ndarray[Any, Any] | None] = {}
        for uid in ids:
            chunk_id, position = parse_unit_id(uid)
            if chunk_id not in cache:
                cache[chunk_id] = self.of_chunk(chunk_id)
            vecs = cache[chunk_id]
            if vecs is not None and position is not None and position < len(vecs):
                out[uid] = vecs[position]
        return out


class SentenceWriter:
    """Appends sentence vectors to a build's folder, durably: each batch's rows are synced to
    disk before its lines in ``rows.tsv``. Opening a folder that an interrupted build left
    carries on from its last whole batch."""

    def __init__(self, folder: Path, dimension: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.dimension = dimension
        self._row_bytes = dimension * np.dtype(DTYPE).itemsize
        rows, whole = _read_rows(folder / _ROWS)
        vectors = folder / _VECTORS
        held = (vectors.stat().st_size if vectors.exists() else 0) // self._row_bytes
        # a line pointing past the rows on disk (a write lost despite the sync) is dropped
        self._rows = {cid: r for cid, r in rows.items() if r[0] + r[1] <= held}
        self._end = max((s + c for s, c in self._rows.values()), default=0)
        if len(self._rows) < len(rows):
            self._rewrite_rows()
        else:
            with (folder / _ROWS).open("ab") as f:  # drop a half-written line
                f.truncate(whole)
        with vectors.open("ab") as f:  # and rows no line points at
            f.truncate(self._end * self._row_bytes)
        self._vectors = vectors.open("ab")
        self._lines = (folder / _ROWS).open("ab")

    def has(self, chunk_id: str) -> bool:
        return chunk_id in self._rows

    def add(self, chunks: Sequence[tuple[str, int]], vectors: np.ndarray[Any, Any]) -> None:
        """``chunks``: (chunk id, number of its sentences), in the order of ``vectors``' rows."""
        if sum(n for _, n in chunks) != len(vectors):
            raise ValueError("sentence counts do not match the vectors given")
        if len(vectors) and vectors.shape[1] != self.dimension:
            raise ValueError(f"vectors of dimension {vectors.shape[1]}, not {self.dimension}")
        self._vectors.write(np.ascontiguousarray(vectors, dtype=DTYPE).tobytes())
        self._vectors.flush()
        os.fsync(self._vectors.fileno())
        lines = []
        for chunk_id, n in chunks:
            self._rows[chunk_id] = (self._end, n)
            lines.append(f"{chunk_id}\t{self._end}\t{n}\n")
            self._end += n
        self._lines.write("".join(lines).encode("utf-8"))
        self._lines.flush()
        os.fsync(self._lines.fileno())

    def copy_from(
        self,
        source: SentenceSource,
        chunks: Iterable[tuple[str, int]],
        page: int = 4000,
        progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Copy the sentence vectors of ``chunks`` (chunk id, number of sentences) from another
        build without re-embedding them; returns the chunk ids ``source`` lacks some of.
        ``progress`` is told how many chunks are done after each page."""
        lacking: list[str] = []
        batch: list[tuple[str, int]] = []
        size = done = 0

        def flush() -> None:
            ids = [unit_id(cid, j) for cid, n in batch for j in range(n)]
            found = source.embeddings(ids)
            whole = [(cid, n) for cid, n in batch
                     if all(unit_id(cid, j) in found for j in range(n))]  # fmt: skip
            have = {cid for cid, _ in whole}
            lacking.extend(cid for cid, _ in batch if cid not in have)
            rows = [found[unit_id(cid, j)] for cid, n in whole for j in range(n)]
            if whole:
                empty = np.zeros((0, self.dimension), dtype=np.float32)
                self.add(whole, np.stack(rows) if rows else empty)
            nonlocal done
            done += len(batch)
            if progress:
                progress(done)

        for chunk_id, n in chunks:
            batch.append((chunk_id, n))
            size += n
            if size >= page:
                flush()
                batch, size = [], 0
        if batch:
            flush()
        return lacking

    def keep_only(self, chunk_ids: set[str]) -> None:
        """Rewrite ``rows.tsv`` to list only ``chunk_ids`` (chunks gone from the corpus since an
        interrupted build started are dropped); their rows stay as dead weight."""
        self._lines.close()
        self._rows = {cid: r for cid, r in self._rows.items() if cid in chunk_ids}
        self._rewrite_rows()
        self._lines = (self.folder / _ROWS).open("ab")

    def _rewrite_rows(self) -> None:
        """``rows.tsv`` replaced, atomically, by exactly the chunks in ``self._rows``."""
        text = "".join(f"{cid}\t{s}\t{n}\n" for cid, (s, n) in self._rows.items())
        tmp = self.folder / f".{_ROWS}.tmp"
        with tmp.open("wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / _ROWS)

    def close(self) -> None:
        self._vectors.close()
        self._lines.close()

    def __enter__(self) -> SentenceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
