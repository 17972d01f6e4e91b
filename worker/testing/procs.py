"""Real processes for fault tests and benchmarks: a private Redis, a private PostgreSQL
cluster, Celery workers and beat as subprocesses, free ports and polling waits.

Nothing here is mocked. The machine's shared Redis (6379) and PostgreSQL (5432) are
never stopped: the servers that get killed and restarted are our own, on free ports,
in temporary directories, and removed afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port``."""
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
        except Exception:  # noqa: BLE001, S110 (not ready yet: a server still starting)
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


# ------------------------------------------------------------------------------ Redis


class RedisServer:
    """A private ``redis-server`` without persistence: a restart loses every message."""

    def __init__(self, workdir: Path, port: int | None = None, password: str | None = None) -> None:
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
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=self.dir)  # noqa: S603
        wait_until(lambda: self.ping(), 15, 0.1, f"redis on port {self.port}")
        return self

    def client(self) -> redis.Redis:
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
        r = subprocess.run(  # noqa: S603 (our own command line: initdb, pg_ctl)
            cmd, check=False, capture_output=True, text=True, timeout=120
        )
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
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def terminate_backends(url: str) -> int:
    """Kill every other connection to the database of ``url`` (a small "restart")."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------- Celery processes


def worker_env(
    base: dict[str, str],
    database_url: str,
    broker_url: str,
    *,
    pythonpath: Iterable[str | Path] = (),
    **overrides: str,
) -> dict[str, str]:
    """Environment for worker processes: ``base`` (the caller's settings) with the
    database and broker, unbuffered output, and ``overrides`` as ``CLAIMWIRE_*``
    settings (``HOST_MIN_INTERVAL="0"``).

    The processes run ``sys.executable``, so the installed claimwire (``worker``,
    ``tasks``, ``schemas``) is importable as it is. A Celery app that is not part of the
    package (a test's or a benchmark's own, ``-A bench.poll_app``) needs the directory
    holding it: ``pythonpath``, put before any ``PYTHONPATH`` of ``base``."""
    env = dict(base)
    env.update(
        {
            "CLAIMWIRE_DATABASE_URL": database_url,
            "CLAIMWIRE_BROKER_URL": broker_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    paths = [str(p) for p in pythonpath]
    if base.get("PYTHONPATH"):
        paths.append(base["PYTHONPATH"])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
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
        self.proc = subprocess.Popen(  # noqa: S603 (the command line built by celery_worker)
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
