"""Real processes for fault tests and the chaos run: a private Redis, a private
PostgreSQL cluster, Celery workers and beat as subprocesses, and checks of the
database against what the local server served.

Nothing here is mocked. The machine's shared Redis (6379) and PostgreSQL (5432) are
never stopped: the servers that get killed and restarted are our own, on free ports,
in temporary directories, and removed afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.5, what: str = ""
) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


# ------------------------------------------------------------------------------ Redis


class RedisServer:
    """A private ``redis-server`` without persistence: a restart loses every message."""

    def __init__(self, workdir: Path, port: int | None = None, password: str | None = None):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=self.dir)
        wait_until(lambda: self.ping(), 15, 0.1, f"redis on port {self.port}")
        return self

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url(), socket_connect_timeout=2, socket_timeout=5)

    def ping(self) -> bool:
        return bool(self.client().ping())

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=15)
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def flushdb(self, db: int = 0) -> None:
        import redis

        redis.Redis.from_url(self.url(db)).flushdb()


# ------------------------------------------------------------------------- PostgreSQL


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A private PostgreSQL cluster (``initdb`` in a temporary directory, trust auth on
    127.0.0.1, fsync off) that tests may stop, kill and start at will."""

    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.bin = bindir
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="cw-pg-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data = self.dir / "data"
        self.port = port or free_port()
        self.as_postgres = os.geteuid() == 0  # the server refuses to run as root
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
            self.dir.chmod(0o755)
            for parent in self.dir.parents:  # the postgres user must reach its directory
                if parent == Path("/") or parent.stat().st_mode & 0o011 == 0o011:
                    break
                parent.chmod(parent.stat().st_mode | 0o011)

    @staticmethod
    def available() -> bool:
        return pg_bindir() is not None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:1])} failed: {r.stderr.strip()[-800:]}")
        return r

    def init(self) -> PostgresServer:
        if not (self.data / "PG_VERSION").exists():
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            )
        return self

    def start(self) -> PostgresServer:
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.dir / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clean: clients are disconnected) or ``immediate`` (a crash: no
        checkpoint, recovery on the next start)."""
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False
        )

    def restart(self, down_for: float = 0.0, mode: str = "fast") -> None:
        self.stop(mode)
        time.sleep(down_for)
        self.start()

    def running(self) -> bool:
        r = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "status", check=False)
        return r.returncode == 0

    def url(self, db: str = "postgres", password: str | None = None) -> str:
        auth = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def terminate_backends(url: str) -> int:
    """Kill every other connection to the database of ``url`` (a small "restart")."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------- Celery processes


def worker_env(
    base: dict[str, str], database_url: str, broker_url: str, **overrides: str
) -> dict[str, str]:
    """Environment for worker processes: the test's settings plus fault-friendly ones."""
    env = {k: v for k, v in base.items()}
    env.update(
        {
            "CLAIMWIRE_DATABASE_URL": database_url,
            "CLAIMWIRE_BROKER_URL": broker_url,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *([base["PYTHONPATH"]] if base.get("PYTHONPATH") else [])]
            ),
        }
    )
    env.update({f"CLAIMWIRE_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


@dataclass
class Proc:
    """A Celery worker or beat subprocess with its own log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: list[float] = field(default_factory=list)

    def start(self) -> Proc:
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} at {time.time():.3f}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill reaches its children
        )
        log.close()
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (prefork children die with the parent)."""
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            self.kills.append(time.time())
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)

    def stop(self, timeout: float = 20) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not end in time."""
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


CELERY = [sys.executable, "-m", "celery", "-A", "worker.celery_app"]


def celery_worker(
    name: str,
    env: dict[str, str],
    workdir: Path,
    queues: str = "io,cpu",
    pool: str = "threads",
    concurrency: int = 4,
    loglevel: str = "INFO",
) -> Proc:
    """``celery -A worker.celery_app worker -Q io,cpu --pool threads -c 4`` (the
    documented production command), logging task receipt and completion."""
    args = [
        *CELERY,
        "worker",
        "-Q",
        queues,
        "--pool",
        pool,
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        loglevel,
    ]
    return Proc(name, args, env, workdir, workdir / f"{name}.log")


def celery_beat(name: str, env: dict[str, str], workdir: Path) -> Proc:
    args = [*CELERY, "beat", "-s", str(workdir / f"{name}-schedule"), "-l", "INFO"]
    return Proc(name, args, env, workdir, workdir / f"{name}.log")


def in_flight(log: str, task_prefix: str = "") -> list[str]:
    """Task ids a worker log shows as received but not yet finished."""
    import re

    received: dict[str, str] = {}
    for m in re.finditer(r"Task (\S+)\[([0-9a-f-]{36})\] received", log):
        received[m.group(2)] = m.group(1)
    for m in re.finditer(r"Task \S+\[([0-9a-f-]{36})\] (succeeded|retry|raised)", log):
        received.pop(m.group(1), None)
    return [tid for tid, name in received.items() if name.startswith(task_prefix)]


# -------------------------------------------------------------------- invented content


_FIRST = ["Maria", "Jonas", "Anna", "Lena", "Petr", "Ivo", "Sara", "Tomas", "Olga", "Karel"]
# Surnames built from syllables: 12 x 14 = 168 of them. Real news has many speakers;
# with a dozen names every story would quote the same few people and the claims step
# (one advisory lock per speaker, one cluster per repeated statement) would serialize
# and grow clusters of hundreds of members: a load pattern of its own, not a fault.
_LAST = [
    a + b
    for a in [
        "Nov",
        "Berg",
        "Kow",
        "Fisch",
        "Dan",
        "Hor",
        "Lind",
        "Mor",
        "Varg",
        "Ostr",
        "Brand",
        "Kell",
    ]
    for b in [
        "ak",
        "er",
        "ski",
        "qvist",
        "eau",
        "ova",
        "ek",
        "mann",
        "ic",
        "sen",
        "ard",
        "ow",
        "ani",
        "ley",
    ]
]
_ROLES = ["Minister", "Mayor", "Councillor", "Director", "Senator", "Union leader"]
_TOPICS = [
    "the harbour",
    "the new tram line",
    "school funding",
    "the flood barriers",
    "the hospital budget",
    "the library",
    "the bridge repairs",
    "the water supply",
    "the airport expansion",
    "the housing plan",
]
_VERBS = ["said", "told reporters", "insisted", "warned", "claimed", "argued"]
_FILLER = [
    "Residents gathered outside the town hall on {day} to follow the debate.",
    "Officials expect a decision on {topic} before the end of the month.",
    "The local newspaper counted {n} letters from readers about {topic}.",
    "Engineers inspected {topic} for {n} hours and published a short report.",
    "Shop owners near {topic} reported {n} fewer customers than last year.",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def distinct_stories(
    n: int, seed: int = 7, paragraphs: int = 6
) -> list[tuple[str, str, str, list[str]]]:
    """``n`` invented stories, each with different wording (so that deduplication keeps
    them apart) and attributed statements (so that the claims step has work)."""
    rnd = random.Random(seed)
    stories = []
    for i in range(n):
        first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
        role, topic = rnd.choice(_ROLES), rnd.choice(_TOPICS)
        paras = []
        for j in range(paragraphs):
            fill = rnd.choice(_FILLER).format(
                day=rnd.choice(_DAYS), topic=rnd.choice(_TOPICS), n=rnd.randint(2, 900)
            )
            quote = (
                f"{role} {first} {last} {rnd.choice(_VERBS)} that {topic} would cost "
                f"{rnd.randint(2, 99)} million euros more than planned."
            )
            # (no "according to story i": that would make "story" the speaker of every
            # article, one hot speaker for the claims step's clustering)
            paras.append(
                f"{fill} {quote} Reference number {i}-{j}-{rnd.randint(1000, 9999)} "
                f"of story {i}, paragraph {j}."
            )
        slug = f"story-{seed}-{i}"
        title = f"{role} {last} on {topic} (report {i})"
        stories.append((slug, title, f"{first} {last}", paras))
    return stories


# ------------------------------------------------------------------ database checks


@dataclass
class Integrity:
    articles: int
    distinct_urls: int
    by_state: dict[str, int]
    pending: int
    sightings_dup: int
    claims: int
    claims_dup: int
    processed_without_claims_version: int

    @property
    def stuck(self) -> int:
        return self.pending

    @property
    def duplicated(self) -> int:
        return (self.articles - self.distinct_urls) + self.sightings_dup + self.claims_dup


def integrity(database_url: str) -> Integrity:
    """Facts about the article tables that exactly-once processing must satisfy."""
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, connect_timeout=5) as conn:

        def one(sql: str) -> int:
            row = conn.execute(sql).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        states = {
            str(s): int(n)
            for s, n in conn.execute("SELECT state, count(*) FROM article GROUP BY state")
        }
        return Integrity(
            articles=one("SELECT count(*) FROM article"),
            distinct_urls=one("SELECT count(DISTINCT url) FROM article"),
            by_state=states,
            pending=sum(
                states.get(s, 0) for s in ("discovered", "fetched", "extracted", "deduplicated")
            ),
            sightings_dup=one(
                "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM sighting "
                "GROUP BY article_id, feed_id) t"
            ),
            claims=one("SELECT count(*) FROM claim"),
            claims_dup=one(
                # one claim per (article, span, verb); the same words said twice in
                # one article (two paragraphs) are two claims, not a duplicate
                "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM claim "
                'GROUP BY article_id, start, "end", verb) t'
            ),
            processed_without_claims_version=one(
                "SELECT count(*) FROM article WHERE state = 'processed' AND claims_version IS NULL"
            ),
        )


def claims_mismatch(database_url: str) -> list[int]:
    """Processed articles whose stored claims differ from one clean extraction of their
    stored text (a claim lost or doubled by a re-run step); their ids."""
    import psycopg

    from worker.claims import extract_claims, load_nlp
    from worker.core.settings import Settings

    nlp = load_nlp(Settings().spacy_model)
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT id, text FROM article WHERE state = 'processed' "
            "AND claims_status = 'extracted' ORDER BY id"
        ).fetchall()
        stored: dict[int, set[tuple[int, int, str]]] = {}
        spans = conn.execute('SELECT article_id, start, "end", verb FROM claim')
        for aid, start, end, verb in spans:
            stored.setdefault(int(aid), set()).add((int(start), int(end), str(verb)))
    bad = []
    for aid, text in rows:
        fresh = {(c.start, c.end, c.verb) for c in extract_claims(str(text), nlp)}
        if stored.get(int(aid), set()) != fresh:
            bad.append(int(aid))
    return bad


def article_urls(database_url: str) -> list[str]:
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, connect_timeout=5) as conn:
        return [str(r[0]) for r in conn.execute("SELECT url FROM article")]


@contextlib.contextmanager
def processes(*procs: Proc) -> Iterator[tuple[Proc, ...]]:
    """Start processes and always stop them (and dump the tail of their logs on error)."""
    try:
        for p in procs:
            p.start()
        yield procs
    except BaseException:
        for p in procs:
            sys.stderr.write(f"\n----- {p.name} log tail -----\n{p.log()[-4000:]}\n")
        raise
    finally:
        for p in procs:
            p.stop(timeout=10)
