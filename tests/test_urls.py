"""URL canonicalization: one article, one URL, however a feed or a tracker spelled it."""

from __future__ import annotations

import pytest

from worker.network.urls import InvalidURL, canonicalize, host_of, origin_of, url_hash

SAME = [
    # (a spelling a feed may use, the canonical URL)
    ("https://News.Example.org/world/story", "https://news.example.org/world/story"),
    ("HTTPS://news.example.org:443/world/story", "https://news.example.org/world/story"),
    ("http://news.example.org:80/world/story", "http://news.example.org/world/story"),
    ("https://news.example.org/world/story#comments", "https://news.example.org/world/story"),
    ("https://news.example.org/a/../world/./story", "https://news.example.org/world/story"),
    ("https://news.example.org", "https://news.example.org/"),
    ("  https://news.example.org/x  ", "https://news.example.org/x"),
    # query parameters sorted, tracking ones removed
    ("https://n.example/s?b=2&a=1", "https://n.example/s?a=1&b=2"),
    (
        "https://n.example/s?id=7&utm_source=rss&utm_medium=feed&utm_campaign=x&utm_content=y",
        "https://n.example/s?id=7",
    ),
    ("https://n.example/s?fbclid=IwAR0abc&id=7", "https://n.example/s?id=7"),
    ("https://n.example/s?gclid=Cj0&id=7&msclkid=1&yclid=2", "https://n.example/s?id=7"),
    ("https://n.example/s?id=7&mc_cid=1&mc_eid=2&_ga=3", "https://n.example/s?id=7"),
    ("https://n.example/s?utm_source=a", "https://n.example/s"),
    # basic-auth credentials keep their case (a password is not a host name)
    ("http://Reader:PaSS@News.Example.org:80/feed", "http://Reader:PaSS@news.example.org/feed"),
]


@pytest.mark.parametrize(("given", "canonical"), SAME)
def test_canonical_form(given: str, canonical: str) -> None:
    assert canonicalize(given) == canonical
    assert canonicalize(canonical) == canonical  # idempotent


def test_every_spelling_of_one_article_has_one_hash() -> None:
    spellings = [
        "https://news.example.org/world/story?id=7&page=2",
        "https://NEWS.example.org:443/world/story?page=2&id=7",
        "https://news.example.org/world/story?page=2&id=7&utm_source=twitter#top",
        "https://news.example.org/world/story?fbclid=1&gclid=2&id=7&page=2",
    ]
    assert len({url_hash(canonicalize(u)) for u in spellings}) == 1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://n.example/s?id=7", "https://n.example/s?id=8"),
        ("https://n.example/Path", "https://n.example/path"),  # paths are case-sensitive
        ("http://n.example/s", "https://n.example/s"),
        ("https://n.example:8443/s", "https://n.example/s"),
        ("https://n.example/s?page=2", "https://n.example/s"),
    ],
)
def test_different_pages_stay_different(a: str, b: str) -> None:
    assert canonicalize(a) != canonicalize(b)


@pytest.mark.parametrize(
    "bad",
    [
        "not a url",
        "ftp://n.example/file",
        "javascript:alert(1)",
        "mailto:news@n.example",
        "/relative/path",
        "http://",
        "https://n.example/" + "x" * 2100,
        "http://127.0.0.1:80801/rss.xml",  # port out of range
        "http://n.example:port/rss.xml",
        "http://exa mple.com/feed",  # a space in the host
        "http://exa<mple.com/feed",
    ],
)
def test_what_cannot_be_fetched_is_refused(bad: str) -> None:
    with pytest.raises(InvalidURL):
        canonicalize(bad)


def test_host_and_origin() -> None:
    assert host_of("https://News.Example.org:8443/x") == "news.example.org"
    assert origin_of("https://News.Example.org:8443/x?y") == "https://news.example.org:8443"
    assert origin_of("https://u:P@News.Example.org/x") == "https://news.example.org"
