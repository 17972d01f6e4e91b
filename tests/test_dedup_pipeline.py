"""Deduplication as users see it: `claimwire export articles` points every copy at its
group's canonical URL, a group keeps every outlet and URL with times, and claims are
extracted for the canonical article only, each copy counting as one more outlet.

Runs on SQLite and on a fresh PostgreSQL database (skipped without PostgreSQL unless
CI=true). Texts are invented (tests/test_dedup.py).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from schemas.models import Claim, ClaimCluster
from tests.conftest import ROOT, claimwire, cli_env
from tests.test_dedup import (
    BOILER_A_FOOT,
    BOILER_A_HEAD,
    BOILER_B_FOOT,
    BOILER_B_HEAD,
    NEAR_MISS,
    STORY,
    T,
    add_article,
    any_settings,  # noqa: F401  (fixture)
    get,
    pg_settings,  # noqa: F401  (fixture)
    run,
    sqlite_settings,  # noqa: F401  (fixture)
)
from worker.claims import store
from worker.core.db import get_engine
from worker.core.settings import Settings
from worker.dedup.groups import group_members


def export_articles(settings: Settings, tmp_path: Path) -> dict[str, dict[str, object]]:
    env = cli_env(tmp_path, DATABASE_URL=settings.effective_database_url)
    r = claimwire(["export", "articles"], env, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return {str(row["url"]): row for row in rows}


def url_of(settings: Settings, article_id: int) -> str:
    return get(settings, article_id).url


def test_export_duplicate_of_is_the_canonical_url_and_follows_a_new_canonical(
    any_settings: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    s = any_settings
    wire = add_article(s, STORY, host="wire.example", published=T + timedelta(hours=1))
    herald = add_article(
        s,
        f"{BOILER_A_HEAD}\n{STORY}\n{BOILER_A_FOOT}",
        host="herald.example",
        published=T + timedelta(hours=2),
    )
    other = add_article(s, NEAR_MISS, host="rewrite.example", published=T + timedelta(hours=3))
    for aid in (wire, herald, other):
        run(s, aid)
    rows = export_articles(s, tmp_path)
    assert rows[url_of(s, wire)]["duplicate_of"] is None
    assert rows[url_of(s, herald)]["duplicate_of"] == url_of(s, wire)
    assert rows[url_of(s, other)]["duplicate_of"] is None

    # an earlier-published copy on a mobile host turns up later: every copy now points
    # at it, in the export too
    mobile = add_article(
        s, f"{BOILER_B_HEAD}\n{STORY}\n{BOILER_B_FOOT}", host="m.valley.example", published=T
    )
    assert run(s, mobile).canonical_changed_to == mobile
    rows = export_articles(s, tmp_path)
    assert rows[url_of(s, mobile)]["duplicate_of"] is None
    for aid in (wire, herald):
        assert rows[url_of(s, aid)]["duplicate_of"] == url_of(s, mobile)
    assert rows[url_of(s, other)]["duplicate_of"] is None


def test_group_records_every_outlet_and_url_with_times(any_settings: Settings) -> None:  # noqa: F811
    s = any_settings
    hosts = ["wire.example", "herald.example", "valley.example", "m.herald.example"]
    bodies = [
        STORY,
        f"{BOILER_A_HEAD}\n{STORY}\n{BOILER_A_FOOT}",
        f"{BOILER_B_HEAD}\n{STORY}\n{BOILER_B_FOOT}",
        STORY.lower(),
    ]
    published = [T + timedelta(hours=h) for h in (3, 1, 2, 4)]
    ids = [
        add_article(s, body, host=host, published=when)
        for body, host, when in zip(bodies, hosts, published, strict=True)
    ]
    for aid in ids:
        run(s, aid)
    group = get(s, ids[0]).dup_group_id
    assert group is not None
    with Session(get_engine(s)) as sess:
        members = group_members(sess, group)
    # canonical (earliest published) first, then in publication order
    assert [m.article_id for m in members] == [ids[1], ids[2], ids[0], ids[3]]
    assert members[0].is_canonical and not any(m.is_canonical for m in members[1:])
    assert all(m.duplicate_of_id == ids[1] for m in members[1:])
    by_id = {m.article_id: m for m in members}
    for aid, host, when in zip(ids, hosts, published, strict=True):
        m = by_id[aid]
        assert m.host == host
        assert m.url == url_of(s, aid)
        assert m.published_at is not None and m.published_at.replace(tzinfo=None) == (
            when.replace(tzinfo=None)
        )
        assert m.discovered_at is not None


@pytest.fixture()
def claims_settings(any_settings: Settings) -> Settings:  # noqa: F811
    return any_settings.model_copy(update={"extract_claims": True})


def _claims(settings: Settings, article_id: int) -> list[Claim]:
    with Session(get_engine(settings)) as sess:
        return list(sess.exec(select(Claim).where(Claim.article_id == article_id)).all())


def _process(settings: Settings, article_id: int) -> None:
    with Session(get_engine(settings)) as sess:
        assert store.process_claims(sess, article_id, settings)
        sess.commit()


def _quote_cluster(settings: Settings, article_id: int) -> ClaimCluster:
    with Session(get_engine(settings)) as sess:
        quote = sess.exec(
            select(Claim).where(
                Claim.article_id == article_id,
                col(Claim.text).contains("accept mediation"),
            )
        ).all()
        assert len(quote) == 1, quote
        cluster = sess.get(ClaimCluster, quote[0].cluster_id)
        assert cluster is not None
        return cluster


@pytest.mark.timeout(600)
def test_claims_of_a_copy_are_not_extracted_and_each_copy_is_one_more_outlet(
    claims_settings: Settings,
) -> None:
    s = claims_settings
    first = add_article(s, STORY, host="wire.example", published=T + timedelta(hours=1))
    run(s, first)
    _process(s, first)
    assert _claims(s, first), "the canonical article carries the claims"
    assert _quote_cluster(s, first).n_outlets == 1

    copies = []
    for i, body in enumerate(
        [f"{BOILER_A_HEAD}\n{STORY}\n{BOILER_A_FOOT}", STORY.upper(), f"{STORY}\n{BOILER_B_FOOT}"]
    ):
        aid = add_article(s, body, host=f"copy{i}.example", published=T + timedelta(hours=2 + i))
        assert run(s, aid).duplicate_of_id == first
        _process(s, aid)
        copies.append(aid)
        assert _claims(s, aid) == [], "a copy's claims are not extracted again"
        assert get(s, aid).claims_status == "duplicate"
        cluster = _quote_cluster(s, first)
        assert cluster.n_outlets == 2 + i and cluster.n_articles == 2 + i

    # an earlier copy turns up: it becomes canonical and carries the claims; the old
    # canonical's claims go, and every copy still counts once
    early = add_article(s, f"{BOILER_B_HEAD}\n{STORY}", host="early.example", published=T)
    out = run(s, early)
    assert out.canonical_changed_to == early
    assert _claims(s, first) == []
    assert get(s, first).claims_status == "duplicate"
    _process(s, early)
    assert _claims(s, early)
    with Session(get_engine(s)) as sess:
        owners = set(sess.exec(select(Claim.article_id)).all())
    assert owners == {early}
    cluster = _quote_cluster(s, early)
    assert cluster.n_outlets == 5 and cluster.n_articles == 5
    assert cluster.first_article_id == early
