"""Duplicate groups: joining one, merging several, demoting a canonical, listing members.

The canonical article of a group is the earliest published one, in the order of
``worker.claims.firstseen.order_key`` (publication time, a date known only to the day
sorting at the end of its day, then discovery, then id: a day-only date never beats a
precise time of the same day). Every other member has ``duplicate_of_id`` = the
canonical; the canonical has None. A newcomer that sorts before the canonical takes
over, even when it was fetched after its copies (an original read after the outlets
that ran it), and the old canonical is demoted (its claims go: the canonical carries a
group's claims; the claims step of the newcomer extracts them again, and the clusters'
first seen is recounted).

When a text's confirmed matches are in several groups, those groups are merged into the
best match's (``merge_groups``): grouping does not depend on the order in which copies
arrive. *Excerpt* matches (containment only, Jaccard < 0.5) never merge groups, and a
text joins the group of a text it contains only if it also matches that group's largest
member (containment is not transitive: see ``contained_group``).

Group rows are locked (``SELECT ... FOR UPDATE``) while they change, in ascending id
order when there are several (``lock_groups``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from schemas.models import Article, ArticleSignature, Claim, DupGroup
from worker.claims.firstseen import order_key, precision_of
from worker.core.db import is_postgres
from worker.core.settings import Settings
from worker.dedup.index import Match
from worker.dedup.sketch import DedupParams, TextSketch, exact_similarity, shingle_hashes, words


def lock_group(session: Session, group_id: int) -> DupGroup | None:
    return session.exec(
        select(DupGroup)
        .where(col(DupGroup.id) == group_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def _demote(session: Session, article: Article) -> None:
    """A canonical article becomes a copy: its claims go (the canonical carries them),
    but for those in lines the new canonical lacks (``worker.claims.copies``: what a
    copy adds, it carries), and the claim clusters they were in are recounted."""
    assert article.id is not None
    clusters = {
        c
        for c in session.exec(select(Claim.cluster_id).where(Claim.article_id == article.id))
        if c is not None
    }
    drop = delete(Claim).where(col(Claim.article_id) == article.id)
    canonical = session.get(Article, article.duplicate_of_id) if article.duplicate_of_id else None
    if canonical is not None and canonical.text and article.text:
        from worker.claims.copies import added_spans, within

        spans = added_spans(article.text, canonical.text)
        kept = [
            claim_id
            for claim_id, start, end in session.exec(
                select(Claim.id, Claim.start, Claim.end).where(Claim.article_id == article.id)
            )
            if within(spans, start, end)
        ]
        drop = drop.where(col(Claim.id).not_in(kept))
    session.execute(drop)
    article.claims_version = None
    if article.claims_status is not None:
        article.claims_status = "duplicate"
    if clusters:
        session.flush()
        from worker.claims.firstseen import refresh_clusters

        refresh_clusters(session, clusters)


def set_canonical(session: Session, group: DupGroup, canonical_id: int) -> None:
    assert group.id is not None
    group.canonical_article_id = canonical_id
    session.execute(
        update(Article)
        .where(col(Article.dup_group_id) == group.id, col(Article.id) != canonical_id)
        .values(duplicate_of_id=canonical_id)
        .execution_options(synchronize_session="fetch")
    )
    session.execute(
        update(Article)
        .where(col(Article.id) == canonical_id)
        .values(duplicate_of_id=None)
        .execution_options(synchronize_session="fetch")
    )


def join_group(
    session: Session, article: Article, group_id: int
) -> tuple[DupGroup, int | None] | None:
    """Put ``article`` in the group (row-locked while it is changed). Returns the group
    and, if the article displaced an earlier-chosen canonical, the article's id."""
    assert article.id is not None
    group = lock_group(session, group_id)
    if group is None:
        return None
    current = (
        session.get(Article, group.canonical_article_id, populate_existing=True)
        if group.canonical_article_id is not None
        else None
    )
    article.dup_group_id = group.id
    if (
        current is not None
        and current.id != article.id
        and order_key(current) <= order_key(article)
    ):
        article.duplicate_of_id = current.id
        return group, None
    if current is not None and current.id != article.id and is_postgres(session):
        # It is demoted: lock its row and read it again. Its claims step may be running
        # (holding that row from start to commit), and the demotion must remove the
        # claims and set the claims_status that step commits, not the ones read before
        # it. Only on a demotion: a copy joining a group leaves the canonical's row alone,
        # so the canonical's claims step never waits for it (a step waits for a row
        # another transaction holds: `worker.pipeline.attempts.lock_article`). The lock is
        # the one an UPDATE takes (FOR NO KEY UPDATE), not FOR UPDATE: claims steps of
        # copies take KEY SHARE locks on this row through foreign keys (a claim cluster's
        # first article) while we wait for their rows, which with FOR UPDATE deadlocks.
        # (SQLite: the database write lock already orders the two.)
        current = session.get(
            Article,
            current.id,
            populate_existing=True,
            with_for_update={"key_share": True},  # FOR NO KEY UPDATE: FK checks pass
        )
        assert current is not None
    session.flush()
    set_canonical(session, group, article.id)
    article.duplicate_of_id = None
    if current is None or current.id == article.id:
        return group, None
    current.duplicate_of_id = article.id
    _demote(session, current)
    return group, article.id


def _match_groups(session: Session, article_ids: list[int]) -> list[int]:
    """The distinct groups of the given articles, in the articles' order (read afresh)."""
    rows = session.execute(
        select(Article.id, Article.dup_group_id).where(col(Article.id).in_(article_ids))
    ).all()
    by_id = {int(aid): gid for aid, gid in rows}
    out: list[int] = []
    for aid in article_ids:
        gid = by_id.get(aid)
        if gid is not None and int(gid) not in out:
            out.append(int(gid))
    return out


def lock_groups(session: Session, article_ids: list[int]) -> list[DupGroup]:
    """Lock the groups of the matched articles, in ascending id order (two steps merging
    the same groups never deadlock), and return them, the best match's group first. A
    group merged into another while we waited for its lock is gone: the members' groups
    are read again (READ COMMITTED: every statement sees the newest commits)."""
    for _ in range(20):
        gids = _match_groups(session, article_ids)
        locked = {gid: g for gid in sorted(gids) if (g := lock_group(session, gid)) is not None}
        if len(locked) == len(gids) and _match_groups(session, article_ids) == gids:
            return [locked[gid] for gid in gids]
    raise RuntimeError("dedup: the matched articles' groups kept changing")


def merge_groups(session: Session, into: DupGroup, others: list[DupGroup]) -> None:
    """One newcomer confirmed matches in several groups: they are one group. The members
    of ``others`` move into ``into`` and the earliest of the groups' canonicals becomes
    its canonical; the others are demoted (their claims go, see ``_demote``), and the
    new canonical's claim clusters are recounted (its new copies are more outlets). The
    caller holds every group's row lock."""
    assert into.id is not None
    canonical_ids = [
        g.canonical_article_id for g in (into, *others) if g.canonical_article_id is not None
    ]
    canonicals = [
        a
        for cid in canonical_ids
        if (
            a := session.get(
                Article,
                cid,
                populate_existing=True,
                with_for_update={"key_share": True} if is_postgres(session) else False,
            )
        )
        is not None
    ]
    for g in others:
        session.execute(
            update(Article)
            .where(col(Article.dup_group_id) == g.id)
            .values(dup_group_id=into.id)
            .execution_options(synchronize_session="fetch")
        )
    session.flush()
    for g in others:
        session.delete(g)
    session.flush()
    if not canonicals:
        return
    winner = min(canonicals, key=order_key)
    assert winner.id is not None
    set_canonical(session, into, winner.id)
    for loser in canonicals:
        if loser.id != winner.id:
            loser.duplicate_of_id = winner.id
            _demote(session, loser)
    session.flush()
    clusters = {
        c
        for c in session.exec(select(Claim.cluster_id).where(Claim.article_id == winner.id))
        if c is not None
    }
    if clusters:
        from worker.claims.firstseen import refresh_clusters

        refresh_clusters(session, clusters)


def _matches_text(
    session: Session, sk: TextSketch, article_id: int, settings: Settings, params: DedupParams
) -> bool:
    """Exact pair decision between a sketched text and a stored article's text."""
    assert sk.shingles is not None
    body = session.execute(
        select(Article.text).where(col(Article.id) == article_id)
    ).scalar_one_or_none()
    if not body:
        return False
    j, c = exact_similarity(sk.shingles, shingle_hashes(words(body), params.shingle_k))
    return (
        j >= settings.dedup_threshold + params.margin
        or c >= settings.dedup_containment + params.margin
    )


def _largest_member(session: Session, group_id: int) -> int | None:
    """The indexed member of a group with the most shingles (ties: lowest id)."""
    row = session.execute(
        select(Article.id)
        .join(ArticleSignature, col(ArticleSignature.article_id) == col(Article.id))
        .where(col(Article.dup_group_id) == group_id)
        .order_by(col(ArticleSignature.shingle_count).desc(), col(Article.id))
        .limit(1)
    ).first()
    return int(row[0]) if row is not None else None


def contained_group(
    session: Session,
    sk: TextSketch,
    matches: list[Match],
    settings: Settings,
    params: DedupParams,
) -> int | None:
    """The group to join when every match is an excerpt match (containment only,
    Jaccard below ``excerpt_jaccard``), or None (a group of its own).

    Containment is not transitive: a short text inside two different stories (a shared
    passage, a page that is mostly a site's template) says nothing about those stories.
    So excerpt matches never merge groups, and:

    * a text contained in a match (the smaller of the two) joins the match's group;
    * a text containing a match (the larger) joins the match's group only if it also
      matches (exactly) that group's largest member, when that is not the match itself:
      a story containing a template page does not join the group of another story on
      that template that contains the same page, and a live blog quoting a wire brief
      does not join the group of the full wire story.

    The best match whose group passes is joined (its row locked, and the check made
    again if the group's largest member changed meanwhile); at most one group row is
    locked here, so there is no lock-order cycle with a merge."""
    for m in matches[: params.max_weak_checks]:
        gids = _match_groups(session, [m.article_id])
        if not gids:
            continue
        largest: int | None = None
        if sk.shingle_count > m.shingle_count:  # the newcomer contains the match
            largest = _largest_member(session, gids[0])
            if largest not in (None, m.article_id) and not _matches_text(
                session, sk, largest, settings, params
            ):
                continue
        locked = lock_groups(session, [m.article_id])
        if not locked:
            return None
        g = locked[0]
        assert g.id is not None
        if sk.shingle_count <= m.shingle_count:
            return g.id
        now = _largest_member(session, g.id)
        if now in (None, m.article_id, largest) or (
            now is not None and _matches_text(session, sk, now, settings, params)
        ):
            return g.id
        return None
    return None


@dataclass(frozen=True)
class GroupMember:
    article_id: int
    host: str
    url: str
    published_at: datetime | None
    entry_published_at: datetime | None
    discovered_at: datetime
    duplicate_of_id: int | None
    is_canonical: bool
    published_precision: str | None = None  # of published_at, else of the entry's time


def group_members(session: Session, group_id: int) -> list[GroupMember]:
    """Every member of a duplicate group (its outlet, URL and times), canonical first,
    then in canonical order (earliest publication first)."""
    arts = list(session.exec(select(Article).where(Article.dup_group_id == group_id)))
    arts.sort(key=order_key)
    out = [
        GroupMember(
            article_id=a.id or 0,
            host=a.host,
            url=a.url,
            published_at=a.published_at,
            entry_published_at=a.entry_published_at,
            discovered_at=a.discovered_at,
            duplicate_of_id=a.duplicate_of_id,
            is_canonical=a.duplicate_of_id is None,
            published_precision=precision_of(a),
        )
        for a in arts
    ]
    out.sort(key=lambda m: not m.is_canonical)
    return out


__all__ = [
    "GroupMember",
    "contained_group",
    "group_members",
    "join_group",
    "lock_group",
    "lock_groups",
    "merge_groups",
    "order_key",
    "set_canonical",
]
