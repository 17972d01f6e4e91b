"""The inputs of ``claimwire extract``: local files, directories, ``.gz`` files and
``http(s)://`` URLs, each page turned into the command's output object by
:func:`worker.pages.extractor.extract_page`. A file that cannot be read, or that is not
text at all (a PDF, an image: :func:`binary_type`) or text with no HTML markup (a
Markdown file: :func:`has_html_markup`), and a URL that cannot be fetched give an object
with an ``error`` key.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from schemas.records import ExtractedPage
from worker.pages.charset import decode_html
from worker.pages.extractor import extract_page

__all__ = ["FetchFn", "binary_type", "extract_file", "has_html_markup", "iter_inputs"]

HTML_SUFFIXES = (".html", ".htm", ".html.gz", ".htm.gz", ".gz")


def _read_file(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix.lower() == ".gz" or data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data


# WHATWG MIME Sniffing's "binary data bytes": never in text, HTML included
_BINARY_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
_TEXT_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
SNIFF_BYTES = 1445
"""Bytes looked at to tell a binary file from text (the WHATWG sniffing window)."""


def binary_type(body: bytes) -> str | None:
    """The media type of a body that is not text at all (a PDF, an image, an archive,
    an office document: named from its magic bytes by ``filetype``;
    ``application/octet-stream`` for other bytes no text has), or None for text, which
    may be HTML. A UTF-8 or UTF-16 byte-order mark means text."""
    import filetype

    if body.startswith(_TEXT_BOMS):
        return None
    kind = filetype.guess_mime(body[:8192])
    if kind:
        return str(kind)
    return "application/octet-stream" if _BINARY_BYTES.search(body[:SNIFF_BYTES]) else None


# A start tag of an element every web page has some of (or a doctype, or a comment).
_HTML_MARKUP = re.compile(
    r"<(?:!doctype\s+html|!--|(?:html|head|body|title|meta|link|script|style|div|p|span|a|"
    r"article|main|section|header|footer|nav|aside|h[1-6]|table|ul|ol|li|br|img|figure|"
    r"form|iframe|noscript)[\s/>])",
    re.IGNORECASE,
)
MARKUP_WINDOW = 65_536
"""Characters of a local file searched for HTML markup (:func:`has_html_markup`)."""

NOT_HTML_TEXT = (
    "not HTML: text without HTML markup (Markdown or plain text?); `claimwire extract` "
    "reads web pages, `claimwire claims FILE.txt` reads text"
)


def has_html_markup(text: str) -> bool:
    """Whether ``text`` holds HTML markup (a start tag of a common element, a doctype or a
    comment) in its first :data:`MARKUP_WINDOW` characters. A Markdown or plain-text file
    has none: extracting it as a web page would give a made-up "article"."""
    return _HTML_MARKUP.search(text, 0, MARKUP_WINDOW) is not None


def extract_file(path: str | Path, *, min_text_chars: int = 200) -> dict[str, Any]:
    """Extract one local file (``.gz`` is decompressed). Returns the CLI's JSON object.

    Keys: ``file, title, author, published_at`` (ISO 8601 or None),
    ``published_precision`` (``second``, ``minute``, ``day`` or None), ``language, sitename,
    text``, plus ``encoding``. An unreadable file, or one that is not text (a PDF, an
    image: :func:`binary_type`), or text without HTML markup (Markdown, plain text:
    :func:`has_html_markup`) gives an ``error`` key and empty text, as does a page that
    cannot be parsed (``"nesting too deep"``).
    """
    p = Path(path)
    try:
        body = _read_file(p)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return _as_output(str(p), None, error=f"{type(exc).__name__}: {exc}")
    kind = binary_type(body)
    if kind is not None:
        return _as_output(str(p), None, error=f"not HTML: {kind}")
    html, encoding = decode_html(body, None)
    if not has_html_markup(html):
        return _as_output(str(p), None, encoding=encoding, error=NOT_HTML_TEXT)
    page = extract_page(html, None, min_text_chars=min_text_chars)
    return _as_output(str(p), page, encoding=encoding)


def _as_output(
    name: str,
    page: ExtractedPage | None,
    *,
    encoding: str | None = None,
    error: str | None = None,
    key: str = "file",
) -> dict[str, Any]:
    out: dict[str, Any] = {
        key: name,
        "title": page.title if page else None,
        "author": page.author if page else None,
        "published_at": page.published_at.isoformat() if page and page.published_at else None,
        "published_precision": page.published_precision if page else None,
        "language": page.language if page else None,
        "sitename": page.sitename if page else None,
        "text": page.text if page else "",
    }
    if encoding is not None:
        out["encoding"] = encoding
    if error is None and page is not None and page.failure and not page.text:
        error = page.failure
    if error is not None:
        out["error"] = error
    return out


def _is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def _expand(path: Path) -> Iterator[Path]:
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and child.name.lower().endswith(HTML_SUFFIXES):
                yield child
    else:
        yield path


FetchFn = Callable[[str], tuple[bytes, str | None, str]]
"""``fetch(url) -> (body, content_type_header, final_url)``."""


def iter_inputs(
    paths: Iterable[str],
    settings: Any = None,
    *,
    fetch: FetchFn | None = None,
) -> Iterator[dict[str, Any]]:
    """One output object per input: files, directories (recursive: ``*.html``, ``*.htm``,
    ``*.gz``), ``.gz`` files, and ``http(s)://`` URLs. File results carry ``file``, URL
    results ``url``.

    URLs are fetched with ``fetch`` or, when it is None and ``settings`` is given, with
    :class:`worker.network.http.HttpClient` (same guards as the pipeline); otherwise they give an
    ``error`` object. ``settings.min_text_chars`` is honoured when present.
    """
    min_chars = int(getattr(settings, "min_text_chars", 200) or 200)
    for raw in paths:
        if _is_url(raw):
            if fetch is None and settings is not None:
                from worker.pages.fetch import page_fetcher

                fetch = page_fetcher(settings)
            if fetch is None:
                yield _as_output(raw, None, error="URL given but no fetcher configured", key="url")
                continue
            try:
                body, content_type, final_url = fetch(raw)
            except Exception as exc:  # noqa: BLE001 - report per input, keep going
                yield _as_output(raw, None, error=f"{type(exc).__name__}: {exc}", key="url")
                continue
            html, encoding = decode_html(body, content_type)
            page = extract_page(html, final_url, min_text_chars=min_chars)
            yield _as_output(raw, page, encoding=encoding, key="url")
            continue
        p = Path(raw)
        if not p.exists():
            yield _as_output(raw, None, error="no such file or directory")
            continue
        for f in _expand(p):
            yield extract_file(f, min_text_chars=min_chars)
