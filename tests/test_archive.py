"""worker.pages.archive: the content-addressed, compressed raw page archive."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import zstandard

from worker.pages.archive import Archive, ArchivedPageCorrupt, ArchiveError, DirectoryArchive

PAGE = b"<html><body>" + b"<p>The harbour authority met again on Tuesday.</p>" * 400 + b"</body>"


def test_put_get_round_trip_content_addressed_and_compressed(tmp_path: Path) -> None:
    archive: Archive = DirectoryArchive(tmp_path / "archive")
    sha, key, stored = archive.put(PAGE)
    assert sha == hashlib.sha256(PAGE).hexdigest()
    assert key == f"{sha[:2]}/{sha[2:4]}/{sha}.zst"
    path = tmp_path / "archive" / key
    assert path.stat().st_size == stored < len(PAGE) // 10  # zstd on repetitive HTML
    assert zstandard.ZstdDecompressor().decompress(path.read_bytes()) == PAGE
    assert archive.get(key) == PAGE
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_put_of_the_same_bytes_keeps_the_intact_copy(tmp_path: Path) -> None:
    archive = DirectoryArchive(tmp_path)
    _, key, stored = archive.put(PAGE)
    before = (tmp_path / key).stat()
    assert archive.put(PAGE) == (hashlib.sha256(PAGE).hexdigest(), key, stored)
    after = (tmp_path / key).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize(
    "damage",
    [
        lambda blob: b"these are not zstandard frames",
        lambda blob: blob[: len(blob) // 2],  # truncated
        lambda blob: b"",  # empty (a crash between rename and data reaching the disk)
        lambda blob: zstandard.ZstdCompressor().compress(b"<html>another page</html>"),
    ],
    ids=["garbage", "truncated", "empty", "other-content"],
)
def test_put_replaces_a_damaged_copy(tmp_path: Path, damage: object) -> None:
    archive = DirectoryArchive(tmp_path)
    _, key, _ = archive.put(PAGE)
    path = tmp_path / key
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    try:
        readable = archive.get(key) == PAGE
    except Exception:  # zstd's error, whichever it is
        readable = False
    assert not readable, "the damage must be real for this test to mean anything"
    archive.put(PAGE)  # e.g. the page fetched again after a replay
    assert archive.get(key) == PAGE


def test_missing_page_is_an_archive_error_caused_by_file_not_found(tmp_path: Path) -> None:
    archive = DirectoryArchive(tmp_path)
    _, key, _ = archive.put(PAGE)
    (tmp_path / key).unlink()
    with pytest.raises(ArchiveError) as err:
        archive.get(key)
    assert isinstance(err.value.__cause__, FileNotFoundError)


def test_keys_outside_the_archive_are_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("no", encoding="utf-8")
    archive = DirectoryArchive(tmp_path / "archive")
    (tmp_path / "archive").mkdir()
    with pytest.raises(ArchiveError, match="outside the archive"):
        archive.get("../secret.txt")


def test_unwritable_archive_is_a_clear_archive_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the archive should be", encoding="utf-8")
    archive = DirectoryArchive(blocker)
    with pytest.raises(ArchiveError, match="cannot write to archive"):
        archive.put(PAGE)


@pytest.mark.parametrize(
    "damage",
    [
        lambda blob: b"these are not zstandard frames",
        lambda blob: blob[: len(blob) // 2],
        lambda blob: zstandard.ZstdCompressor().compress(b"<html>another page</html>"),
    ],
    ids=["garbage", "truncated", "other-content"],
)
def test_get_of_a_damaged_copy_says_so_and_never_returns_other_bytes(
    tmp_path: Path, damage: object
) -> None:
    """A valid zstandard frame of other bytes came back as the page (frames carry no
    checksum), and zstd's own errors named no page."""
    archive = DirectoryArchive(tmp_path)
    _, key, _ = archive.put(PAGE)
    path = tmp_path / key
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(ArchivedPageCorrupt, match=key):
        archive.get(key)


def test_a_folder_removed_after_a_put_is_made_again(tmp_path: Path) -> None:
    """The archive remembers the folders it made (one ``mkdir`` a folder, not a page);
    one removed behind its back (a cleanup, a restore) is made again by the next put."""
    import shutil

    archive = DirectoryArchive(tmp_path / "archive")
    sha, key, _ = archive.put(PAGE)
    shutil.rmtree(tmp_path / "archive")
    assert archive.put(PAGE) == (sha, key, (tmp_path / "archive" / key).stat().st_size)
    assert archive.get(key) == PAGE


def test_pages_of_many_threads_are_stored_as_one_compressor_stores_them(tmp_path: Path) -> None:
    """Each thread keeps its compressor (zstandard's are not thread-safe): pages put
    from eight threads at once are each the bytes a fresh level-3 compressor makes,
    readable by a plain decompressor (an archive written before reads the same), with
    no temporary file left."""
    from concurrent.futures import ThreadPoolExecutor

    archive = DirectoryArchive(tmp_path)
    pages = [PAGE + f"<p>page {i}</p>".encode() * (i + 1) for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(archive.put, pages))
    for page, (sha, key, stored) in zip(pages, results, strict=True):
        blob = (tmp_path / key).read_bytes()
        assert blob == zstandard.ZstdCompressor(level=3).compress(page)
        assert stored == len(blob)
        assert zstandard.ZstdDecompressor().decompress(blob) == page
        assert sha == hashlib.sha256(page).hexdigest()
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_temporary_file_left_by_a_dead_writer_does_not_stop_a_put(tmp_path: Path) -> None:
    """A writer that died between its temporary file and the rename left it behind
    under the name this process and thread would use: the put still stores the page."""
    import os
    import threading

    archive = DirectoryArchive(tmp_path)
    sha = hashlib.sha256(PAGE).hexdigest()
    folder = tmp_path / sha[:2] / sha[2:4]
    folder.mkdir(parents=True)
    left = folder / f".tmp-{sha[:16]}-{os.getpid()}-{threading.get_ident()}"
    left.write_bytes(b"half a page")
    _, key, _ = archive.put(PAGE)
    assert archive.get(key) == PAGE
