"""URL canonicalization: one article, one URL, however a feed or a tracker spelled it."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import courlan

# Parameters that identify a click or a campaign, never the page. courlan removes the
# common ones; these are the ones news feeds add on top.
_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "at_", "_hs", "hsa_", "oly_", "vero_")
_TRACKING_NAMES = {
    "fbclid",
    "gclid",
    "dclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "yclid",
    "igshid",
    "mkt_tok",
    "ncid",
    "cmpid",
    "ito",
    "ocid",
    "smid",
    "sr_share",
    "ref_src",
    "rss",
    "ref",
    "feature",
    "__twitter_impression",
    "_ga",
    "_gl",
    "spm",
    "xtor",
}

MAX_URL_LENGTH = 2000


# Characters that cannot appear in a host name (RFC 3986 reg-name, IDN letters allowed).
_NOT_IN_HOSTS = frozenset("<>\"{}|\\^`'()*,;=!$&+")


class InvalidURL(ValueError):
    """Not an absolute http(s) URL we can fetch."""


def canonicalize(url: str) -> str:
    """Lower-case scheme and host, default port, fragment and tracking parameters
    removed, query parameters sorted, percent-encoding normalized. User name and
    password (basic auth in a feed URL) keep their case: they are not part of the host."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"URL longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidURL(f"malformed URL {url[:200]!r}: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidURL(f"not an absolute http(s) URL: {url[:200]!r}")
    try:
        parts.port  # noqa: B018 - raises on a port out of range or not a number
    except ValueError as exc:
        raise InvalidURL(f"malformed URL {url[:200]!r}: {exc}") from exc
    if any(c.isspace() or c in _NOT_IN_HOSTS for c in parts.hostname):
        raise InvalidURL(f"malformed URL {url[:200]!r}: not a valid host name")
    try:
        normalized = courlan.normalize_url(url)
    except (ValueError, AttributeError) as exc:
        raise InvalidURL(f"malformed URL {url[:200]!r}: {exc}") from exc
    userinfo = parts.netloc.rpartition("@")[0]
    parts = urlsplit(normalized)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in _TRACKING_NAMES and not k.lower().startswith(_TRACKING_PREFIXES)
    ]
    query.sort()
    netloc = parts.netloc.rpartition("@")[2].lower()
    if netloc.endswith(":80") and parts.scheme == "http":
        netloc = netloc[:-3]
    elif netloc.endswith(":443") and parts.scheme == "https":
        netloc = netloc[:-4]
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    path = parts.path or "/"
    if "/." in path:  # remove dot segments (RFC 3986 5.2.4): /a/../b/./c -> /b/c
        path = urlsplit(urljoin("http://h/", path)).path or "/"
    return urlunsplit((parts.scheme.lower(), netloc, path, urlencode(query), ""))


def url_hash(canonical_url: str) -> str:
    return hashlib.sha256(canonical_url.encode("utf-8")).hexdigest()


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"
