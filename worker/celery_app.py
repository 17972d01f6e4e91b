"""The Celery application.

Production: ``celery -A worker.celery_app worker -Q io`` (polling and fetching),
``-Q cpu`` (extraction, dedup, claims), ``-Q backfill`` (jobs), and
``celery -A worker.celery_app beat`` for the schedule (dispatcher and sweep). The
scheduler's own tasks (dispatcher, sweep, job scheduling) go to the ``schedule`` queue,
which every worker consuming ``io`` consumes too (``_consume_schedule``): they never
wait behind a backlog of article fetches. The embedded default (``claimwire run``) runs
one worker consuming every queue with the schedule inside it, over a filesystem broker
that needs no server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    celeryd_after_setup,
    worker_init,
    worker_process_init,
    worker_ready,
)
from kombu.entity import Queue

from worker.core import outbox
from worker.core.queues import (
    ADVANCE_JOBS_TASK,
    BACKFILL_QUEUE,
    CPU_QUEUE,
    DISPATCH_TASK,
    IO_QUEUE,
    QUEUES,
    REDIS_VISIBILITY_TIMEOUT,
    SCHEDULE_QUEUE,
    SWEEP_TASK,
)
from worker.core.settings import Settings, get_settings
from worker.pipeline.steps import task_routes

TASK_MODULES = [
    "tasks.articles",
    "tasks.polls",
    "tasks.schedule",
    "tasks.job_steps",
    "tasks.operations",
]


def celery_config(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = dict(
        broker_url=settings.effective_broker_url,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(1, settings.task_time_limit - 30),
        task_default_queue=IO_QUEUE,
        task_queues=[Queue(q) for q in QUEUES],  # type: ignore[no-untyped-call]
        task_routes={
            **task_routes(),  # the article steps, each to its queue (worker.pipeline.steps)
            "tasks.polling.*": {"queue": IO_QUEUE},
            "tasks.maintenance.*": {"queue": SCHEDULE_QUEUE},
            # scheduling only: never behind backfill items (an exact name wins over *)
            ADVANCE_JOBS_TASK: {"queue": SCHEDULE_QUEUE},
            "tasks.jobs.*": {"queue": BACKFILL_QUEUE},
        },
        # A broker that is down must not hang a task that only wanted to enqueue a
        # follow-up: the database remembers the work and the sweep re-sends it.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 3,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        # structlog writes to the real stderr; redirected, every line would be re-logged
        # as a WARNING of "celery.redirected".
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        timezone="UTC",
        enable_utc=True,
        beat_schedule={
            "dispatch-due-feeds": {
                "task": DISPATCH_TASK,
                "schedule": settings.dispatch_interval,
            },
            "sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval},
            "advance-jobs": {
                "task": ADVANCE_JOBS_TASK,
                "schedule": settings.dispatch_interval,
                "options": {"queue": SCHEDULE_QUEUE},  # never behind backfill items
            },
        },
    )
    if settings.broker_is_embedded:
        folder = settings.broker_dir
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        conf["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            # An idle consumer looks for messages 5 times a second (kombu's default: once
            # a second, which a step's follow-up waited out at every hop).
            "polling_interval": 0.2,
        }
        conf["worker_enable_remote_control"] = False
        conf["broker_transport"] = "worker.embedded.broker:Transport"  # atomic message files
    else:
        # Longer than any task plus its retries' countdowns (capped by max_countdown),
        # so Redis does not hand an unacknowledged message to a second worker while the
        # first still holds or runs it.
        conf["broker_transport_options"] = {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT}
        conf["broker_transport"] = None  # the URL's scheme says
    return conf


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    celery = Celery("claimwire", include=TASK_MODULES)
    celery.conf.update(celery_config(settings))
    return celery


app = create_app()


def _send(messages: Sequence[outbox.Message]) -> None:
    """Send the messages of a committed unit of work through one producer (on Redis one
    round trip per 500), each by its registered task so that the task's options hold
    (``task_always_eager`` included); a name this process does not know goes by name."""
    with app.producer_or_acquire() as producer, producer.batch(max_size=500):
        for message in messages:
            task = app.tasks.get(message.task)
            options: dict[str, Any] = {}
            if message.countdown is not None and message.countdown > 0:
                options["countdown"] = message.countdown
            if task is None:
                app.send_task(message.task, args=message.args, producer=producer, **options)
            else:
                task.apply_async(args=message.args, producer=producer, **options)


outbox.set_sender(_send)


@worker_init.connect  # type: ignore[untyped-decorator]
def _size_db_pool(sender: Any = None, **_: Any) -> None:
    """A worker with a thread pool (``-P threads -c 32``) runs that many tasks at once in
    one process: its database pool keeps as many connections (worker/core/db.py pool_size).
    A prefork or solo worker runs one task per process."""
    from worker.core.db import set_worker_threads

    pool = str(getattr(sender, "pool_cls", "") or "").lower()
    concurrency = getattr(sender, "concurrency", None)
    if isinstance(concurrency, int) and any(k in pool for k in ("thread", "gevent", "eventlet")):
        set_worker_threads(concurrency)


WARM_CLAIMS_TEXT = (
    "The minister said the plant would reopen by spring. "
    '"We will not close it," she told reporters on Monday.'
)


def warm_cpu_steps(settings: Settings) -> list[tuple[str, float]]:
    """Load what the CPU steps (extraction, dedup, claims) load on their first use, in a
    process that then forks the processes running them (the embedded run's zygote,
    :mod:`worker.embedded.cpu_pool`, and a prefork ``cpu`` worker's parent): the
    imports, dateparser's locales (htmldate), py3langid's model, datasketch and the
    claims' spaCy pipeline with one parse. The children then start warm and share those
    pages copy-on-write. Nothing here touches a database, the broker or a file of the
    data directory. Returns the CPU seconds of each load."""
    import time

    from worker.pages.warm import extraction_loads

    spent = extraction_loads()
    t0 = time.process_time()
    import worker.claims.store
    import worker.dedup.deduplicate  # noqa: F401

    spent.append(("claims and dedup imports", time.process_time() - t0))
    t0 = time.process_time()
    from worker.dedup.sketch import sketch

    sketch(" ".join(f"word{i}" for i in range(60)))
    spent.append(("datasketch", time.process_time() - t0))
    if settings.extract_claims:
        t0 = time.process_time()
        from worker.claims.model import model_problem

        # a model that cannot be loaded is said by the worker at start, and by each
        # claims step (worker.claims.model.require_model): nothing to do here
        if model_problem(settings.spacy_model) is None:
            from worker.claims import extract_claims, load_nlp

            extract_claims(WARM_CLAIMS_TEXT, load_nlp(settings.spacy_model))
        spent.append(("the claims model", time.process_time() - t0))
    return spent


@worker_init.connect  # type: ignore[untyped-decorator]
def _warm_before_fork(sender: Any = None, **_: Any) -> bool:
    """A prefork worker consuming ``cpu`` or ``backfill`` (``celery -Q cpu --pool
    prefork``: docker-compose.yml) loads what the CPU steps need once, in its parent,
    before the pool forks its processes: each of them would otherwise load it all again
    at its first step (seconds of CPU each, and its own copy of the spaCy pipeline)."""
    pool = str(getattr(sender, "pool_cls", "") or "").lower()
    if "prefork" not in pool:
        return False
    consumed = getattr(getattr(sender, "app", app).amqp.queues, "consume_from", None)
    names = set(consumed) if consumed else set(QUEUES)
    if not names & {CPU_QUEUE, BACKFILL_QUEUE}:
        return False
    warm_cpu_steps(get_settings())
    return True


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _reset_after_fork(**_: Any) -> None:
    """A forked pool process must not share its parent's database connections."""
    from worker.core.db import dispose_engines

    dispose_engines()


@celeryd_after_setup.connect  # type: ignore[untyped-decorator]
def _consume_schedule(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """A worker consuming ``io`` consumes ``schedule`` too: ``-Q io`` (the documented
    command, and every older deployment's) keeps running the dispatcher and the sweep,
    which used to be routed to ``io`` and now have their own queue."""
    queues = getattr(getattr(instance, "app", app).amqp, "queues", None)
    consumed = getattr(queues, "consume_from", None)
    if queues is not None and consumed and IO_QUEUE in consumed:
        queues.select_add(SCHEDULE_QUEUE)


@after_setup_logger.connect  # type: ignore[untyped-decorator]
def _configure_structlog(**_kwargs: Any) -> None:
    """Worker and beat processes started with the plain ``celery`` command log through
    the same structlog setup as the CLI (plain tracebacks, no local variables)."""
    from worker.core.logs import configure_logging

    configure_logging(get_settings())


@worker_ready.connect  # type: ignore[untyped-decorator]
def _check_claims_model(sender: Any = None, **_: Any) -> None:
    """A worker that runs claims steps (``cpu``, or ``backfill``: job items run every
    step) says at start, loudly, that ``CLAIMWIRE_SPACY_MODEL`` cannot be loaded. It keeps
    running: its claims steps wait (retried, never counted against the articles) until the
    setting is fixed and the worker restarted."""
    import structlog

    from worker.claims.model import model_problem

    settings = get_settings()
    if not settings.extract_claims:
        return
    consumed = getattr(getattr(sender, "app", app).amqp.queues, "consume_from", None)
    names = set(consumed) if consumed else set(QUEUES)
    if not names & {CPU_QUEUE, BACKFILL_QUEUE}:
        return
    problem = model_problem(settings.spacy_model, load=False)
    if problem is not None:
        structlog.get_logger("claimwire.worker").error(
            "claims_model_unavailable",
            problem=problem,
            consequence="claims steps wait (not counted, not quarantined) until the "
            "setting is fixed and this worker restarted",
        )
