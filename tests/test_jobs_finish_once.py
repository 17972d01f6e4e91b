"""A job ends once: two scheduling rounds at the same time (a worker's item task and the
`--wait` watcher) used to both finish it on SQLite and log "jobs_finished" twice (audit
LOW 14)."""

from __future__ import annotations

import pytest


def test_a_job_finished_by_a_concurrent_round_is_not_finished_again(
    configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure()
    from schemas.models import Job, JobState
    from worker.core.db import init_db, unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs import lifecycle

    init_db()
    with unit_of_work() as s:
        job = lifecycle.create_job(s, lifecycle.KIND_REPROCESS, {})
        lifecycle.finish_discovery(job)
        job.state = JobState.running
        s.flush()
        job_id = int(job.id or 0)

    real = lifecycle._finish_settled
    others: list[list[int]] = []

    def other_round_finishes_it_meanwhile(session, cutoff):  # type: ignore[no-untyped-def]
        # this round has read the job as running; another one commits its end now
        if not others:
            others.append([])
            with unit_of_work() as other:
                others[0] = lifecycle.advance(other, get_settings(), job_ids=[job_id]).finished
        return real(session, cutoff)

    monkeypatch.setattr(lifecycle, "_finish_settled", other_round_finishes_it_meanwhile)
    with unit_of_work() as s:
        plan = lifecycle.advance(s, get_settings(), job_ids=[job_id])
    assert others == [[job_id]]
    assert plan.finished == [], "finished (and logged) by the other round only"
    monkeypatch.setattr(lifecycle, "_finish_settled", real)
    with unit_of_work() as s:
        row = s.get(Job, job_id)
        assert row is not None and row.state == JobState.done and row.finished_at is not None
