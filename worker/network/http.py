"""A safe HTTP GET for feeds, pages, robots.txt and sitemaps (httpx).

Limits enforced while streaming: a connect timeout, a read timeout per socket read, and
a total deadline for the whole call (redirects, TLS handshake, headers and body: every
socket operation gets at most the time left, see :mod:`worker.network.netguard`, so a slow drip of
headers or body cannot hold a worker); a maximum *decompressed* size (a gzip, deflate or
brotli bomb is cut off after ``max_response_bytes``, and a declared ``Content-Length`` over
the limit is refused before reading); a cap on redirect hops, followed by hand, each one
connecting through the private-network guard again; and only ``http``/``https`` URLs.

Errors are :class:`FetchError` with ``transient`` set for what is worth retrying
(timeouts, connection errors, a resolver that does not answer, 5xx, 408/425/429) and
unset for what is not (bad URL, blocked address, a host name that does not exist:
:class:`UnknownHost`, TLS certificate failure, too large, redirect loop, 4xx).
"""

from __future__ import annotations

import ssl
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import brotli
import httpcore
import httpx

from worker.core.settings import Settings, parse_networks
from worker.network.netguard import BlockedAddress, GuardedBackend, HostNotFound, deadline

__all__ = [
    "BlockedAddress",
    "FetchError",
    "HttpClient",
    "PoolPerOrigin",
    "RedirectHeld",
    "Response",
    "UnknownHost",
]


class FetchError(Exception):
    """A fetch that did not give a usable response.

    ``transient`` errors (timeouts, connection resets, 5xx, 429) are worth retrying
    later; the others (bad URL, blocked address, too large, redirect loop) are not.
    """

    def __init__(
        self,
        reason: str,
        *,
        transient: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.status = status
        self.retry_after = retry_after


class UnknownHost(FetchError):
    """The URL's host name does not exist (the resolver's NXDOMAIN, a name under
    ``.invalid``: :class:`~worker.network.netguard.HostNotFound`). Not transient: the
    same question minutes later gets the same answer, so nothing retries it on a timer
    (an article is quarantined at once with it, for ``claimwire replay`` once the name
    exists; a feed's poll fails and the feed backs off, polled again later). A resolver
    that gives no answer (``EAI_AGAIN``) is a transient network error instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, transient=False)


class RedirectHeld(Exception):
    """A redirect hop whose ``slot`` refused it (its host is not free now, see
    :meth:`HttpClient.get`): nothing was requested from ``url``. The caller goes on from
    there later, as a new request (``redirected`` hops followed so far, the last one
    answered ``status``); ``cause`` is what the slot raised."""

    def __init__(self, url: str, redirected: int, status: int, cause: BaseException) -> None:
        super().__init__(f"redirect to {url} held: {cause}")
        self.url = url
        self.redirected = redirected
        self.status = status
        self.cause = cause


Slot = Callable[[str], AbstractContextManager[object]]
"""``slot(url)``: entered around each request of a call (its host's politeness)."""


@dataclass
class Response:
    url: str  # the final URL after redirects
    status: int
    headers: httpx.Headers
    body: bytes
    redirects: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    # True when the body was not downloaded because ``accept_type`` refused the type.
    body_skipped: bool = False

    @property
    def content_type(self) -> str:
        return _media_type(self.headers)


MAX_RETRY_AFTER = 7 * 86_400.0
"""The longest ``Retry-After`` honoured (a week, as polling's cap on a feed's hints): a
server answering ``Retry-After: 999999999`` would otherwise close its host to every feed
and page for decades, and park each article's retry as long."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header (delta or HTTP date), at
    most :data:`MAX_RETRY_AFTER`."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(MAX_RETRY_AFTER, max(0.0, (when - (now or datetime.now(UTC))).total_seconds()))


class _Decoder:
    """Incremental, bounded content decoding (gzip, deflate, br, identity)."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.limit = limit
        self.encodings = [e.strip().lower() for e in encoding.split(",") if e.strip()]
        self.encodings = [e for e in self.encodings if e != "identity"]
        if len(self.encodings) > 1:
            raise FetchError(f"unsupported stacked content-encoding {encoding!r}", transient=False)
        self.kind = self.encodings[0] if self.encodings else "identity"
        self._z: zlib._Decompress | None = None
        self._br: brotli.Decompressor | None = None
        if self.kind in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.kind == "deflate":
            self._z = zlib.decompressobj()
        elif self.kind == "br":
            self._br = brotli.Decompressor()
        elif self.kind != "identity":
            raise FetchError(f"unsupported content-encoding {encoding!r}", transient=False)

    def feed(self, chunk: bytes, room: int) -> bytes:
        """Decode ``chunk``, producing at most ``room + 1`` bytes (enough to see overflow)."""
        cap = room + 1
        if self._z is not None:
            try:
                return self._z.decompress(chunk, cap)
            except zlib.error as exc:
                raise FetchError(f"corrupt {self.kind} body: {exc}", transient=False) from exc
        if self._br is not None:
            try:
                return bytes(self._br.process(chunk, output_buffer_limit=cap))
            except brotli.error as exc:
                raise FetchError(f"corrupt brotli body: {exc}", transient=False) from exc
        return chunk


class PoolPerOrigin:
    """httpcore's connection pools, one per origin (scheme, host, port), behind the one
    interface httpx's transport calls (``handle_request``, ``close``).

    One pool for every host made each request scan every pooled connection (httpcore
    checks each idle one for expiry: a ``poll()`` per connection), and with hundreds of
    hosts and 20 keep-alive connections in all the connection a host's next poll needs
    had been closed to make room for another host's: 975 TCP connections for 1,024
    polls (issue 16). A small pool per origin keeps a host's connection alive from one
    request to its next (one a second, at the host's pace) and scans only that host's.

    A pool not used for ``keepalive_expiry`` (its connections have expired), or the
    least recently used one beyond ``max_origins``, is dropped once none of its
    connections is in use. Thread-safe."""

    def __init__(
        self,
        make_pool: Callable[[], httpcore.ConnectionPool],
        *,
        keepalive_expiry: float,
        max_origins: int = 512,
    ) -> None:
        self._make_pool = make_pool
        self._expiry = keepalive_expiry
        self._max_origins = max_origins
        self._pools: OrderedDict[
            tuple[bytes, bytes, int | None], tuple[httpcore.ConnectionPool, float]
        ] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pools)

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        url = request.url
        key = (url.scheme, url.host, url.port)
        now = time.monotonic()
        dropped: list[httpcore.ConnectionPool] = []
        with self._lock:
            found = self._pools.pop(key, None)
            pool = found[0] if found is not None else self._make_pool()
            self._pools[key] = (pool, now)  # the most recently used, last
            while len(self._pools) > 1:
                oldest_key, (oldest, used) = next(iter(self._pools.items()))
                if used > now - self._expiry and len(self._pools) <= self._max_origins:
                    break
                if not all(c.is_idle() for c in oldest.connections):
                    break  # in use: looked at again on a later request
                del self._pools[oldest_key]
                dropped.append(oldest)
        for old in dropped:
            old.close()
        return pool.handle_request(request)

    def close(self) -> None:
        with self._lock:
            pools = [pool for pool, _ in self._pools.values()]
            self._pools.clear()
        for pool in pools:
            pool.close()

    def __enter__(self) -> PoolPerOrigin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Connections of one origin's pool: the per-host limiter lets ``host_max_concurrency``
# requests at a time, robots.txt and discovery come on top.
CONNECTIONS_PER_ORIGIN = 8
KEEPALIVE_PER_ORIGIN = 2
KEEPALIVE_EXPIRY = 5.0


class HttpClient:
    """One client per worker process; thread-safe for concurrent ``get`` calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        transport = httpx.HTTPTransport(retries=0, trust_env=False)
        ssl_context = httpx.create_ssl_context()
        # Route every connection through the guarded backend (see worker.network.netguard).
        backend = GuardedBackend(
            allow_private=settings.allow_private_networks,
            exceptions=parse_networks(settings.allowed_private_addresses),
        )

        def make_pool() -> httpcore.ConnectionPool:
            return httpcore.ConnectionPool(
                ssl_context=ssl_context,
                max_connections=CONNECTIONS_PER_ORIGIN,
                max_keepalive_connections=KEEPALIVE_PER_ORIGIN,
                keepalive_expiry=KEEPALIVE_EXPIRY,
                network_backend=backend,
            )

        self._pools = PoolPerOrigin(make_pool, keepalive_expiry=KEEPALIVE_EXPIRY)
        transport._pool = self._pools  # type: ignore[assignment]
        self._client = httpx.Client(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.connect_timeout,
            ),
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate, br"},
        )

    def close(self) -> None:
        self._client.close()

    def get(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        max_bytes: int | None = None,
        accept_type: Callable[[str], bool] | None = None,
        slot: Slot | None = None,
        redirected: int = 0,
        seen: Sequence[str] = (),
    ) -> Response:
        """GET ``url`` following redirects by hand; raises :class:`FetchError`.

        The whole call, redirects included, ends within ``total_timeout``: every socket
        operation (connect, TLS handshake, each read of headers or body) is bounded by the
        time left. When ``accept_type`` is given and returns False for a 2xx response's
        media type, the body is not downloaded (``body_skipped``).

        ``slot(url)``, when given, is entered around every request of the call, the first
        and each redirect hop, each a request of its own to its host (the per-host
        limits: a hop to the same host is not made inside the first request's turn).
        What entering the first one raises goes to the caller; a hop whose slot raises
        is not made, and :class:`RedirectHeld` says where the chain goes on.
        ``redirected``: hops a chain resumed at ``url`` has followed already (they count
        against ``max_redirects``); ``seen``: URLs it requested before (a redirect back
        to one is a loop)."""
        limit = max_bytes or self.settings.max_response_bytes
        started = time.monotonic()
        ends = started + self.settings.total_timeout
        hops: list[str] = []
        current = url
        status = 0
        while True:
            _check_scheme(current)
            entered = False
            try:
                with slot(current) if slot is not None else nullcontext():
                    entered = True
                    with deadline(ends):
                        resp = self._get_one(current, headers or {}, limit, ends, accept_type)
            except Exception as exc:
                if entered or not hops:
                    raise
                raise RedirectHeld(current, redirected + len(hops), status, exc) from exc
            if (
                resp.status in (301, 302, 303, 307, 308)
                and not resp.headers.get("location", "").strip()
            ):
                # Nothing to follow: without this, an empty body went on as the page.
                raise FetchError(
                    f"HTTP {resp.status} redirect without a Location header",
                    transient=False,
                    status=resp.status,
                )
            if resp.status in (301, 302, 303, 307, 308):
                target = urljoin(current, resp.headers["location"].strip())
                hops.append(current)
                if target in hops or target == current or target in seen:
                    raise FetchError(
                        f"redirect loop at {target}", transient=False, status=resp.status
                    )
                if redirected + len(hops) > self.settings.max_redirects:
                    raise FetchError(
                        f"more than {self.settings.max_redirects} redirects",
                        transient=False,
                        status=resp.status,
                    )
                current = target
                status = resp.status
                continue
            resp.redirects = hops
            resp.elapsed = time.monotonic() - started
            return resp

    def _get_one(
        self,
        url: str,
        headers: dict[str, str],
        limit: int,
        ends: float,
        accept_type: Callable[[str], bool] | None,
    ) -> Response:
        try:
            with self._client.stream("GET", url, headers=headers) as r:
                if r.status_code == 304:
                    # No body by definition: reading its end lets the connection serve
                    # the host's next request (closed unread, it was dropped).
                    r.read()
                    return Response(str(r.url), r.status_code, r.headers, b"")
                if r.status_code in (301, 302, 303, 307, 308) or r.status_code >= 400:
                    # Bodies of redirects and errors are not needed; don't download them.
                    return Response(str(r.url), r.status_code, r.headers, b"")
                media_type = _media_type(r.headers)
                if accept_type is not None and not accept_type(media_type):
                    return Response(str(r.url), r.status_code, r.headers, b"", body_skipped=True)
                decoder = _Decoder(r.headers.get("content-encoding", ""), limit)
                parts: list[bytes] = []
                size = 0
                declared = r.headers.get("content-length", "")
                if declared.isdigit() and decoder.kind == "identity" and int(declared) > limit:
                    raise FetchError(
                        f"too large: {declared} bytes declared, limit {limit}",
                        transient=False,
                        status=r.status_code,
                    )
                for chunk in r.iter_raw(16_384):
                    if time.monotonic() > ends:
                        raise FetchError(
                            f"too slow: over {self.settings.total_timeout:g}s in total",
                            transient=True,
                            status=r.status_code,
                        )
                    out = decoder.feed(chunk, limit - size)
                    size += len(out)
                    if size > limit:
                        raise FetchError(
                            f"too large: over {limit} bytes", transient=False, status=r.status_code
                        )
                    parts.append(out)
                    # Drain output a bounded decompressor kept back.
                    while decoder._br is not None and not decoder._br.can_accept_more_data():
                        out = decoder.feed(b"", limit - size)
                        size += len(out)
                        if size > limit:
                            raise FetchError(
                                f"too large: over {limit} bytes",
                                transient=False,
                                status=r.status_code,
                            )
                        parts.append(out)
                return Response(str(r.url), r.status_code, r.headers, b"".join(parts))
        except BlockedAddress as exc:
            raise FetchError(f"blocked address: {exc}", transient=False) from exc
        except HostNotFound as exc:
            raise UnknownHost(f"host not found: {exc}") from exc
        except httpx.TimeoutException as exc:
            if time.monotonic() >= ends:
                raise FetchError(
                    f"too slow: over {self.settings.total_timeout:g}s in total", transient=True
                ) from exc
            raise FetchError(f"timeout: {type(exc).__name__}", transient=True) from exc
        except httpx.TransportError as exc:
            tls = _tls_error(exc)
            if tls is not None:
                # A certificate the client does not trust will not fix itself within the
                # retry window; an operator or the site owner has to act.
                raise FetchError(f"TLS error: {tls}", transient=False) from exc
            msg = str(exc) or type(exc).__name__
            raise FetchError(f"network error: {msg}", transient=True) from exc
        except httpx.InvalidURL as exc:
            raise FetchError(f"invalid URL: {exc}", transient=False) from exc


def _media_type(headers: httpx.Headers) -> str:
    return str(headers.get("content-type", "")).split(";", 1)[0].strip().lower()


def _tls_error(exc: BaseException) -> str | None:
    """The TLS failure behind a transport error (certificate, handshake), if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {cur.verify_message or cur.reason}"
        if isinstance(cur, ssl.SSLError):
            return str(cur.reason or cur)
        cur = cur.__cause__ or cur.__context__
    msg = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in msg or "[SSL" in msg:
        return msg
    return None


def _check_scheme(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise FetchError(f"invalid URL {url!r}: {exc}", transient=False) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"not an http(s) URL: {url!r}", transient=False)


def classify_status(status: int, headers: httpx.Headers) -> FetchError | None:
    """Map an HTTP status to an error (``None`` for success)."""
    if status < 400:
        return None
    retry_after = parse_retry_after(headers.get("retry-after"))
    transient = status in (408, 425, 429) or status >= 500
    return FetchError(f"HTTP {status}", transient=transient, status=status, retry_after=retry_after)
