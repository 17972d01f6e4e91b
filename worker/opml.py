"""OPML import (listparser) and export."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

import listparser

from schemas.models import Feed


class OPMLError(ValueError):
    """The file is not a usable OPML subscription list."""


def read_opml(data: bytes) -> list[tuple[str, str | None, list[str]]]:
    """Return (url, title, tags) for every feed, nested outlines' categories as tags."""
    result = listparser.parse(data)
    if result.get("bozo") and not result.feeds:
        raise OPMLError(f"not an OPML subscription list: {result.get('bozo_exception')}")
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
    """An OPML 2.0 document; a feed's first tag becomes its enclosing outline."""
    groups: dict[str, list[Feed]] = {}
    for feed in feeds:
        groups.setdefault(feed.tags[0] if feed.tags else "", []).append(feed)

    def outline(feed: Feed, indent: str) -> str:
        attrs = f'type="rss" xmlUrl={quoteattr(feed.url)}'
        label = feed.title or feed.url
        attrs += f" text={quoteattr(label)} title={quoteattr(label)}"
        if feed.site_url:
            attrs += f" htmlUrl={quoteattr(feed.site_url)}"
        if len(feed.tags) > 1:
            attrs += f" category={quoteattr(','.join(feed.tags[1:]))}"
        return f"{indent}<outline {attrs}/>"

    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        f"  <head><title>{escape(title)}</title></head>",
        "  <body>",
    ]
    for tag, members in groups.items():
        if tag:
            lines.append(f"    <outline text={quoteattr(tag)} title={quoteattr(tag)}>")
            lines.extend(outline(f, "      ") for f in members)
            lines.append("    </outline>")
        else:
            lines.extend(outline(f, "    ") for f in members)
    lines += ["  </body>", "</opml>", ""]
    return "\n".join(lines)
