"""The dedup step: place an article in its duplicate group (and take it out again).

How an article is placed (``deduplicate_article``, one transaction, never commits):

1. the body text is normalized (Unicode NFKC, case folded, every run of punctuation or
   whitespace is one space) and hashed (SHA-256): ``text_hash``
   (:mod:`worker.dedup.sketch`);
2. an article whose normalized text has another deduplicated article with the same hash
   joins that article's group (exact layer);
3. otherwise, if the text has at least ``MIN_NEAR_WORDS`` words, its word
   ``k``-shingles get a MinHash signature of ``num_perm`` 32-bit values, cut into
   ``bands`` bands of ``rows`` values; each band is hashed to one 64-bit bucket key.
   Every article sharing at least one bucket (table ``dedupband``, indexed on
   (band, hash)) is a candidate; candidates are confirmed from their stored signatures
   (table ``articlesignature``): estimated Jaccard >= ``settings.dedup_threshold`` or
   estimated containment of the smaller text in the larger >= ``settings.dedup_containment``;
   the best confirmed candidate's group is joined (and if the confirmed candidates
   are in several groups, those groups are merged into it: grouping does not depend on
   the order in which copies arrive);
   a second index (table ``dedupsample``) holds a hash-mod sample of every text's
   shingles (so a text contained in another has its samples among the other's): it
   finds short excerpts of long texts, which share no LSH bucket with them; those
   candidates are checked exactly, and such *excerpt* matches (containment only,
   Jaccard < 0.5) never merge groups, and a text joins the group of a text it contains
   only if it also matches that group's largest member (containment is not
   transitive: see ``contained_group``). The index is :mod:`worker.dedup.index`, the
   groups :mod:`worker.dedup.groups`;
4. otherwise the article starts a new group of its own.

Concurrency: on PostgreSQL the step takes transaction-scoped advisory locks on its text
hash, on each of its LSH buckets and on each of its sampled shingles (sorted, so two
workers never deadlock), so two copies of one text (or a text and an excerpt of it) are
placed one after the other and the second sees the first. On
SQLite the step starts with a no-op UPDATE, which takes the database write lock at
once (SQLite has one writer at a time). See docs/dedup.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, col, select

from schemas.models import Article, ArticleState
from schemas.tables import article as article_table
from schemas.tables import dupgroup as dupgroup_table
from schemas.types import utcnow
from worker.core.db import is_postgres
from worker.core.settings import Settings
from worker.core.states import set_state
from worker.dedup.groups import (
    contained_group,
    join_group,
    lock_group,
    lock_groups,
    merge_groups,
    order_key,
    set_canonical,
)
from worker.dedup.index import (
    find_near_matches,
    index_article,
    lock_keys,
    reindex_copy,
    stopped_samples,
    take_locks,
    text_hash_lock_key,
    unindex_article,
)
from worker.dedup.sketch import DEFAULT_PARAMS, DedupParams, sketch


@dataclass(frozen=True)
class DedupOutcome:
    """What ``deduplicate_article`` did.

    ``advanced``: the article moved from ``extracted`` to ``deduplicated`` (False: nothing
    was done, e.g. a redelivered message). ``canonical_changed_to``: the id of the article
    that became canonical of an existing group, replacing an earlier canonical whose
    claims were deleted (today this is always the article itself, whose own claims step
    follows; the pipeline's dedup step, ``worker.pipeline.steps.dedup``, asks for its
    claims step when it is not this article). ``group_id``/``duplicate_of_id``: where
    the article was placed.
    """

    advanced: bool
    canonical_changed_to: int | None = None
    group_id: int | None = None
    duplicate_of_id: int | None = None
    # "hash", "near" (Jaccard), "contained" (containment only) or None (a new group)
    matched_by: str | None = None


def _take_write_lock(session: Session, article_id: int) -> None:
    """SQLite: take the database write lock before reading anything (a no-op UPDATE is
    the transaction's first write, so the RESERVED lock is held from here to commit and
    every read after it sees the newest data). PostgreSQL: lock the article's row."""
    statement = _ROW_LOCK if is_postgres(session) else _WRITE_LOCK
    session.execute(statement, {"article_id": article_id})


# The step's statements are built once, over the Core tables (schemas.tables), their
# values bound: the common path (a text that starts a group of its own) loads no ORM
# object; the article is loaded as one only to join a group (``join_group``).
_ROW_LOCK = select(Article.id).where(col(Article.id) == bindparam("article_id")).with_for_update()
_WRITE_LOCK = (
    update(Article)
    .where(col(Article.id) == bindparam("article_id"))
    .values(state=Article.state)
    .execution_options(synchronize_session=False)
)

_EXTRACTED = ArticleState.extracted.value

# SQLite: the write lock taken by writing the text hash of an article still extracted,
# and its text read back under that lock, in one statement (no row: not extracted)
_WRITE_HASH = (
    update(article_table)
    .where(
        article_table.c.id == bindparam("article_id"),
        article_table.c.state == _EXTRACTED,
    )
    .values(text_hash=bindparam("text_hash"))
    .returning(article_table.c.text)
)

_TEXT_AND_STATE = select(article_table.c.text, article_table.c.state).where(
    article_table.c.id == bindparam("article_id")
)

# the first deduplicated article with the same normalized text (exact layer)
_SAME_HASH = (
    select(article_table.c.id)
    .where(
        article_table.c.text_hash == bindparam("text_hash"),
        article_table.c.dup_group_id.is_not(None),
        article_table.c.id != bindparam("article_id"),
    )
    .order_by(article_table.c.id)
    .limit(1)
)

_NEW_GROUP = (
    insert(dupgroup_table)
    .values(canonical_article_id=bindparam("article_id"), created_at=bindparam("created_at"))
    .returning(dupgroup_table.c.id)
)

# the article's columns of a group of its own, in one UPDATE
_PLACE_ALONE = (
    update(article_table)
    .where(article_table.c.id == bindparam("article_id"))
    .values(
        text_hash=bindparam("text_hash"),
        dup_group_id=bindparam("group_id"),
        duplicate_of_id=None,
        state=ArticleState.deduplicated.value,
        state_changed_at=bindparam("now"),
    )
)


def deduplicate_article(
    session: Session,
    article_id: int,
    settings: Settings,
    params: DedupParams = DEFAULT_PARAMS,
) -> DedupOutcome:
    """Place an ``extracted`` article in its duplicate group and move it to
    ``deduplicated``. Any other state: nothing happens (returns ``advanced=False``), so a
    redelivered message is harmless. Never commits."""
    # The sketch (MinHash) first, from the text as read before the write lock: on SQLite
    # the lock is held from the first write to the commit, and every other step of
    # every process waited for it while this one hashed (issue 16). The text is read
    # again under the lock; a text that changed meanwhile is sketched again.
    before = session.execute(_TEXT_AND_STATE, {"article_id": article_id}).first()
    early = (
        (before[0], sketch(before[0], params))
        if before is not None and before[1] == _EXTRACTED
        else None
    )
    # boilerplate samples: read before the locks (a stopped sample stays stopped), so
    # that every article carrying a common phrase does not wait on one lock key, and
    # (SQLite) not under the write lock
    early_stopped = (
        stopped_samples(session, early[1], params)
        if early is not None and early[1].signature is not None
        else frozenset()
    )
    text: str | None
    if early is not None and not is_postgres(session):
        # SQLite: the write lock taken by writing the text hash (of an article still
        # extracted; a text changed since is hashed again below and written over), the
        # text read back under it
        locked = session.execute(
            _WRITE_HASH, {"article_id": article_id, "text_hash": early[1].text_hash}
        ).first()
        if locked is None:  # gone, or no longer extracted: nothing was written
            return DedupOutcome(False)
        text = locked[0]
    else:
        _take_write_lock(session, article_id)
        now_row = session.execute(_TEXT_AND_STATE, {"article_id": article_id}).first()
        if now_row is None or now_row[1] != _EXTRACTED:
            return DedupOutcome(False)
        text = now_row[0]
    if early is not None and early[0] == text:
        sk, stopped = early[1], early_stopped
    else:
        sk = sketch(text, params)
        stopped = stopped_samples(session, sk, params) if sk.signature is not None else frozenset()
    if is_postgres(session) and sk.n_words > 0:  # an empty text matches nothing: no lock
        take_locks(session, lock_keys(sk, stopped))

    group_id: int | None = None
    matched_by: str | None = None
    if sk.n_words > 0:  # an empty text is never anyone's duplicate
        row = session.execute(
            _SAME_HASH, {"text_hash": sk.text_hash, "article_id": article_id}
        ).first()
        if row is not None:
            # The match's group is read again under its row lock: a step merging that
            # group into another (through another of its members: no advisory lock in
            # common with this one) may have deleted it since.
            hash_groups = lock_groups(session, [int(row[0])])
            if hash_groups:
                assert hash_groups[0].id is not None
                group_id, matched_by = hash_groups[0].id, "hash"
    if group_id is None and sk.signature is not None:
        matches = find_near_matches(
            session, sk, settings, params, exclude=article_id, stopped=stopped
        )
        strong = [m for m in matches if m.strong]
        if strong:
            groups = lock_groups(session, [m.article_id for m in strong])
            if groups:
                if len(groups) > 1:
                    merge_groups(session, groups[0], groups[1:])
                assert groups[0].id is not None
                group_id, matched_by = groups[0].id, "near"
        elif matches:
            group_id = contained_group(session, sk, matches, settings, params)
            if group_id is not None:
                matched_by = "contained"

    if group_id is not None:
        # Joining a group: the article as an ORM object (its publication order against
        # the canonical's, the demotion of a canonical it displaces), read under the lock
        article = session.get(Article, article_id, populate_existing=True)
        assert article is not None
        article.text_hash = sk.text_hash
        joined = join_group(session, article, group_id)
        if joined is not None:
            # Exact copies add nothing to the LSH index (their buckets equal the first
            # copy's): buckets stay small however many outlets carry a wire story.
            if sk.signature is not None and matched_by != "hash":
                index_article(session, article_id, sk, stopped)
            set_state(article, ArticleState.deduplicated)
            session.flush()
            return DedupOutcome(
                True,
                canonical_changed_to=joined[1],
                group_id=article.dup_group_id,
                duplicate_of_id=article.duplicate_of_id,
                matched_by=matched_by,
            )
        session.flush()  # the text hash set above
    # A group of its own: the group, the index, then the article's columns in one UPDATE
    new_group = int(
        session.execute(_NEW_GROUP, {"article_id": article_id, "created_at": utcnow()}).scalar_one()
    )
    if sk.signature is not None:
        index_article(session, article_id, sk, stopped)
    session.execute(
        _PLACE_ALONE,
        {
            "article_id": article_id,
            "text_hash": sk.text_hash,
            "group_id": new_group,
            "now": utcnow(),
        },
    )
    return DedupOutcome(True, group_id=new_group, duplicate_of_id=None, matched_by=None)


# --- removal (reprocess) -----------------------------------------------------------


def remove_article(session: Session, article_id: int) -> int | None:
    """Take an article out of the dedup index and of its group (reprocess places it
    again from its new text). If it was its group's canonical, the next earliest member
    becomes canonical, and its id is returned: that article carries no claims yet (it
    was a copy), so the caller should have its claims extracted. Never commits."""
    _take_write_lock(session, article_id)
    article = session.get(Article, article_id, populate_existing=True)
    if article is None:
        return None
    if is_postgres(session) and article.text_hash:
        take_locks(session, [text_hash_lock_key(article.text_hash)])
    had_signature = unindex_article(session, article_id)
    new_canonical: int | None = None
    group_id = article.dup_group_id
    text_hash = article.text_hash
    article.dup_group_id = None
    article.duplicate_of_id = None
    article.text_hash = None
    session.flush()
    if group_id is not None:
        group = lock_group(session, group_id)
        if group is not None:
            members = list(session.exec(select(Article).where(Article.dup_group_id == group_id)))
            if not members:
                session.delete(group)
            elif group.canonical_article_id == article_id or group.canonical_article_id is None:
                first = min(members, key=order_key)
                assert first.id is not None
                set_canonical(session, group, first.id)
                new_canonical = first.id
            if had_signature and text_hash and members:
                # exact copies were not indexed: index one in place of the removed text
                reindex_copy(session, text_hash, members)
    session.flush()
    return new_canonical


__all__ = ["DedupOutcome", "deduplicate_article", "remove_article"]
