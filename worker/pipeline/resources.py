"""Per-process resources shared by tasks: HTTP client, host limiter, archive.

Created on first use and kept for the life of the worker process.
"""

from __future__ import annotations

import threading

from worker.core.settings import Settings, get_settings
from worker.network.http import HttpClient
from worker.network.politeness import HostLimiter, make_limiter
from worker.pages.archive import Archive, DirectoryArchive

_lock = threading.Lock()
_http: HttpClient | None = None
_limiter: HostLimiter | None = None
_archive: Archive | None = None


def http_client(settings: Settings | None = None) -> HttpClient:
    global _http
    with _lock:
        if _http is None:
            _http = HttpClient(settings or get_settings())
        return _http


def host_limiter(settings: Settings | None = None) -> HostLimiter:
    global _limiter
    with _lock:
        if _limiter is None:
            _limiter = make_limiter(settings or get_settings())
        return _limiter


def archive(settings: Settings | None = None) -> Archive:
    global _archive
    with _lock:
        if _archive is None:
            _archive = DirectoryArchive((settings or get_settings()).effective_archive_dir)
        return _archive


def reset() -> None:
    """Drop the resources (tests that change settings within one process)."""
    global _http, _limiter, _archive
    with _lock:
        if _http is not None:
            _http.close()
        _http, _limiter, _archive = None, None, None
