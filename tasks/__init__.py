"""Thin Celery tasks: ids in, one unit of work (one domain call), its outcome mapped to
done or retry. Follow-ups are recorded in the unit of work and sent once it commits
(``worker.core.outbox``).

* ``articles``: the article pipeline's steps, one task per row of
  ``worker.pipeline.steps.PIPELINE``;
* ``polls``: feed polls (``io``);
* ``schedule``: the dispatcher, the recovery sweep and job scheduling (``schedule``);
* ``job_steps``: a job's discovery and items (``backfill``);
* ``operations``: backfills, reprocessing and job control, for other systems to call.
"""
