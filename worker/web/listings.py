"""The read queries of the web view: every list (claims, clusters, speakers, articles,
feeds, jobs) with its filters, a stable order and keyset pagination, and the detail of
one cluster, speaker or article. Pages, the JSON API and the CSV/JSONL downloads all
read through here, so a download holds exactly what the list shows.

A page is ``(rows, next_cursor)``. A cursor is opaque to clients: the base64 of the
list's name and the sort key of the last row shown (the id breaks ties), checked on
the way back in (:class:`BadCursor`). Domain functions take a session and never commit.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from schemas.models import Article, Claim, ClaimCluster, DupGroup, Feed, Job
from worker.claims.firstseen import precision_of
from worker.claims.fulltext import (
    ClaimFilter,
    claim_hit,
    claim_key,
    find_claims,
    published_expr,
)
from worker.core.settings import Settings, mask_secrets
from worker.feeds.subscriptions import feed_row
from worker.jobs import lifecycle

MAX_ID = 2**63 - 1


MALFORMED = "malformed cursor: use the next_cursor of a response as it is"


class BadCursor(ValueError):
    """A cursor that this list did not hand out."""


class NotFound(LookupError):
    """No such cluster, speaker, article, feed or job."""


def encode_cursor(kind: str, key: list[Any]) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None, types: tuple[type, ...]) -> list[Any] | None:
    """The sort key in ``cursor``, checked against the list ``kind`` and the key's
    types; None for no cursor (the first page)."""
    if cursor is None or cursor == "":
        return None
    if len(cursor) > 512:
        raise BadCursor("cursor is too long: use the next_cursor of a response as it is")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("malformed cursor: use the next_cursor of a response as it is") from None
    if not isinstance(value, list) or len(value) != len(types) + 1 or value[0] != kind:
        raise BadCursor(f"this cursor is not one of the {kind} list")
    key = value[1:]
    for item, typ in zip(key, types, strict=True):
        if typ is int and (
            not isinstance(item, int) or isinstance(item, bool) or not 0 <= item <= MAX_ID
        ):
            raise BadCursor("malformed cursor: use the next_cursor of a response as it is")
        if typ is str and not isinstance(item, str):
            raise BadCursor("malformed cursor: use the next_cursor of a response as it is")
    return key


Page = tuple[list[dict[str, Any]], str | None]


def _page(
    rows: list[dict[str, Any]], limit: int, kind: str, key: Callable[[Any], list[Any]]
) -> Page:
    """``rows`` were fetched with ``limit + 1``: one more means another page."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(kind, key(rows[-1]))
    return rows, None


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


# ------------------------------------------------------------------------------ claims


def claims_page(session: Session, f: ClaimFilter, cursor: str | None, limit: int) -> Page:
    """Claims, best match first for a search, newest first within (see
    :func:`worker.claims.fulltext.find_claims`); the cursor is ``[tier, id]``."""
    key = decode_cursor("claims", cursor, (int, int))
    after = (key[0], key[1]) if key else None
    rows = find_claims(session, f, after=after, limit=limit + 1)
    return _page(rows, limit, "claims", lambda r: list(claim_key(r)))


# ---------------------------------------------------------------------------- clusters


@dataclass(frozen=True)
class ClusterFilter:
    speaker: str | None = None  # the speaker key (exact) or words of the name
    min_outlets: int | None = None
    since: datetime | None = None  # first seen at or after
    until: datetime | None = None  # first seen before


def _speaker_key(name: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", name.lower()))


def cluster_row(c: ClaimCluster) -> dict[str, Any]:
    return {
        "id": c.id,
        "speaker": c.speaker,
        "speaker_key": c.speaker_key,
        "text": c.text,
        "first_seen_at": _iso(c.first_seen_at),
        "first_seen_precision": c.first_seen_precision,
        "n_articles": c.n_articles,
        "n_outlets": c.n_outlets,
    }


def clusters_page(session: Session, f: ClusterFilter, cursor: str | None, limit: int) -> Page:
    """Clusters, newest first (by id)."""
    key = decode_cursor("clusters", cursor, (int,))
    query = select(ClaimCluster)
    if key:
        query = query.where(col(ClaimCluster.id) < key[0])
    if f.speaker and f.speaker.strip():
        from worker.claims.clustering import speaker_key

        wanted = f.speaker.strip()
        query = query.where(
            col(ClaimCluster.speaker_key).in_({wanted, speaker_key(wanted), _speaker_key(wanted)})
        )
    if f.min_outlets is not None and f.min_outlets > 1:
        query = query.where(col(ClaimCluster.n_outlets) >= f.min_outlets)
    if f.since is not None:
        query = query.where(col(ClaimCluster.first_seen_at) >= f.since)
    if f.until is not None:
        query = query.where(col(ClaimCluster.first_seen_at) < f.until)
    query = query.order_by(col(ClaimCluster.id).desc()).limit(limit + 1)
    rows = [cluster_row(c) for c in session.exec(query).all()]
    return _page(rows, limit, "clusters", lambda r: [r["id"]])


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


CLUSTER_PAGE = 100
"""Repeats listed per page of a cluster."""
CHART_OUTLETS = 30
"""Outlet rows of the timeline; later outlets share one last row."""
CHART_MARKS = 1500
"""At most this many marks: above, the timeline's buckets grow from an hour to a day,
a week, 30 days."""
BUCKETS = (3600, 86400, 7 * 86400, 30 * 86400)


def _member_columns(a: Any, at: Any, is_copy: int) -> list[Any]:
    from sqlalchemy import literal

    return [
        col(Claim.id).label("claim_id"),
        a.id.label("article_id"),
        at.label("at"),
        a.host.label("host"),
        a.url.label("url"),
        func.coalesce(a.title, a.entry_title).label("title"),
        col(Claim.speaker).label("speaker"),
        col(Claim.text).label("text"),
        col(Claim.verb).label("verb"),
        col(Claim.kind).label("kind"),
        col(Claim.sentence).label("sentence"),
        col(Claim.start).label("start"),
        col(Claim.end).label("end"),
        literal(is_copy).label("copy"),
    ]


def _copy_at(dup: Any) -> Any:
    return func.coalesce(dup.published_at, dup.discovered_at)


def _own_repeats(cluster_id: int) -> Any:
    """The claims of a cluster, each in its article, at the time stored on the claim
    (``claim.article_at``); ``copy`` 0."""
    own: Any = aliased(Article)
    return (
        sa_select(*_member_columns(own, col(Claim.article_at), 0))
        .select_from(Claim)
        .join(own, own.id == col(Claim.article_id))
        .where(col(Claim.cluster_id) == cluster_id)
    )


def _copy_repeats(cluster_id: int) -> tuple[Any, Any]:
    """Each copy (found by dedup) of an article carrying a claim of the cluster, at the
    copy's own time; ``copy`` 1. With the copy's article alias.

    The claims that have a copy are found first from two indexes alone
    (``ix_claim_cluster_at`` holds each claim's article, ``ix_article_duplicate_of_id``
    the copies): only their rows are read, not every claim of the cluster (100,000 rows
    for a cluster of 100,000 repeats, most with no copy)."""
    dup: Any = aliased(Article)
    carrier: Any = aliased(Claim)
    copied: Any = aliased(Article)
    with_copies = (
        sa_select(carrier.id)
        .join(copied, copied.duplicate_of_id == carrier.article_id)
        .where(carrier.cluster_id == cluster_id)
    )
    return (
        sa_select(*_member_columns(dup, _copy_at(dup), 1))
        .select_from(Claim)
        .join(dup, dup.duplicate_of_id == col(Claim.article_id))
        .where(col(Claim.cluster_id) == cluster_id, col(Claim.id).in_(with_copies))
    ), dup


def _cluster_members(cluster_id: int) -> Any:
    """Every repeat of a cluster, claims and copies: one row each."""
    from sqlalchemy import union_all

    return union_all(_own_repeats(cluster_id), _copy_repeats(cluster_id)[0]).subquery("members")


def _member_key(r: Any) -> tuple[datetime, int, int]:
    return (_when(r["at"]), r["article_id"], r["claim_id"])


def _members_page(
    session: Session,
    cluster_id: int,
    after: tuple[datetime, int, int] | None,
    start: datetime | None,
    n: int,
    copies_kept: list[Any] | None = None,
) -> list[Any]:
    """The first ``n`` repeats in time order (time, article, claim) after the key
    ``after``, or at or after ``start``: the claims from ``ix_claim_cluster_at`` (a
    keyset read, whatever the cluster's size), the copies of their articles by a join,
    or from ``copies_kept`` (every copy of the cluster in time order, kept with its
    summary: the join visits every claim of the cluster), merged."""
    from sqlalchemy import literal, tuple_

    from schemas.types import UTCDateTime

    claims = _own_repeats(cluster_id)
    copies, dup = _copy_repeats(cluster_id)
    if after is not None:
        at = literal(after[0], UTCDateTime())
        claims = claims.where(
            tuple_(col(Claim.article_at), col(Claim.article_id), col(Claim.id))
            > tuple_(at, literal(after[1]), literal(after[2]))
        )
        copies = copies.where(
            tuple_(_copy_at(dup), dup.id, col(Claim.id))
            > tuple_(at, literal(after[1]), literal(after[2]))
        )
    elif start is not None:
        claims = claims.where(col(Claim.article_at) >= start)
        copies = copies.where(_copy_at(dup) >= start)
    claims = claims.order_by(col(Claim.article_at), col(Claim.article_id), col(Claim.id))
    copies = copies.order_by(_copy_at(dup), dup.id, col(Claim.id))
    if copies_kept is None:
        more = list(session.execute(copies.limit(n)).mappings().all())
    elif after is not None:
        more = [r for r in copies_kept if _member_key(r) > after][:n]
    elif start is not None:
        more = [r for r in copies_kept if _when(r["at"]) >= start][:n]
    else:
        more = copies_kept[:n]
    rows = [*session.execute(claims.limit(n)).mappings().all(), *more]
    rows.sort(key=_member_key)
    return rows[:n]


def _count_before(
    session: Session, cluster_id: int, start: datetime, copies_kept: list[Any] | None = None
) -> int:
    """How many repeats of the cluster are before ``start`` (an index range count for
    the claims; the copies by a join, or from ``copies_kept``)."""
    own = session.execute(
        sa_select(func.count())
        .select_from(Claim)
        .where(col(Claim.cluster_id) == cluster_id, col(Claim.article_at) < start)
    ).scalar_one()
    if copies_kept is not None:
        return int(own) + sum(1 for r in copies_kept if _when(r["at"]) < start)
    query, dup = _copy_repeats(cluster_id)
    copies = session.execute(
        sa_select(func.count()).select_from(query.where(_copy_at(dup) < start).subquery())
    ).scalar_one()
    return int(own) + int(copies)


def _truncated(session: Session, at: Any, unit: str) -> Any:
    """``at`` to the start of its hour or day, in SQL."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date_trunc(unit, at, "UTC")  # UTC hours and days, as on SQLite
    return func.strftime("%Y-%m-%d %H:00:00" if unit == "hour" else "%Y-%m-%d 00:00:00", at)


BY_DAY_ABOVE = 5000
"""A cluster with more articles is grouped by day in the database (an hour per mark
would be more than :data:`CHART_MARKS` marks in almost every case)."""


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


@dataclass
class _Summary:
    """What a cluster page shows about all its repeats: the first one, counts by
    wording, repeats per outlet and hour, when each outlet first carried it."""

    first: dict[str, Any] | None
    first_words: str
    counts: dict[str, int]
    cells: dict[tuple[str, datetime], dict[str, int]]
    outlet_first: dict[str, datetime]
    timeline: dict[str, Any] | None = None
    timeline_marks: int = 0  # the CHART_MARKS it was drawn for
    finest: int = 3600  # seconds of the buckets the cells were counted in
    copies: list[Any] | None = None  # every copy in time order (None: too many to keep)


def _summarize(first: Any, groups: list[tuple[Any, ...]]) -> _Summary:
    """``groups``: (host, hour, copy, text, count, earliest time)."""
    first_row = dict(first) if first is not None else None
    first_words = _norm(first_row["text"]) if first_row else ""
    words: dict[tuple[str, bool], str] = {}
    times: dict[Any, datetime] = {}

    def when_of(value: Any) -> datetime:
        t = times.get(value)
        if t is None:
            t = times[value] = _when(value)
        return t

    counts = {"verbatim": 0, "reworded": 0, "copy": 0}
    cells: dict[tuple[str, datetime], dict[str, int]] = {}
    outlet_first: dict[str, datetime] = {}
    for host, bucket, is_copy, text, n, earliest in groups:
        wkey = (text or "", bool(is_copy))
        w = words.get(wkey)
        if w is None:
            w = words[wkey] = (
                "copy" if is_copy else "verbatim" if _norm(wkey[0]) == first_words else "reworded"
            )
        counts[w] += int(n)
        cell = cells.get((host, when_of(bucket)))
        if cell is None:
            cell = cells[(host, when_of(bucket))] = {"verbatim": 0, "reworded": 0, "copy": 0}
        cell[w] += int(n)
        first_at = when_of(earliest)
        if host not in outlet_first or first_at < outlet_first[host]:
            outlet_first[host] = first_at
    return _Summary(first_row, first_words, counts, cells, outlet_first)


def _grouped_copies(copies: list[Any], unit: str) -> list[tuple[Any, ...]]:
    """The copies' rows grouped as the database groups the claims (host, UTC hour or
    day, copy, text, count, earliest time)."""
    grouped: dict[tuple[Any, ...], list[Any]] = {}
    for r in copies:
        at = _when(r["at"])
        bucket = at.replace(minute=0, second=0, microsecond=0)
        if unit == "day":
            bucket = bucket.replace(hour=0)
        key = (r["host"], bucket, r["copy"], r["text"])
        found = grouped.get(key)
        if found is None:
            grouped[key] = [1, at]
        else:
            found[0] += 1
            found[1] = min(found[1], at)
    return [(*key, n, earliest) for key, (n, earliest) in grouped.items()]


SUMMARY_CACHE = 32
COPIES_KEPT = 5000
"""A cluster's copies are kept with its summary up to this many (a page then reads only
the index of its claims); above, each page joins them again."""
_summaries: OrderedDict[tuple[Any, ...], _Summary] = OrderedDict()
_summaries_lock = threading.Lock()


def _cached_summary(session: Session, cluster: ClaimCluster, first: Any = None) -> _Summary:
    """The summary of a cluster larger than a page: two passes over its members in the
    database (its first repeat; its repeats grouped by outlet, hour and wording), kept
    for the latest :data:`SUMMARY_CACHE` clusters until the cluster changes (its counts,
    first appearance or the newest of its claims)."""
    newest = session.execute(
        sa_select(func.max(Claim.id)).where(col(Claim.cluster_id) == cluster.id)
    ).scalar()
    key = (
        str(session.get_bind().engine.url),
        cluster.id,
        cluster.n_articles,
        cluster.n_outlets,
        cluster.first_seen_at,
        cluster.first_article_id,
        newest,
    )
    with _summaries_lock:
        hit = _summaries.get(key)
        if hit is not None:
            _summaries.move_to_end(key)
            return hit
    assert cluster.id is not None
    query, dup = _copy_repeats(cluster.id)
    copies: list[Any] | None = [
        dict(r)
        for r in session.execute(
            query.order_by(_copy_at(dup), dup.id, col(Claim.id)).limit(COPIES_KEPT + 1)
        )
        .mappings()
        .all()
    ]
    if copies is not None and len(copies) > COPIES_KEPT:
        copies = None
    if first is None:  # the first page's first row, else read it
        found = _members_page(session, cluster.id, None, None, 1, copies)
        first = found[0] if found else None
    unit = "day" if (cluster.n_articles or 0) > BY_DAY_ABOVE else "hour"
    if copies is None:
        m = _cluster_members(int(cluster.id or 0))
    else:  # the claims only: the copies are counted here from the rows just read
        m = _own_repeats(int(cluster.id or 0)).subquery("members")
    hour = _truncated(session, m.c.at, unit).label("hour")
    groups = [
        tuple(g)
        for g in session.execute(
            sa_select(m.c.host, hour, m.c.copy, m.c.text, func.count(), func.min(m.c.at)).group_by(
                m.c.host, hour, m.c.copy, m.c.text
            )
        ).all()
    ]
    if copies:
        groups += _grouped_copies(copies, unit)
    summary = _summarize(first, groups)
    summary.finest = 86400 if unit == "day" else 3600
    summary.copies = copies
    with _summaries_lock:
        _summaries[key] = summary
        while len(_summaries) > SUMMARY_CACHE:
            _summaries.popitem(last=False)
    return summary


def cluster_detail(
    session: Session,
    cluster_id: int,
    cursor: str | None = None,
    limit: int = CLUSTER_PAGE,
    start: datetime | None = None,
) -> dict[str, Any]:
    """How a claim spread: the cluster, its first appearance, counts of verbatim
    repeats, rewordings and copies, a timeline (repeats counted per outlet and hour,
    or day, week, month for a long one: bounded whatever the cluster's size), and one
    page of its repeats in time order (``cursor``, or ``start``: the first repeat at or
    after that time), each with its wording and its position in the whole list."""
    cluster = session.get(ClaimCluster, cluster_id)
    if cluster is None:
        raise NotFound(f"no claim cluster with id {cluster_id}")
    key = decode_cursor(f"cluster{cluster_id}", cursor, (str, int, int, int))

    # the counts of a cluster larger than a page first: kept, they hold its copies
    from_the_start = key is None and start is None
    summary: _Summary | None = None
    if not from_the_start or (cluster.n_articles or 0) > limit:
        summary = _cached_summary(session, cluster)
    copies_kept = summary.copies if summary is not None else None

    # one page of repeats
    position = 0
    after = None
    if key:
        try:
            at = datetime.fromisoformat(key[0])
        except ValueError:
            raise BadCursor(MALFORMED) from None
        after = (at if at.tzinfo else at.replace(tzinfo=UTC), key[1], key[2])
        position = key[3]
    elif start is not None:
        position = _count_before(session, cluster_id, start, copies_kept)
    rows = _members_page(session, cluster_id, after, start, limit + 1, copies_kept)
    more = len(rows) > limit
    rows = rows[:limit]
    if summary is None and not more:
        # the page holds the whole cluster: count from its rows
        summary = _summarize(
            rows[0] if rows else None,
            [
                (
                    r["host"],
                    _when(r["at"]).replace(minute=0, second=0, microsecond=0),
                    r["copy"],
                    r["text"],
                    1,
                    r["at"],
                )
                for r in rows
            ],
        )
    elif summary is None:
        summary = _cached_summary(session, cluster, rows[0] if rows else None)
    first_row = summary.first
    first_words = summary.first_words
    counts, outlet_first = summary.counts, summary.outlet_first
    if summary.timeline is None or summary.timeline_marks != CHART_MARKS:
        summary.timeline = _timeline(summary.cells, outlet_first, summary.finest)
        summary.timeline_marks = CHART_MARKS
    total = sum(counts.values())

    def wording(text: str, is_copy: Any) -> str:
        if is_copy:
            return "copy"  # the whole article is a copy (dedup)
        return "verbatim" if _norm(text) == first_words else "reworded"

    first_key = (first_row["article_id"], first_row["claim_id"]) if first_row else None
    members = []
    for i, r in enumerate(rows):
        at_value = _when(r["at"]) if r["at"] is not None else None
        members.append(
            {
                "position": position + i + 1,
                "published_at": _iso(at_value),
                "outlet": r["host"],
                "url": mask_secrets(r["url"]),
                "title": r["title"],
                "speaker": r["speaker"],
                "text": r["text"],
                "verb": r["verb"],
                "kind": r["kind"],
                "sentence": r["sentence"],
                "start": r["start"],
                "end": r["end"],
                "claim_id": r["claim_id"],
                "article_id": r["article_id"],
                "copy": bool(r["copy"]),
                "first": (r["article_id"], r["claim_id"]) == first_key,
                "wording": wording(r["text"] or "", r["copy"]),
            }
        )
    next_cursor = None
    if more and members:
        last = members[-1]
        next_cursor = encode_cursor(
            f"cluster{cluster_id}",
            [last["published_at"], last["article_id"], last["claim_id"], last["position"]],
        )
    first = session.get(Article, cluster.first_article_id) if cluster.first_article_id else None
    return {
        "cluster_id": cluster_id,
        "speaker": cluster.speaker,
        "speaker_key": cluster.speaker_key,
        "text": cluster.text,
        "first_seen_at": _iso(cluster.first_seen_at),
        "first_seen_precision": cluster.first_seen_precision,
        "first_outlet": first.host if first else None,
        "first_url": mask_secrets(first.url) if first else None,
        "n_articles": cluster.n_articles,
        "n_outlets": cluster.n_outlets,
        "n_repeats": total,
        "counts": counts,
        "outlets": sorted(outlet_first, key=lambda h: (outlet_first[h], h)),
        "timeline": summary.timeline,
        "first_repeat": (
            {
                "article_id": first_row["article_id"],
                "claim_id": first_row["claim_id"],
                "outlet": first_row["host"],
                "published_at": _iso(_when(first_row["at"])),
            }
            if first_row
            else None
        ),
        "members": members,
        "next_cursor": next_cursor,
    }


def _timeline(
    cells: dict[tuple[str, datetime], dict[str, int]],
    outlet_first: dict[str, datetime],
    finest: int = 3600,
) -> dict[str, Any]:
    """Repeats per outlet and time bucket: the first :data:`CHART_OUTLETS` outlets to
    carry the claim a row each, the others one row; buckets an hour, or longer when that
    would make more than :data:`CHART_MARKS` marks."""
    outlets = sorted(outlet_first, key=lambda h: (outlet_first[h], h))
    shown = outlets[:CHART_OUTLETS]
    others = len(outlets) - len(shown)
    other_label = f"{others} other outlet{'s' if others != 1 else ''}" if others else None
    row_of = {h: h for h in shown}
    stamped = [
        (row_of.get(host, other_label or host), when.timestamp(), cell)
        for (host, when), cell in cells.items()
    ]
    bucket_seconds = BUCKETS[-1]
    for size in [b for b in BUCKETS if b >= finest]:  # the finest that make few enough marks
        if len({(row, ts - ts % size) for row, ts, _ in stamped}) <= CHART_MARKS:
            bucket_seconds = size
            break
    merged: dict[tuple[str, float], dict[str, int]] = {}
    for row, ts, cell in stamped:
        acc = merged.get((row, ts - ts % bucket_seconds))
        if acc is None:
            acc = merged[(row, ts - ts % bucket_seconds)] = {
                "verbatim": 0,
                "reworded": 0,
                "copy": 0,
            }
        for w, n in cell.items():
            acc[w] += n
    rows = shown + ([other_label] if other_label else [])
    return {
        "bucket_seconds": bucket_seconds,
        "rows": rows,
        "cells": [
            {
                "outlet": row,
                "start": datetime.fromtimestamp(start, UTC).isoformat(),
                **cell,
            }
            for (row, start), cell in sorted(merged.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        ],
    }


# ---------------------------------------------------------------------------- speakers


def speakers_page(session: Session, name: str | None, cursor: str | None, limit: int) -> Page:
    """Speakers of clusters, by key (alphabetical), with their number of clusters."""
    key = decode_cursor("speakers", cursor, (str,))
    query: Any = sa_select(  # type: ignore[call-overload]
        ClaimCluster.speaker_key,
        func.max(ClaimCluster.speaker),
        func.count(),
        func.sum(ClaimCluster.n_articles),
        func.max(ClaimCluster.n_outlets),
        func.min(ClaimCluster.first_seen_at),
        func.max(ClaimCluster.first_seen_at),
    ).group_by(col(ClaimCluster.speaker_key))
    if key:
        query = query.where(col(ClaimCluster.speaker_key) > key[0])
    if name and name.strip():
        wanted = _speaker_key(name)
        if wanted:
            query = query.where(col(ClaimCluster.speaker_key).contains(wanted, autoescape=True))
    query = query.order_by(col(ClaimCluster.speaker_key)).limit(limit + 1)
    rows = [
        {
            "key": k,
            "speaker": shown,
            "clusters": int(n),
            "articles": int(arts or 0),
            "max_outlets": int(outlets or 0),
            "first_seen_at": _iso(first),
            "last_seen_at": _iso(last),
        }
        for k, shown, n, arts, outlets, first, last in session.exec(query).all()
    ]
    return _page(rows, limit, "speakers", lambda r: [r["key"]])


MAX_SPEAKER_CLUSTERS = 2000
MAX_NAMES = 12  # the ways a speaker's name was written, most clusters first


def speaker_detail(session: Session, key: str) -> dict[str, Any]:
    """A speaker's clusters over time (first seen, oldest first; the latest
    :data:`MAX_SPEAKER_CLUSTERS`)."""
    clusters = list(
        session.exec(
            select(ClaimCluster)
            .where(col(ClaimCluster.speaker_key) == key)
            .order_by(col(ClaimCluster.first_seen_at).desc(), col(ClaimCluster.id).desc())
            .limit(MAX_SPEAKER_CLUSTERS + 1)
        ).all()
    )
    if not clusters:
        raise NotFound(f"no speaker with key {key!r}")
    cut = len(clusters) > MAX_SPEAKER_CLUSTERS
    clusters = clusters[:MAX_SPEAKER_CLUSTERS]
    clusters.reverse()
    total = session.exec(
        select(func.count()).select_from(ClaimCluster).where(ClaimCluster.speaker_key == key)
    ).one()
    names = [
        str(n)
        for n in session.exec(
            select(ClaimCluster.speaker)
            .where(ClaimCluster.speaker_key == key)
            .group_by(col(ClaimCluster.speaker))
            .order_by(func.count().desc(), col(ClaimCluster.speaker))
            .limit(MAX_NAMES)
        ).all()
    ]
    return {
        "key": key,
        "names": names,
        "speaker": clusters[-1].speaker,
        "n_clusters": int(total),
        "cut": cut,
        "clusters": [cluster_row(c) for c in clusters],
    }


# ---------------------------------------------------------------------------- articles


@dataclass(frozen=True)
class ArticleFilter:
    outlet: str | None = None
    state: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def article_row(a: Article) -> dict[str, Any]:
    return {
        "id": a.id,
        "url": mask_secrets(a.url),
        "title": a.title or a.entry_title,
        "author": a.author,
        "outlet": a.host,
        "published_at": _iso(a.published_at or a.entry_published_at),
        "published_precision": precision_of(a),
        "discovered_at": _iso(a.discovered_at),
        "state": a.state,
        "language": a.language,
        "failure_reason": mask_secrets(a.failure_reason or "") or None,
        "duplicate_of_id": a.duplicate_of_id,
        "dup_group_id": a.dup_group_id,
    }


def articles_page(session: Session, f: ArticleFilter, cursor: str | None, limit: int) -> Page:
    """Articles, newest found first (by id)."""
    key = decode_cursor("articles", cursor, (int,))
    query = select(Article)
    if key:
        query = query.where(col(Article.id) < key[0])
    if f.outlet:
        query = query.where(col(Article.host) == f.outlet.strip().lower())
    if f.state:
        query = query.where(col(Article.state) == f.state)
    if f.since is not None:
        query = query.where(published_expr() >= f.since)
    if f.until is not None:
        query = query.where(published_expr() < f.until)
    query = query.order_by(col(Article.id).desc()).limit(limit + 1)
    rows = [article_row(a) for a in session.exec(query).all()]
    return _page(rows, limit, "articles", lambda r: [r["id"]])


MAX_ARTICLE_CLAIMS = 500
MAX_GROUP_SHOWN = 200


def article_detail(session: Session, article_id: int) -> dict[str, Any]:
    """An article: metadata, clean text, its claims (offsets into the text), its
    duplicate group and the feeds that listed it. Never the raw page."""
    from schemas.models import Sighting

    a = session.get(Article, article_id)
    if a is None:
        raise NotFound(f"no article with id {article_id}")
    row = article_row(a)
    row.update(
        {
            "text": a.text,
            "description": a.description,
            "sitename": a.sitename,
            "categories": list(a.categories or []),
            "tags": list(a.tags or []),
            "page_canonical_url": a.page_canonical_url,
            "final_url": mask_secrets(a.final_url or "") or None,
            "fetched_at": _iso(a.fetched_at),
            "extractor_version": a.extractor_version,
            "text_source": a.text_source,
            "claims_status": a.claims_status,
        }
    )
    claims = session.exec(
        select(Claim, ClaimCluster)
        .outerjoin(ClaimCluster, col(ClaimCluster.id) == col(Claim.cluster_id))
        .where(Claim.article_id == article_id)
        .order_by(col(Claim.start), col(Claim.id))
        .limit(MAX_ARTICLE_CLAIMS)
    ).all()
    row["claims"] = [claim_hit(c, a, cl) for c, cl in claims]
    group: list[dict[str, Any]] = []
    if a.dup_group_id is not None:
        canonical = session.exec(
            select(DupGroup.canonical_article_id).where(DupGroup.id == a.dup_group_id)
        ).first()
        for other in session.exec(
            select(Article)
            .where(Article.dup_group_id == a.dup_group_id)
            .order_by(col(Article.id))
            .limit(MAX_GROUP_SHOWN)
        ).all():
            group.append({**article_row(other), "canonical": other.id == canonical})
    row["duplicate_group"] = group
    feed = aliased(Feed)
    row["feeds"] = [
        {"id": fid, "url": mask_secrets(url), "title": title}
        for fid, url, title in session.exec(
            select(feed.id, feed.url, feed.title)
            .join(Sighting, col(Sighting.feed_id) == feed.id)
            .where(Sighting.article_id == article_id)
            .order_by(col(Sighting.id))
        ).all()
    ]
    return row


# ------------------------------------------------------------------------------- feeds


def masked_feed_row(feed: Feed) -> dict[str, Any]:
    row = feed_row(feed)
    row["url"] = mask_secrets(str(row["url"]))
    row["last_error"] = mask_secrets(str(row["last_error"] or "")) or None
    return row


def feeds_page(session: Session, state: str | None, cursor: str | None, limit: int) -> Page:
    """Feeds by id, with their health."""
    key = decode_cursor("feeds", cursor, (int,))
    query = select(Feed)
    if key:
        query = query.where(col(Feed.id) > key[0])
    if state:
        query = query.where(col(Feed.state) == state)
    query = query.order_by(col(Feed.id)).limit(limit + 1)
    rows = [masked_feed_row(f) for f in session.exec(query).all()]
    return _page(rows, limit, "feeds", lambda r: [r["id"]])


# -------------------------------------------------------------------------------- jobs


def job_detail(session: Session, job: Job, settings: Settings) -> dict[str, Any]:
    row = lifecycle.job_row(job, lifecycle.progress(session, int(job.id or 0), settings))
    row["last_error"] = mask_secrets(row["last_error"] or "") or None
    return row


def jobs_page(
    session: Session, state: str | None, cursor: str | None, limit: int, settings: Settings
) -> Page:
    """Jobs, newest first, with their progress."""
    key = decode_cursor("jobs", cursor, (int,))
    query = select(Job)
    if key:
        query = query.where(col(Job.id) < key[0])
    if state:
        query = query.where(col(Job.state) == state)
    query = query.order_by(col(Job.id).desc()).limit(limit + 1)
    rows = [job_detail(session, j, settings) for j in session.exec(query).all()]
    return _page(rows, limit, "jobs", lambda r: [r["id"]])


# --------------------------------------------------------------------------- downloads

EXPORT_BATCH = 1000


def iterate(
    fetch: Callable[[Session, str | None, int], Page],
    open_session: Callable[[], Any],
) -> Iterator[dict[str, Any]]:
    """Every row of a list, page after page (each page in its own short transaction,
    so memory stays constant and no transaction stays open for the whole download)."""
    cursor: str | None = None
    while True:
        with open_session() as session:
            rows, cursor = fetch(session, cursor, EXPORT_BATCH)
        yield from rows
        if cursor is None:
            return
