"""The private-network (SSRF) guard, and the total deadline of a download.

Every TCP connection claimwire opens goes through :class:`GuardedBackend`, which resolves
the host itself, refuses forbidden addresses and connects to the checked address. The
check therefore holds on every redirect hop and cannot be dodged by DNS rebinding
between a check and the connection.

Forbidden: loopback, private (RFC 1918, unique-local), link-local (which holds the cloud
metadata address 169.254.169.254), multicast, reserved, unspecified, carrier-grade NAT,
benchmarking and IETF ranges, and the IPv4 forms of all of these inside IPv6.
``CLAIMWIRE_ALLOW_PRIVATE_NETWORKS=true`` turns the guard off; the narrower
``CLAIMWIRE_ALLOWED_PRIVATE_ADDRESSES`` lets named addresses or networks through while the guard
stays on for everything else (an internal mirror, or the tests' server on 127.0.0.2).

The streams the backend returns also enforce the *total* deadline of the request being
made (set with :func:`deadline`): every socket read, write and TLS handshake gets at most
the time left, so a server that drips its headers or body one byte at a time cannot hold a
worker longer than ``CLAIMWIRE_TOTAL_TIMEOUT`` (plus at most one socket operation's
scheduling slack).
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import httpcore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges that are not public internet but that ipaddress does not flag as private.
_EXTRA_BLOCKED = [
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
]


class BlockedAddress(Exception):
    """The URL's host resolves to an address the settings forbid."""


class HostNotFound(Exception):
    """The URL's host name does not exist: the resolver answered that there is no such
    name (NXDOMAIN: ``EAI_NONAME``) or that it has no address (``EAI_NODATA``), or it
    ends in ``.invalid``, which never resolves (RFC 6761 6.4: answered at once, without
    asking). Not a failure to get an answer (``EAI_AGAIN``: the resolver timed out or
    is unreachable), which stays a transient connection error."""


# getaddrinfo's answers that say the name does not exist (EAI_NODATA is not defined on
# every platform); every other failure (EAI_AGAIN, EAI_FAIL...) is a failure to resolve
_NOT_FOUND = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)


def _unmapped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:  # 2002::/16 embeds an IPv4 address
            return ip.sixtofour
    return ip


def is_forbidden(ip: IPAddress, exceptions: Sequence[IPNetwork] = ()) -> bool:
    ip = _unmapped(ip)
    if any(ip.version == net.version and ip in net for net in exceptions):
        return False
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in net for net in _EXTRA_BLOCKED)
    )


def resolve(host: str, port: int) -> list[IPAddress]:
    if host.rstrip(".").lower().endswith(".invalid"):
        raise HostNotFound(f"{host} (a name under .invalid never resolves)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in _NOT_FOUND:
            raise HostNotFound(f"{host} ({exc.strerror})") from exc
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror}") from exc
    seen: list[IPAddress] = []
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if addr not in seen:
            seen.append(addr)
    return seen


def check_host(
    host: str, port: int, *, allow_private: bool, exceptions: Sequence[IPNetwork] = ()
) -> list[IPAddress]:
    """Resolve ``host`` and return the addresses that may be contacted."""
    addrs = resolve(host, port)
    if allow_private:
        return addrs
    allowed = [a for a in addrs if not is_forbidden(a, exceptions)]
    if not allowed:
        shown = ", ".join(str(a) for a in addrs)
        raise BlockedAddress(
            f"{host} resolves to a private or reserved address ({shown}); "
            "set CLAIMWIRE_ALLOW_PRIVATE_NETWORKS=true to allow it"
        )
    return allowed


# ------------------------------------------------------------------- total deadline

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "claimwire_fetch_deadline", default=None
)


@contextlib.contextmanager
def deadline(at: float) -> Iterator[None]:
    """Within this block, socket operations of this thread end by ``time.monotonic() == at``."""
    token = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(token)


def deadline_passed() -> bool:
    at = _deadline.get()
    return at is not None and time.monotonic() >= at


def _clamp(timeout: float | None, exc: type[Exception]) -> float | None:
    at = _deadline.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise exc("total deadline of the download passed")
    return left if timeout is None else min(timeout, left)


# ------------------------------------------------------------------- send gate


class SendGate(Protocol):
    """Called around the first write of a request (its request line and headers): the
    moment the request actually leaves, as the server sees it (a host's politeness,
    :mod:`worker.network.politeness`)."""

    def before_send(self) -> None: ...

    def after_send(self) -> None: ...


_send_gate: contextvars.ContextVar[list[SendGate] | None] = contextvars.ContextVar(
    "claimwire_send_gate", default=None
)


@contextlib.contextmanager
def send_gate(gate: SendGate) -> Iterator[None]:
    """Within this block, the first write on a stream of this thread (the request's
    headers) waits for ``gate.before_send()`` and then calls ``gate.after_send()``;
    later writes do not."""
    token = _send_gate.set([gate])
    try:
        yield
    finally:
        _send_gate.reset(token)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation is bounded by the current deadline, and
    whose first write in a :func:`send_gate` block passes that gate."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        gates = _send_gate.get()
        if not gates or not buffer:
            self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))
            return
        gate = gates.pop()  # the request's first write only
        gate.before_send()
        try:
            self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))
        finally:
            gate.after_send()

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _clamp(timeout, httpcore.ConnectTimeout)
        )
        return DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, connecting only to addresses the guard allows."""

    def __init__(self, *, allow_private: bool, exceptions: Sequence[IPNetwork] = ()) -> None:
        self._inner = httpcore.SyncBackend()
        self._allow_private = allow_private
        self._exceptions = tuple(exceptions)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        addrs = check_host(
            host, port, allow_private=self._allow_private, exceptions=self._exceptions
        )
        for addr in addrs:
            try:
                stream = self._inner.connect_tcp(
                    str(addr),
                    port,
                    _clamp(timeout, httpcore.ConnectTimeout),
                    local_address,
                    socket_options,
                )
                return DeadlineStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise BlockedAddress("unix sockets are never fetched")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
