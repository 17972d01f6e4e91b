"""Raw page archive: bodies stored compressed (zstd) under the SHA-256 of their bytes.

The interface is two methods so that an object store can be added next to the
directory backend without touching the pipeline.

A key is a path relative to the archive root (``ab/cd/<sha256>.zst``); an object-store
backend would use the same string as its object name. Storing bytes whose hash is already
present verifies the stored copy first (decompress and hash: well under a millisecond for a
news page) and replaces it when it is corrupt or truncated, so refetching a page repairs a
damaged archive instead of keeping the damage for ever.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Protocol

import zstandard


class ArchiveError(Exception):
    """The archive cannot store or read a page (disk full, unwritable directory, ...)."""


class ArchivedPageCorrupt(Exception):
    """The stored copy under a key is not the page it was stored as (not zstandard,
    truncated, or other bytes than its SHA-256 names). Not an :class:`ArchiveError`: the
    archive works and this one page is damaged, so the step counts it and quarantines the
    article with this reason; storing the page again (a replay refetches it once the bad
    copy is removed) repairs the archive."""


class Archive(Protocol):
    def put(self, data: bytes) -> tuple[str, str, int]:
        """Store ``data``; return (sha256, storage key, stored size). Idempotent."""
        ...

    def get(self, key: str) -> bytes:
        """Return the original bytes stored under ``key``; :class:`ArchivedPageCorrupt`
        when the stored copy is damaged."""
        ...


# zstd's own default level. Level 6 compressed 300 pages of the extraction corpora
# 8% smaller (0.164 of their size against 0.177) for three times the CPU, 1.05 against
# 0.33 ms a page, in the `run` process that also fetches (issue 16).
ZSTD_LEVEL = 3


class DirectoryArchive:
    """``<root>/ab/cd/<sha256>.zst``; writes are atomic (temporary file + rename)."""

    def __init__(self, root: Path, level: int = ZSTD_LEVEL) -> None:
        self.root = root
        self.level = level
        self._folder = os.fspath(root)
        # folders known to exist (made or seen by this object): a put checks its
        # page's folder once, not with a mkdir every page; one that disappears is made
        # again when the write finds it missing
        self._made: set[str] = set()
        self._local = threading.local()  # a compressor per thread (not thread-safe)

    def _path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha[2:4] / f"{sha}.zst"

    def _compress(self, data: bytes) -> bytes:
        compressor: zstandard.ZstdCompressor | None = getattr(self._local, "zstd", None)
        if compressor is None:
            compressor = self._local.zstd = zstandard.ZstdCompressor(level=self.level)
        return compressor.compress(data)

    def put(self, data: bytes) -> tuple[str, str, int]:
        """Paths are strings and the temporary file's name is the page's own (the
        writing process and thread in it), so a put costs the compression, the hash and
        four system calls (stat, open, write, rename); the same bytes and files as
        before (issue 16: pathlib, ``mkdir`` and ``mkstemp`` were about half of it)."""
        sha = hashlib.sha256(data).hexdigest()
        key = f"{sha[:2]}/{sha[2:4]}/{sha}.zst"
        path = os.path.join(self._folder, key)
        try:
            try:
                found = os.stat(path)
            except FileNotFoundError:
                pass
            else:
                if self._intact(Path(path), sha):
                    return sha, key, found.st_size
            blob = self._compress(data)
            self._write(os.path.dirname(path), path, blob)
        except OSError as exc:
            raise ArchiveError(
                f"cannot write to archive {self.root}: {exc.strerror or exc}"
            ) from exc
        return sha, key, len(blob)

    def _write(self, folder: str, path: str, blob: bytes) -> None:
        """Write ``blob`` at ``path`` atomically: a temporary file in ``folder`` renamed
        into place (made with mode 0600, as ``tempfile.mkstemp`` made it)."""
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        tmp = os.path.join(
            folder,
            f".tmp-{os.path.basename(path)[:16]}-{os.getpid()}-{threading.get_ident()}",
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileNotFoundError:  # the folder went away since: make it again
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:  # left by a process of this pid that died mid-write
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _intact(path: Path, sha: str) -> bool:
        """Whether the file at ``path`` decompresses to bytes with SHA-256 ``sha``."""
        try:
            blob = path.read_bytes()
            data = zstandard.ZstdDecompressor().decompress(blob)
        except (OSError, zstandard.ZstdError):
            return False
        return hashlib.sha256(data).hexdigest() == sha

    def get(self, key: str) -> bytes:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ArchiveError(f"archive key outside the archive: {key!r}")
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise ArchiveError(
                f"cannot read {key} from archive {self.root}: {exc.strerror or exc}"
            ) from exc
        try:
            data = zstandard.ZstdDecompressor().decompress(blob)
        except zstandard.ZstdError as exc:
            raise ArchivedPageCorrupt(
                f"archived page {key} is corrupt ({type(exc).__name__}: {exc})"
            ) from exc
        sha = Path(key).name.split(".", 1)[0]
        if len(sha) == 64 and hashlib.sha256(data).hexdigest() != sha:
            # a valid frame of other bytes (zstd frames carry no checksum by default)
            raise ArchivedPageCorrupt(f"archived page {key} does not match its SHA-256")
        return data
