"""Sentence vectors on disk: written durably, read back by unit id, carried on after a kill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.chunking import unit_id
from assistant.index.sentences import SentenceVectors, SentenceWriter

DIM = 8


def unit_vectors(n: int, seed: int = 0) -> np.ndarray[Any, Any]:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_vectors_come_back_by_unit_id_within_float16_precision(tmp_path: Path) -> None:
    vecs = unit_vectors(5)
    writer = SentenceWriter(tmp_path, DIM)
    writer.add([("doc#with#hashes-3", 2), ("plain-1", 3)], vecs)
    writer.close()

    read = SentenceVectors(tmp_path, DIM)
    assert read.count() == 5
    got = read.embeddings([unit_id("plain-1", 2), unit_id("doc#with#hashes-3", 0),
                           unit_id("plain-1", 3), "missing-9#0", "plain-1#x"])  # fmt: skip
    assert set(got) == {"plain-1#2", "doc#with#hashes-3#0"}  # no 4th sentence, no such chunk
    assert np.abs(got["plain-1#2"] - vecs[4]).max() < 1e-3
    assert np.abs(got["doc#with#hashes-3#0"] - vecs[0]).max() < 1e-3
    assert got["plain-1#2"].dtype == np.float32
    chunk = read.of_chunk("plain-1")
    assert chunk is not None
    assert chunk.shape == (3, DIM)
    assert read.of_chunk("missing-9") is None


def test_an_empty_folder_reads_as_no_vectors(tmp_path: Path) -> None:
    read = SentenceVectors(tmp_path / "nothing", DIM)
    assert read.count() == 0
    assert read.embeddings(["a#0"]) == {}


def test_counts_that_do_not_match_the_vectors_are_refused(tmp_path: Path) -> None:
    writer = SentenceWriter(tmp_path, DIM)
    with pytest.raises(ValueError, match="do not match"):
        writer.add([("a", 2)], unit_vectors(3))
    writer.close()


def test_a_chunk_written_again_replaces_its_earlier_rows(tmp_path: Path) -> None:
    first, second = unit_vectors(2, seed=1), unit_vectors(2, seed=2)
    writer = SentenceWriter(tmp_path, DIM)
    writer.add([("a", 2)], first)
    writer.add([("a", 2)], second)  # a resumed build re-embedding a chunk cut off mid-write
    writer.close()
    read = SentenceVectors(tmp_path, DIM)
    assert read.count() == 2
    assert np.abs(read.embeddings(["a#1"])["a#1"] - second[1]).max() < 1e-3


def test_a_writer_reopened_after_a_kill_drops_the_torn_tail(tmp_path: Path) -> None:
    vecs = unit_vectors(4)
    writer = SentenceWriter(tmp_path, DIM)
    writer.add([("a", 2)], vecs[:2])
    writer.close()
    # killed mid-batch: some rows written, and half a line for them
    with (tmp_path / "vectors.f16").open("ab") as f:
        f.write(np.ones((3, DIM), dtype=np.float16).tobytes())
    with (tmp_path / "rows.tsv").open("ab") as f:
        f.write(b"b\t2\t")

    writer = SentenceWriter(tmp_path, DIM)
    assert writer.has("a")
    assert not writer.has("b")
    writer.add([("b", 2)], vecs[2:])
    writer.close()
    read = SentenceVectors(tmp_path, DIM)
    assert read.count() == 4
    assert (tmp_path / "vectors.f16").stat().st_size == 4 * DIM * 2  # the torn rows are gone
    assert np.abs(read.embeddings(["b#0"])["b#0"] - vecs[2]).max() < 1e-3


def test_copy_from_another_build_reports_what_it_lacks(tmp_path: Path) -> None:
    vecs = unit_vectors(5)
    old = SentenceWriter(tmp_path / "old", DIM)
    old.add([("a", 2), ("b", 3)], vecs)
    old.close()

    new = SentenceWriter(tmp_path / "new", DIM)
    # "b" now has a 4th sentence the old build never embedded; "c" is new
    lacking = new.copy_from(SentenceVectors(tmp_path / "old", DIM), [("a", 2), ("b", 4), ("c", 1)],
                            page=2)  # fmt: skip
    assert lacking == ["b", "c"]
    new.keep_only({"a", "c"})
    new.close()
    read = SentenceVectors(tmp_path / "new", DIM)
    assert read.chunks() == {"a"}
    assert np.abs(read.of_chunk("a") - vecs[:2]).max() < 1e-3  # type: ignore[operator]


def test_a_line_pointing_past_the_rows_on_disk_is_dropped_for_good(tmp_path: Path) -> None:
    vecs = unit_vectors(4)
    writer = SentenceWriter(tmp_path, DIM)
    writer.add([("a", 2), ("b", 2)], vecs)
    writer.close()
    with (tmp_path / "vectors.f16").open("ab") as f:  # b's rows lost, its line kept
        f.truncate(2 * DIM * 2)

    writer = SentenceWriter(tmp_path, DIM)
    assert writer.has("a")
    assert not writer.has("b")
    writer.add([("c", 1)], vecs[3:])  # c takes the rows b's line pointed at
    writer.close()
    read = SentenceVectors(tmp_path, DIM)
    assert read.chunks() == {"a", "c"}  # b does not come back pointing at c's row
    assert np.abs(read.embeddings(["c#0"])["c#0"] - vecs[3]).max() < 1e-3
