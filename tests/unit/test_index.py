"""The index on disk, built with the fake embedder into a real (persistent) Chroma on tmp_path."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import TINY_CORPUS, TINY_MANIFEST, FakeEmbedder, write_corpus
from legacy import to_format_1

from assistant.chunking import split_units, unit_id
from assistant.errors import (
    CorpusError,
    IndexBuildError,
    IndexError_,
    IndexModelMismatchError,
    IndexNotBuiltError,
)
from assistant.index import BuildMeta, IndexHandle, IndexSnapshot, build_index, open_index
from assistant.index.chroma import persistent_client, release_client
from assistant.index.sentences import SentenceVectors
from assistant.retrieval import hybrid_search

NEW_LIGHTHOUSE = (
    "Lighthouse keepers polish the brass telescopes every morning and report storms to the "
    "coastguard station."
)


def current(index_dir: Path) -> str:
    return str(json.loads((index_dir / "CURRENT").read_text())["build"])


def build_dirs(index_dir: Path) -> list[str]:
    return sorted(p.name for p in (index_dir / "builds").iterdir())


@pytest.fixture
def open_snapshot(fake_embedder: FakeEmbedder) -> Iterator[Callable[[Path], IndexSnapshot]]:
    opened: list[IndexSnapshot] = []

    def opener(index_dir: Path) -> IndexSnapshot:
        snap = open_index(index_dir, fake_embedder.model_name)
        opened.append(snap)
        return snap

    yield opener
    for snap in opened:
        snap.close()


def top_texts(snap: IndexSnapshot, embedder: FakeEmbedder, query: str, k: int = 3) -> list[str]:
    vec = embedder.encode([query])[0].tolist()
    return [p.chunk.text for p in hybrid_search(snap, query, vec, k)]


def edit_lighthouses(corpus: Path) -> None:
    path = corpus / "harbours.md"
    old = "Lighthouse keepers inspect the lamps every evening and record faults in the keeper log."
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, NEW_LIGHTHOUSE))


# -- building -------------------------------------------------------------------------------------


def assert_sentences_match(snap: IndexSnapshot, embedder: FakeEmbedder) -> None:
    """Every stored chunk has exactly its own sentences' vectors, in order, and no more."""
    stored = snap.store.get(sorted(snap.store.ids()))
    assert snap.units.count() == sum(len(split_units(c.text)) for c in stored)
    for c in stored:
        texts = [t for t, _ in split_units(c.text)]
        ids = [unit_id(c.chunk_id, j) for j in range(len(texts))]
        got = snap.units.embeddings(ids)
        assert list(got) == ids
        want = embedder.encode(texts)
        assert np.abs(np.stack([got[i] for i in ids]) - want).max() < 2e-3, c.chunk_id


def test_build_makes_current_point_to_a_finished_build(
    tiny_corpus: Path,
    tmp_path: Path,
    fake_embedder: FakeEmbedder,
    open_snapshot: Callable[[Path], IndexSnapshot],
) -> None:
    index_dir = tmp_path / "index"
    seen: list[tuple[str, int, int]] = []
    report = build_index(tiny_corpus, index_dir, fake_embedder, progress=lambda *a: seen.append(a))
    assert (report.documents, report.chunks) == (3, 6)
    assert (report.embedded, report.reused, report.removed) == (6, 0, 0)
    assert report.changed is True
    assert report.skipped == []

    assert current(index_dir) == report.build_id
    assert build_dirs(index_dir) == [report.build_id]
    folder = index_dir / "builds" / report.build_id
    assert (folder / "chroma").is_dir()
    assert (folder / "lexical" / "ids.json").is_file()
    meta = BuildMeta.read(folder)
    assert meta.build_id == report.build_id
    assert meta.embed_model == "fake-hash"
    assert meta.dimension == 256
    assert meta.chunk_count == 6
    assert set(meta.files) == {"harbours.md", "orchards.md", "widgets.md"}

    snap = open_snapshot(index_dir)
    assert snap.build_id == report.build_id
    assert snap.store.count() == 6
    assert len(snap.lexical) == 6
    chunks = snap.store.get(sorted(snap.store.ids()))
    assert snap.units.count() == sum(len(split_units(c.text)) for c in chunks)

    assert [done for stage, done, _ in seen if stage == "read"] == [1, 2, 3]
    assert seen[-2:] == [("embed", 0, 6), ("embed", 6, 6)]


def test_read_progress_reaches_its_total(
    tiny_corpus: Path, tmp_path: Path, fake_embedder: FakeEmbedder
) -> None:
    """The total counts the files of the corpus, not the manifest, hidden files or README."""
    write_corpus(tiny_corpus, {"README.md": "# About", ".hidden.md": "# Secret", ".git/x": "x"})
    seen: list[tuple[str, int, int]] = []
    build_index(tiny_corpus, tmp_path / "index", fake_embedder, progress=lambda *a: seen.append(a))
    reads = [(done, total) for stage, done, total in seen if stage == "read"]
    assert reads == [(1, 3), (2, 3), (3, 3)]


def test_rerun_unchanged_embeds_nothing(
    tiny_corpus: Path,
    tiny_index: Path,
    fake_embedder: FakeEmbedder,
    open_snapshot: Callable[[Path], IndexSnapshot],
) -> None:
    first = current(tiny_index)
    encoded = fake_embedder.texts_encoded
    report = build_index(tiny_corpus, tiny_index, fake_embedder)
    assert (report.embedded, report.reused, report.removed) == (0, 6, 0)
    assert report.changed is False
    assert fake_embedder.texts_encoded == encoded
    assert current(tiny_index) == report.build_id != first
    snap = open_snapshot(tiny_index)
    assert snap.store.count() == 6
    assert top_texts(snap, fake_embedder, "Who hosts the apple archive?", 1)[0].startswith(
        "The apple archive"
    )


def test_editing_one_file_re_embeds_only_its_changed_chunks(
    tiny_corpus: Path,
    tiny_index: Path,
    fake_embedder: FakeEmbedder,
    open_snapshot: Callable[[Path], IndexSnapshot],
) -> None:
    before = open_snapshot(tiny_index)
    old_ids = before.store.ids()
    (old_chunk,) = [c for c in before.store.get(sorted(old_ids)) if "keeper log" in c.text]
    encoded = fake_embedder.texts_encoded

    edit_lighthouses(tiny_corpus)
    report = build_index(tiny_corpus, tiny_index, fake_embedder)
    assert (report.embedded, report.reused, report.removed) == (1, 5, 1)
    assert report.changed is True
    # one chunk and its sentences, nothing else
    assert fake_embedder.texts_encoded - encoded == 1 + len(split_units(NEW_LIGHTHOUSE))

    after = open_snapshot(tiny_index)
    new_ids = after.store.ids()
    assert old_chunk.chunk_id not in new_ids
    assert len(new_ids - old_ids) == 1
    assert after.store.get([old_chunk.chunk_id]) == []
    assert isinstance(after.units, SentenceVectors)
    assert after.units.chunks() == new_ids  # the old chunk's sentences went with it
    assert_sentences_match(after, fake_embedder)
    assert top_texts(after, fake_embedder, "brass telescopes storms coastguard", 1) == [
        NEW_LIGHTHOUSE
    ]
    assert all("keeper log" not in t for t in top_texts(after, fake_embedder, "keeper log", 6))


def test_deleting_a_file_removes_its_chunks(
    tiny_corpus: Path,
    tiny_index: Path,
    fake_embedder: FakeEmbedder,
    open_snapshot: Callable[[Path], IndexSnapshot],
) -> None:
    (tiny_corpus / "orchards.md").unlink()
    report = build_index(tiny_corpus, tiny_index, fake_embedder)
    assert (report.documents, report.chunks) == (2, 4)
    assert (report.embedded, report.reused, report.removed) == (0, 4, 2)
    assert report.changed is True
    snap = open_snapshot(tiny_index)
    assert all(not cid.startswith("orchards:") for cid in snap.store.ids())
    assert all(not cid.startswith("orchards:") for cid in snap.lexical.ids)
    assert "orchards.md" not in snap.meta.files
    found = top_texts(snap, fake_embedder, "Who hosts the apple archive?", 4)
    assert all("apple" not in t for t in found)


def test_manifest_change_updates_metadata_without_re_embedding(
    tiny_corpus: Path,
    tiny_index: Path,
    fake_embedder: FakeEmbedder,
    open_snapshot: Callable[[Path], IndexSnapshot],
) -> None:
    manifest = json.loads(json.dumps(TINY_MANIFEST))
    manifest["documents"][0].update(status="historical", era="2001", note="Replaced in 2005.")
    (tiny_corpus / "manifest.json").write_text(json.dumps(manifest))
    report = build_index(tiny_corpus, tiny_index, fake_embedder)
    assert (report.embedded, report.reused, report.removed) == (0, 6, 0)
    snap = open_snapshot(tiny_index)
    vec = fake_embedder.encode(["widget budget"])[0].tolist()
    top = hybrid_search(snap, "widget budget", vec, 1)[0].chunk
    assert top.doc.doc_id == "widgets"
    assert (top.doc.status, top.doc.era, top.doc.note) == (
        "historical",
        "2001",
        "Replaced in 2005.",
    )


def test_another_model_or_rebuild_re_embeds_everything(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    report = build_index(tiny_corpus, tiny_index, fake_embedder, rebuild=True)
    assert (report.embedded, report.reused) == (6, 0)
    other = FakeEmbedder(model_name="fake-other")
    report = build_index(tiny_corpus, tiny_index, other)
    assert (report.embedded, report.reused) == (6, 0)
    assert BuildMeta.read(tiny_index / "builds" / current(tiny_index)).embed_model == "fake-other"


def test_only_the_serving_and_previous_builds_are_kept(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    first = current(tiny_index)
    second = build_index(tiny_corpus, tiny_index, fake_embedder).build_id
    third = build_index(tiny_corpus, tiny_index, fake_embedder).build_id
    assert build_dirs(tiny_index) == sorted([second, third])
    assert first not in build_dirs(tiny_index)


def test_missing_corpus_folder_is_a_corpus_error(
    tmp_path: Path, fake_embedder: FakeEmbedder
) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        build_index(tmp_path / "nowhere", tmp_path / "index", fake_embedder)


# -- opening --------------------------------------------------------------------------------------


def test_open_with_another_model_says_rebuild(tiny_index: Path) -> None:
    with pytest.raises(IndexModelMismatchError) as caught:
        open_index(tiny_index, "another-model")
    message = str(caught.value)
    assert "rebuild" in message
    assert "fake-hash" in message
    assert "another-model" in message
    assert caught.value.exit_code == 4
    with pytest.raises(IndexModelMismatchError):
        IndexHandle(tiny_index, "another-model").get()


def test_no_index_says_how_to_build_one(tmp_path: Path) -> None:
    for folder in (tmp_path / "never-created", tmp_path):
        with pytest.raises(IndexNotBuiltError, match="`assistant index`"):
            open_index(folder, "fake-hash")
    with pytest.raises(IndexNotBuiltError, match="`assistant index`"):
        IndexHandle(tmp_path, "fake-hash").get()


def test_damaged_build_says_rebuild(tiny_index: Path) -> None:
    (tiny_index / "builds" / current(tiny_index) / "meta.json").write_text("{not json")
    with pytest.raises(IndexNotBuiltError, match="--rebuild"):
        open_index(tiny_index, "fake-hash")


def test_current_pointing_to_a_missing_build_is_rebuilt(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    (tiny_index / "CURRENT").write_text(json.dumps({"build": "gone"}))
    with pytest.raises(IndexNotBuiltError, match="rebuild"):
        open_index(tiny_index, "fake-hash")
    report = build_index(tiny_corpus, tiny_index, fake_embedder)
    assert report.embedded == 6
    assert open_index(tiny_index, "fake-hash").build_id == report.build_id


def test_unreadable_current_can_be_rebuilt(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    (tiny_index / "CURRENT").write_text("{truncated")
    with pytest.raises(IndexError_, match="rebuild"):
        open_index(tiny_index, "fake-hash")
    report = build_index(tiny_corpus, tiny_index, fake_embedder, rebuild=True)
    assert current(tiny_index) == report.build_id


def test_handle_picks_up_a_new_build(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    handle = IndexHandle.of(tiny_index, fake_embedder)
    first = handle.get()
    assert handle.get() is first  # same build: same snapshot
    assert handle.info()["build"] == first.build_id
    assert handle.info()["chunks"] == 6
    edit_lighthouses(tiny_corpus)
    report = build_index(tiny_corpus, tiny_index, fake_embedder)
    second = handle.get()
    assert second is not first
    assert second.build_id == report.build_id
    assert handle.info()["build"] == report.build_id
    assert top_texts(second, fake_embedder, "brass telescopes coastguard", 1) == [NEW_LIGHTHOUSE]
    first.close()
    second.close()


def test_handle_keeps_serving_when_a_new_build_is_embedded_another_way(
    tiny_corpus: Path,
    tiny_index: Path,
    fake_embedder: FakeEmbedder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handle = IndexHandle.of(tiny_index, fake_embedder)
    first = handle.get()
    other = FakeEmbedder()
    other.backend = "openvino-bf16"  # e.g. the indexer run with other settings than the server
    build_index(tiny_corpus, tiny_index, other)
    assert handle.get() is first  # the questions' vectors would not match the new build's
    assert handle.get() is first
    refusals = [r for r in caplog.records if "still serving build" in r.getMessage()]
    assert len(refusals) == 1  # logged once, not on every question
    assert "embedded with the openvino-bf16 backend" in refusals[0].getMessage()
    assert top_texts(first, fake_embedder, "brass telescopes coastguard", 1)
    report = build_index(tiny_corpus, tiny_index, fake_embedder)  # rebuilt the matching way
    assert handle.get().build_id == report.build_id
    with pytest.raises(IndexModelMismatchError):  # nothing to keep serving: refused outright
        IndexHandle.of(tiny_index, other).get()
    handle.close()


def test_handle_closes_a_snapshot_two_builds_old(
    tiny_corpus: Path,
    tiny_index: Path,
    fake_embedder: FakeEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[str] = []
    original = IndexSnapshot.close

    def record(self: IndexSnapshot) -> None:
        closed.append(self.build_id)
        original(self)

    monkeypatch.setattr(IndexSnapshot, "close", record)
    handle = IndexHandle.of(tiny_index, fake_embedder)
    builds = [handle.get().build_id]
    for _ in range(3):
        builds.append(build_index(tiny_corpus, tiny_index, fake_embedder, rebuild=True).build_id)
        assert handle.get().build_id == builds[-1]
        assert top_texts(handle.get(), fake_embedder, "brass telescopes coastguard", 1)
    # the one replaced last stays open for requests still holding it; older ones are closed
    assert closed == builds[:2]


# -- failures leave the previous build serving -------------------------------------------------


def fail_on_call(
    embedder: FakeEmbedder, monkeypatch: pytest.MonkeyPatch, call: int, error: Exception
) -> None:
    real = embedder.encode

    def encode(texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        if embedder.calls + 1 == call:
            embedder.calls += 1
            raise error
        return real(texts)

    monkeypatch.setattr(embedder, "encode", encode)


def assert_still_serving(index_dir: Path, build_id: str, embedder: FakeEmbedder) -> None:
    assert current(index_dir) == build_id
    assert not list((index_dir / "builds").glob("*.partial"))
    snap = open_index(index_dir, embedder.model_name)
    try:
        assert snap.build_id == build_id
        texts = top_texts(snap, embedder, "lighthouse keeper lamps", 1)
        assert texts[0].startswith("Lighthouse keepers inspect the lamps")
    finally:
        snap.close()


def test_os_error_mid_build_keeps_the_previous_build(
    tiny_corpus: Path,
    tmp_path: Path,
    fake_embedder: FakeEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index_dir = tmp_path / "index"
    fail_on_call(fake_embedder, monkeypatch, 2, OSError(28, "No space left on device"))
    first = build_index(tiny_corpus, index_dir, fake_embedder)  # call 1
    handle = IndexHandle.of(index_dir, fake_embedder)
    serving = handle.get()

    edit_lighthouses(tiny_corpus)
    with pytest.raises(IndexBuildError) as caught:
        build_index(tiny_corpus, index_dir, fake_embedder)  # call 2 fails
    assert "No space left on device" in str(caught.value)
    assert "previous index keeps serving" in str(caught.value)
    assert_still_serving(index_dir, first.build_id, fake_embedder)
    assert handle.get() is serving

    report = build_index(tiny_corpus, index_dir, fake_embedder)  # call 3 works
    assert report.embedded == 1
    assert not list((index_dir / "builds").glob("*.partial"))
    assert handle.get().build_id == report.build_id
    serving.close()
    handle.get().close()


def test_unexpected_error_mid_build_keeps_the_previous_build(
    tiny_corpus: Path,
    tiny_index: Path,
    fake_embedder: FakeEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = current(tiny_index)
    fail_on_call(fake_embedder, monkeypatch, fake_embedder.calls + 1, RuntimeError("model crashed"))
    edit_lighthouses(tiny_corpus)
    with pytest.raises(RuntimeError, match="model crashed"):
        build_index(tiny_corpus, tiny_index, fake_embedder)
    assert_still_serving(tiny_index, first, fake_embedder)


def test_failure_in_a_later_batch_leaves_no_partial_build(
    tiny_corpus: Path,
    tiny_index: Path,
    fake_embedder: FakeEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches of 100 of 300 new chunks: the first is written before the second one fails."""
    first = current(tiny_index)
    write_bulletins(tiny_corpus)
    fail_on_call(fake_embedder, monkeypatch, fake_embedder.calls + 2, OSError(5, "I/O error"))
    with pytest.raises(IndexBuildError, match="I/O error"):
        build_index(tiny_corpus, tiny_index, fake_embedder, batch=100)
    assert_still_serving(tiny_index, first, fake_embedder)


def test_stale_partial_build_is_removed_by_the_next_build(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    stale = tiny_index / "builds" / "20200101T000000-deadbeef.partial"
    (stale / "chroma").mkdir(parents=True)
    (stale / "chroma" / "junk").write_text("half written")
    report = build_index(tiny_corpus, tiny_index, fake_embedder)
    assert not stale.exists()
    assert current(tiny_index) == report.build_id


def test_corpus_of_only_bad_files_keeps_the_previous_index(
    tmp_path: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    first = current(tiny_index)
    bad = write_corpus(tmp_path / "bad", {"empty.txt": b"", "binary.txt": b"ab\x00cd"})
    with pytest.raises(IndexBuildError) as caught:
        build_index(bad, tiny_index, fake_embedder)
    assert "no readable documents" in str(caught.value)
    assert "2 skipped" in str(caught.value)
    assert_still_serving(tiny_index, first, fake_embedder)


def test_empty_corpus_folder_is_a_build_error(tmp_path: Path, fake_embedder: FakeEmbedder) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexBuildError, match="no readable documents"):
        build_index(tmp_path / "empty", tmp_path / "index", fake_embedder)
    assert not (tmp_path / "index" / "CURRENT").exists()


def test_read_only_index_folder_is_a_clear_build_error(
    tiny_corpus: Path, tmp_path: Path, fake_embedder: FakeEmbedder
) -> None:
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    index_dir.chmod(0o555)
    try:
        if os.access(index_dir, os.W_OK):
            pytest.skip("running as root: chmod does not stop writes")
        with pytest.raises(IndexBuildError) as caught:
            build_index(tiny_corpus, index_dir, fake_embedder)
        assert f"cannot write to the index folder {index_dir}" in str(caught.value)
        assert "Permission denied" in str(caught.value)
    finally:
        index_dir.chmod(0o755)


def test_index_folder_that_cannot_be_created_is_a_clear_build_error(
    tiny_corpus: Path, tmp_path: Path, fake_embedder: FakeEmbedder
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    index_dir = tmp_path / "a-file" / "index"
    with pytest.raises(IndexBuildError) as caught:
        build_index(tiny_corpus, index_dir, fake_embedder)
    assert f"cannot write to the index folder {index_dir}" in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_concurrent_build_is_refused(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    first = current(tiny_index)
    with (tiny_index / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            with pytest.raises(IndexBuildError, match="another build"):
                build_index(tiny_corpus, tiny_index, fake_embedder)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    assert current(tiny_index) == first


def test_tiny_corpus_files_are_as_written(tiny_corpus: Path) -> None:
    assert sorted(p.name for p in tiny_corpus.iterdir()) == sorted([*TINY_CORPUS, "manifest.json"])


# -- resuming an interrupted build ---------------------------------------------------------------


def write_bulletins(corpus: Path, n: int = 300) -> None:
    # each under its own heading: one passage each, however passages are packed
    paragraphs = [
        f"## Bulletin {i}\n\nBulletin {i} reports that the harbour committee met and agreed item "
        f"{i} of the plan for the coming season, with the minutes filed as note {i}."
        for i in range(n)
    ]
    write_corpus(corpus, {"bulletins.md": "# Bulletins\n\n" + "\n\n".join(paragraphs)})


def interrupt_after(done_at_least: int) -> Callable[[str, int, int], None]:
    """A progress callback that presses Ctrl-C once ``done_at_least`` chunks are written."""

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "embed" and done >= done_at_least:
            raise KeyboardInterrupt

    return progress


def partials(index_dir: Path) -> list[Path]:
    return sorted((index_dir / "builds").glob("*.partial"))


def assert_whole(index_dir: Path, embedder: FakeEmbedder, chunks: int) -> None:
    """The serving build has every chunk once and exactly the sentences of its chunks."""
    snap = open_index(index_dir, embedder.model_name)
    try:
        assert snap.store.count() == chunks == len(snap.lexical)
        assert_sentences_match(snap, embedder)
        assert "Bulletin 250 " in top_texts(snap, embedder, "bulletin 250 item 250 note 250", 1)[0]
    finally:
        snap.close()


def test_interrupted_build_is_resumed_where_it_stopped(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    serving = current(tiny_index)
    write_bulletins(tiny_corpus)
    with pytest.raises(KeyboardInterrupt):
        build_index(tiny_corpus, tiny_index, fake_embedder, batch=100,
                    progress=interrupt_after(100))  # fmt: skip
    assert current(tiny_index) == serving  # the interrupted build never served
    [left] = partials(tiny_index)
    assert (left / "resume.json").is_file()

    encoded = fake_embedder.texts_encoded
    report = build_index(tiny_corpus, tiny_index, fake_embedder, batch=100)
    assert report.resumed is True
    assert report.build_id == left.name.removesuffix(".partial") == current(tiny_index)
    assert (report.embedded, report.reused) == (200, 106)  # 100 bulletins were already in
    assert fake_embedder.texts_encoded - encoded < 200 * 3  # 200 chunks and their sentences
    assert partials(tiny_index) == []
    assert_whole(tiny_index, fake_embedder, 306)


def test_build_cut_between_sentences_and_chunks_resumes_without_duplicates(
    tiny_corpus: Path,
    tiny_index: Path,
    fake_embedder: FakeEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed after a batch's sentences were written but before its chunks: the resumed build
    embeds those chunks again and their sentences are replaced, not doubled."""
    from assistant.index.chroma import ChromaStore

    write_bulletins(tiny_corpus)
    real_add = ChromaStore.add
    calls = 0

    def add(self: ChromaStore, chunks: Sequence[Any], embeddings: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        real_add(self, chunks, embeddings)

    monkeypatch.setattr(ChromaStore, "add", add)
    with pytest.raises(KeyboardInterrupt):
        build_index(tiny_corpus, tiny_index, fake_embedder, batch=100)
    monkeypatch.setattr(ChromaStore, "add", real_add)

    report = build_index(tiny_corpus, tiny_index, fake_embedder, batch=100)
    assert report.resumed is True
    assert (report.embedded, report.reused) == (200, 106)
    assert_whole(tiny_index, fake_embedder, 306)


def test_partial_of_another_model_is_deleted_not_resumed(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    write_bulletins(tiny_corpus)
    other = FakeEmbedder("fake-other")
    with pytest.raises(KeyboardInterrupt):
        build_index(tiny_corpus, tiny_index, other, batch=100, progress=interrupt_after(100))
    [left] = partials(tiny_index)

    report = build_index(tiny_corpus, tiny_index, fake_embedder, batch=100)
    assert report.resumed is False
    assert not left.exists()
    assert (report.embedded, report.reused) == (300, 6)
    assert_whole(tiny_index, fake_embedder, 306)


def test_a_build_resumes_only_an_interrupted_build_of_its_kind(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    write_bulletins(tiny_corpus)
    with pytest.raises(KeyboardInterrupt):
        build_index(tiny_corpus, tiny_index, fake_embedder, batch=100,
                    progress=interrupt_after(100))  # fmt: skip
    report = build_index(tiny_corpus, tiny_index, fake_embedder, batch=100, rebuild=True)
    assert (report.resumed, report.embedded, report.reused) == (False, 306, 0)

    with pytest.raises(KeyboardInterrupt):
        build_index(tiny_corpus, tiny_index, fake_embedder, batch=100, rebuild=True,
                    progress=interrupt_after(100))  # fmt: skip
    report = build_index(tiny_corpus, tiny_index, fake_embedder, batch=100, rebuild=True)
    assert (report.resumed, report.embedded, report.reused) == (True, 206, 100)
    assert_whole(tiny_index, fake_embedder, 306)

    # an update does not carry on a rebuild: the serving build it copies has more in it
    with pytest.raises(KeyboardInterrupt):
        build_index(tiny_corpus, tiny_index, fake_embedder, batch=100, rebuild=True,
                    progress=interrupt_after(100))  # fmt: skip
    report = build_index(tiny_corpus, tiny_index, fake_embedder, batch=100)
    assert (report.resumed, report.embedded, report.reused) == (False, 0, 306)
    assert partials(tiny_index) == []


def test_unreadable_interrupted_build_is_started_afresh(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder, caplog: Any
) -> None:
    """resume.json is there but the store was half-written: the build starts over, and works."""
    write_bulletins(tiny_corpus)
    with pytest.raises(KeyboardInterrupt):
        build_index(tiny_corpus, tiny_index, fake_embedder, batch=100,
                    progress=interrupt_after(100))  # fmt: skip
    [left] = partials(tiny_index)
    for f in (left / "chroma").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\0" * 64)
    report = build_index(tiny_corpus, tiny_index, fake_embedder, batch=100)
    assert report.resumed is False
    assert "cannot resume" in caplog.text
    assert (report.embedded, report.reused) == (300, 6)
    assert partials(tiny_index) == []
    assert_whole(tiny_index, fake_embedder, 306)


def test_partial_left_by_a_kill_during_the_copy_is_not_resumed(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    """No resume.json: the copy of the previous build may be incomplete, so it is deleted."""
    serving = index_build_folder(tiny_index)
    stale = tiny_index / "builds" / "20990101T000000-deadbeef.partial"
    shutil.copytree(serving / "chroma", stale / "chroma")
    report = build_index(tiny_corpus, tiny_index, fake_embedder)
    assert report.resumed is False
    assert not stale.exists()


def index_build_folder(index_dir: Path) -> Path:
    return index_dir / "builds" / current(index_dir)


def test_resumed_build_whose_sentence_file_was_lost_embeds_or_copies_them_again(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    """Chunks in the store without sentence vectors (the file lost after the chunks were
    written): copied from the previous build where it has them, otherwise embedded again."""
    write_bulletins(tiny_corpus)
    with pytest.raises(KeyboardInterrupt):
        build_index(tiny_corpus, tiny_index, fake_embedder, batch=100,
                    progress=interrupt_after(100))  # fmt: skip
    [left] = partials(tiny_index)
    shutil.rmtree(left / "sentences")
    report = build_index(tiny_corpus, tiny_index, fake_embedder, batch=100)
    assert report.resumed is True
    assert (report.embedded, report.reused) == (300, 6)  # the 6 copied, the 100 bulletins redone
    assert_whole(tiny_index, fake_embedder, 306)


# -- indexes of format 1 (sentence vectors in a Chroma collection) -------------------------------


def test_format_1_index_serves_and_the_next_build_moves_its_sentences_without_embedding(
    tiny_corpus: Path,
    tiny_index: Path,
    fake_embedder: FakeEmbedder,
    open_snapshot: Callable[[Path], IndexSnapshot],
) -> None:
    old = index_build_folder(tiny_index)
    client = persistent_client(old / "chroma")
    try:
        moved = to_format_1(old, client, "guidance-units")
    finally:
        release_client(client)
    assert moved > 6
    serving = open_snapshot(tiny_index)
    assert not isinstance(serving.units, SentenceVectors)
    assert_sentences_match(serving, fake_embedder)
    assert "lamps" in top_texts(serving, fake_embedder, "lamps inspected every evening", 1)[0]

    encoded = fake_embedder.texts_encoded
    seen: list[tuple[str, int, int]] = []
    report = build_index(tiny_corpus, tiny_index, fake_embedder, progress=lambda *a: seen.append(a))
    assert (report.embedded, report.reused, report.removed) == (0, 6, 0)
    assert fake_embedder.texts_encoded == encoded  # nothing embedded again
    # the passages copied, then their sentence vectors: both shown
    assert [s for s in seen if s[0] == "copy" and s[1] == s[2]] == [("copy", 6, 6)] * 2
    new = open_snapshot(tiny_index)
    assert BuildMeta.read(index_build_folder(tiny_index)).format == 2
    assert isinstance(new.units, SentenceVectors)
    assert new.units.count() == moved
    assert_sentences_match(new, fake_embedder)
    chroma = index_build_folder(tiny_index) / "chroma"
    client = persistent_client(chroma)
    try:  # no sentence collection in the new build, nor files of one
        assert [c.name for c in client.list_collections()] == ["guidance"]
    finally:
        release_client(client)
    assert len([p for p in chroma.iterdir() if p.is_dir()]) == 1  # the chunks' vectors only


def test_index_of_an_unknown_format_says_rebuild(tiny_index: Path) -> None:
    meta_path = index_build_folder(tiny_index) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(IndexNotBuiltError, match=r"format 99.*--rebuild"):
        open_index(tiny_index, "fake-hash")


def test_each_build_sets_how_widely_the_passage_index_searches(
    tiny_corpus: Path, tiny_index: Path, fake_embedder: FakeEmbedder
) -> None:
    from assistant.settings import DEFAULT_SEARCH_EF

    snap = open_index(tiny_index, fake_embedder.model_name)
    try:
        assert snap.store.search_ef() == DEFAULT_SEARCH_EF
    finally:
        snap.close()
    build_index(tiny_corpus, tiny_index, fake_embedder, search_ef=64)  # a copy of the last build
    snap = open_index(tiny_index, fake_embedder.model_name)
    try:
        assert snap.store.search_ef() == 64
        assert top_texts(snap, fake_embedder, "lamps inspected every evening", 1)
    finally:
        snap.close()


def test_a_build_that_lost_its_sentence_vectors_still_answers_and_says_so(
    tiny_index: Path, fake_embedder: FakeEmbedder, caplog: Any
) -> None:
    shutil.rmtree(index_build_folder(tiny_index) / "sentences")
    snap = open_index(tiny_index, fake_embedder.model_name)
    try:
        assert "no sentence vectors" in caplog.text
        assert "lamps" in top_texts(snap, fake_embedder, "lamps inspected every evening", 1)[0]
    finally:
        snap.close()
