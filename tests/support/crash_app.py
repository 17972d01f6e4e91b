"""The production Celery app with a crash hook, for fault tests: the extraction of a page
that carries ``MARKER`` kills the worker process running it (SIGKILL to itself: what the
kernel's OOM killer or a segfault in a C library does), while the file named by
``CW_TEST_CRASH_FLAG`` exists. Each kill is first appended to the file named by
``CW_TEST_CRASH_LOG`` (pid, article id), so a test can count them.

``celery -A tests.support.crash_app worker ...``; everything else is the real app.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from sqlmodel import Session

from schemas.models import Article, RawPage
from worker.celery_app import app
from worker.core.settings import Settings
from worker.pages import extract
from worker.pages.archive import Archive

__all__ = ["MARKER", "app"]

MARKER = b"<!-- claimwire-test: this page kills the worker -->"

_real_extract = extract.extract_stored_article


def _crashing_extract(
    session: Session, article_id: int, archive: Archive, settings: Settings
) -> bool:
    flag = os.environ.get("CW_TEST_CRASH_FLAG")
    if flag and Path(flag).exists():
        article = session.get(Article, article_id)
        raw = session.get(RawPage, article.raw_sha256) if article and article.raw_sha256 else None
        if raw is not None and MARKER in archive.get(raw.storage_key):
            record = os.environ.get("CW_TEST_CRASH_LOG")
            if record:
                with open(record, "a") as fh:
                    fh.write(f"{os.getpid()} {article_id}\n")
            os.kill(os.getpid(), signal.SIGKILL)
    return _real_extract(session, article_id, archive, settings)


extract.extract_stored_article = _crashing_extract  # the extract step looks it up per call
