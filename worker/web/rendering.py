"""Turning rows into HTML pieces: the Jinja environment (autoescape on, every value from
a page is escaped), time formats, safe links, highlighted spans, and the SVG charts of
the cluster and speaker pages (drawn on the server: no script needed)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def _dt(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def when(value: Any, empty: str = "–") -> str:
    """``2026-12-01 14:03`` (UTC)."""
    dt = _dt(value)
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if dt else empty


def next_poll(value: Any) -> str:
    """When a feed is polled next, worked out as the page is made (``in 1h 4m``, ``due
    now``): the database keeps the time, never a sentence about it."""
    from worker.feeds.rows import next_poll as shown

    dt = _dt(value)
    return shown(dt) if dt else "–"


def day(value: Any, empty: str = "–") -> str:
    dt = _dt(value)
    return dt.astimezone(UTC).strftime("%Y-%m-%d") if dt else empty


def safe_href(url: Any) -> str | None:
    """The URL if it is http(s) (a link from a hostile page could say ``javascript:``)."""
    if not isinstance(url, str):
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None


def with_query(params: dict[str, Any], **changes: Any) -> str:
    """``?a=1&b=2`` of ``params`` with ``changes`` (None drops a key)."""
    merged = {**params, **changes}
    items = [(k, str(v)) for k, v in merged.items() if v not in (None, "")]
    return "?" + urlencode(items) if items else "?"


def highlight_in_sentence(sentence: str, content: str) -> Markup:
    """The sentence with the claim's content marked (escaped piece by piece)."""
    if not sentence:
        return Markup("<mark class='content'>") + escape(content) + Markup("</mark>")
    at = sentence.find(content) if content else -1
    if at < 0 and content:
        at = sentence.lower().find(content.lower())
    if at < 0:
        return escape(sentence)
    end = at + len(content)
    return (
        escape(sentence[:at])
        + Markup("<mark class='content'>")
        + escape(sentence[at:end])
        + Markup("</mark>")
        + escape(sentence[end:])
    )


@dataclass
class Segment:
    text: str
    claims: list[int]  # claim ids covering it
    anchor: int | None  # claim id starting here


def text_segments(text: str, claims: list[dict[str, Any]]) -> list[Segment]:
    """The article text cut at every claim's start and end offset; each piece knows
    the claims covering it (claims may overlap)."""
    n = len(text)
    spans = [
        (int(c["start"]), int(c["end"]), int(c["id"]))
        for c in claims
        if isinstance(c.get("start"), int)
        and isinstance(c.get("end"), int)
        and 0 <= c["start"] < c["end"] <= n
    ]
    cuts = sorted({0, n, *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    out: list[Segment] = []
    anchored: set[int] = set()
    for a, b in itertools.pairwise(cuts):
        covering = [cid for s, e, cid in spans if s <= a and b <= e]
        anchor = next((cid for s, _, cid in spans if s == a and cid not in anchored), None)
        if anchor is not None:
            anchored.add(anchor)
        out.append(Segment(text[a:b], covering, anchor))
    return out


# --------------------------------------------------------------------------- charts


@dataclass
class Tick:
    x: float
    label: str
    anchor: str = "middle"  # SVG text-anchor: the first and last stay inside the chart


def _ticks(t0: float, t1: float, x0: float, width: float, count: int = 5) -> list[Tick]:
    if t1 <= t0:
        return [Tick(x0 + width / 2, when(datetime.fromtimestamp(t0, UTC)), "middle")]
    span = t1 - t0
    fmt = "%Y-%m-%d %H:%M" if span < 3 * 86400 else "%Y-%m-%d"
    ticks = []
    for i in range(count):
        t = t0 + span * i / (count - 1)
        anchor = "start" if i == 0 else "end" if i == count - 1 else "middle"
        ticks.append(
            Tick(
                x0 + width * i / (count - 1),
                datetime.fromtimestamp(t, UTC).strftime(fmt),
                anchor,
            )
        )
    return ticks


def spread_chart(cluster: dict[str, Any], one_page: bool) -> dict[str, Any] | None:
    """The timeline of a cluster (``listings.cluster_detail``): one row per outlet in
    order of first appearance (the last row for the outlets after the first few), a
    mark per outlet and time bucket, sized by its number of repeats and coloured by
    their wording, the first appearance ringed. A mark links to its repeat in the list
    (``one_page``: the whole list is on this page) or to the page of the list starting
    at its time. Coordinates for an SVG ``viewBox``."""
    timeline = cluster["timeline"]
    cells = timeline["cells"]
    if not cells:
        return None
    bucket = int(timeline["bucket_seconds"])
    label_w, width, row_h, top = 190.0, 960.0, 26.0, 16.0
    left = label_w + 16  # the marks start clear of the outlet names
    plot_w = width - left - 16
    starts = [t.timestamp() for c in cells if (t := _dt(c["start"])) is not None]
    t0, t1 = min(starts), max(starts)
    outlets = list(timeline["rows"])
    height = top + row_h * len(outlets) + 40

    def x_of(ts: float) -> float:
        if t1 == t0:
            return left + plot_w / 2
        return left + plot_w * (ts - t0) / (t1 - t0)

    rows = [
        {"outlet": o, "y": top + row_h * i + row_h / 2, "label": o[:28]}
        for i, o in enumerate(outlets)
    ]
    y_of = {r["outlet"]: r["y"] for r in rows}
    first = cluster.get("first_repeat") or {}
    first_at = _dt(first.get("published_at"))
    first_cell = None
    if first_at is not None:
        ts = first_at.timestamp()
        first_cell = (first.get("outlet"), ts - ts % bucket)
    by_place: dict[tuple[str, float], int] = {}
    if one_page:
        for m in cluster["members"]:
            at = _dt(m.get("published_at"))
            if at is not None:
                ts = at.timestamp()
                by_place.setdefault((m["outlet"], ts - ts % bucket), int(m["position"]))
    span = "hour" if bucket == 3600 else "day" if bucket == 86400 else f"{bucket // 86400} days"
    marks = []
    for c in cells:
        at = _dt(c["start"])
        if at is None:
            continue
        counts = {w: int(c[w]) for w in ("verbatim", "reworded", "copy")}
        n = sum(counts.values())
        main = max(counts, key=lambda w: counts[w])
        is_first = (c["outlet"], at.timestamp()) == first_cell
        parts = ", ".join(f"{v} {w}" for w, v in counts.items() if v)
        label = f"{c['outlet']}, {when(at)} (+1 {span}): {n} repeat{'s' if n != 1 else ''}"
        position = by_place.get((c["outlet"], at.timestamp())) if n == 1 else None
        marks.append(
            {
                "x": round(x_of(at.timestamp()), 1),
                "y": y_of.get(c["outlet"], y_of[outlets[-1]]),
                "r": round(6 + min(8.0, 2.2 * math.log2(n)), 1),
                "n": n,
                "first": is_first,
                "wording": main,
                "label": f"{label} ({parts})",
                "href": f"#repeat-{position}"
                if position is not None
                else with_query({}, start=at.isoformat()) + "#repeats",
            }
        )
    return {
        "width": width,
        "height": height,
        "label_w": label_w,
        "plot_right": left + plot_w,
        "axis_y": top + row_h * len(outlets) + 6,
        "rows": rows,
        "marks": marks,
        "ticks": _ticks(t0, t1, left, plot_w),
        "bucket": span,
    }


def speaker_chart(clusters: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A speaker's clusters over time: x first seen, y outlets reached (log scale)."""
    timed = [(c, t) for c in clusters if (t := _dt(c.get("first_seen_at"))) is not None]
    if not timed:
        return None
    width, height, left, top, bottom = 960.0, 240.0, 56.0, 24.0, 30.0
    plot_w, plot_h = width - left - 20, height - top - bottom
    times = [t.timestamp() for _, t in timed]
    t0, t1 = min(times), max(times)
    top_outlets = max(int(c.get("n_outlets") or 1) for c, _ in timed)
    scale = math.log10(max(top_outlets, 2)) or 1.0

    def y_of(n: int) -> float:
        return top + plot_h - plot_h * math.log10(max(n, 1)) / scale

    marks = []
    for c, t in timed:
        x = left + (plot_w * (t.timestamp() - t0) / (t1 - t0) if t1 > t0 else plot_w / 2)
        n = int(c.get("n_outlets") or 1)
        marks.append(
            {
                "x": round(x, 1),
                "y": round(y_of(n), 1),
                "r": 4 + min(n, 30) / 3,
                "href": f"/clusters/{c['id']}",
                "label": f"{when(t)}: {n} outlet{'s' if n != 1 else ''}: {c['text'][:120]}",
            }
        )
    levels = sorted({1, top_outlets, *[v for v in (2, 5, 10, 20, 50, 100) if v < top_outlets]})
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": left + plot_w,
        "axis_y": top + plot_h,
        "marks": marks,
        "ticks": _ticks(t0, t1, left, plot_w),
        "levels": [{"y": round(y_of(v), 1), "label": str(v)} for v in levels],
    }


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        day=day,
        safe_href=safe_href,
        next_poll=next_poll,
    )
    env.globals.update(
        with_query=with_query,
        highlight_in_sentence=highlight_in_sentence,
        text_segments=text_segments,
    )
    return env
