"""OPML import (listparser) and export."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

import listparser

from schemas.models import Feed


class OPMLError(ValueError):
    """The file is not a usable OPML subscription list."""


def read_opml(data: bytes) -> list[tuple[str, str | None, list[str]]]:
    """Return (url, title, tags) for every feed: its ``category`` values, then the
    folder its outline is nested in (``News/World``), as tags."""
    result = listparser.parse(data)
    if not result.feeds and not result.get("version"):
        why = result.get("bozo_exception") or "no OPML, RDF or iGoogle list found"
        raise OPMLError(f"not an OPML subscription list: {why}")
    out: list[tuple[str, str | None, list[str]]] = []
    for f in result.feeds:
        tags: list[str] = []
        for cat in f.get("categories", []):
            label = "/".join(c for c in cat if c)
            if label and label not in tags:
                tags.append(label)
        for tag in f.get("tags", []):
            if tag and tag not in tags:
                tags.append(tag)
        out.append((f["url"], f.get("title") or None, tags))
    return out


def write_opml(feeds: list[Feed], title: str = "claimwire feeds") -> str:
    """An OPML 2.0 document. A feed's last tag becomes its folder (``a/b`` nested
    folders ``a`` > ``b``); its other tags go in the ``category`` attribute. That is
    the order :func:`read_opml` gives (``category`` values first, the folder last), so
    reading the document back gives the same feeds, titles and tags, in the same order,
    and an imported feed stays in its folder."""
    tree: dict[str, Any] = {}
    for feed in feeds:
        node = tree
        folder = [p for p in feed.tags[-1].split("/") if p] if feed.tags else []
        for part in folder:
            node = node.setdefault(part, {})
        node.setdefault("", []).append(feed)

    def outline(feed: Feed) -> str:
        label = feed.title or feed.url
        attrs = f'type="rss" text={quoteattr(label)} title={quoteattr(label)}'
        attrs += f" xmlUrl={quoteattr(feed.url)}"
        if feed.site_url:
            attrs += f" htmlUrl={quoteattr(feed.site_url)}"
        others = [t.replace(",", " ") for t in feed.tags[:-1]]
        if others:
            attrs += f" category={quoteattr(','.join(others))}"
        return f"<outline {attrs}/>"

    def emit(node: dict[str, Any], depth: int) -> list[str]:
        pad = "  " * depth
        lines = [pad + outline(f) for f in node.get("", [])]
        for name, child in node.items():
            if name:
                lines.append(f"{pad}<outline text={quoteattr(name)} title={quoteattr(name)}>")
                lines += emit(child, depth + 1)
                lines.append(f"{pad}</outline>")
        return lines

    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        f"  <head><title>{escape(title)}</title></head>",
        "  <body>",
        *emit(tree, 2),
        "  </body>",
        "</opml>",
        "",
    ]
    return "\n".join(lines)
