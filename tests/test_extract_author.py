"""worker.pages.author: trafilatura's author search without its copy of the whole page.

Every page here is invented in the test.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from lxml import etree
from trafilatura import metadata as tmeta

from worker.pages import author as author_mod
from worker.pages.author import _Search, author
from worker.pages.extractor import _parse

STORY = (
    "<p>The river ferry between the two villages will run every hour from the first of "
    "May, the transport office said on Monday after a year of repairs to the landing.</p>"
    "<p>Residents had asked for a later last crossing, which the office also granted, "
    "so that the ferry now leaves the eastern bank at eleven in the evening.</p>"
)


def page(body: str, head: str = "") -> str:
    return (
        f"<html><head><title>Ferry timetable</title>{head}</head><body>"
        f"<article><h1>Ferry timetable</h1>{body}{STORY}</article></body></html>"
    )


# (page, the author trafilatura's extract_author gives)
CASES: list[tuple[str, str | None]] = [
    # a date inside the byline: pruned from the candidate, its tail joined to the text
    ('<p class="byline">By Ana Lobo <time>3 May</time>and Rui Sa</p>', "Ana Lobo; Rui Sa"),
    # a discarded element splitting a word: the tail joins the text before it
    ('<span class="author">Teo<span class="date">x</span>dora Pinto</span>', "Teodora Pinto"),
    # a candidate inside a sidebar is deleted with it: the next one is taken
    (
        '<div class="sidebar"><span class="author">Sidebar Person</span></div>'
        '<span class="author-name">Clara Neves</span>',
        "Clara Neves",
    ),
    # inside a figure (the second discard query), and inside the comments
    (
        '<figure><figcaption><span class="author">Photo Person</span></figcaption></figure>'
        '<div id="comments"><p class="author">Comment Writer</p></div>'
        '<div class="writer">Joana Reis</div>',
        "Joana Reis",
    ),
    # a candidate that is itself discarded (a time with an author class)
    ('<time class="byline">Early Morning</time><a rel="author">Pedro Alves</a>', "Pedro Alves"),
    # only discarded candidates: no author
    ('<div class="sidebar"><p class="byline">Nobody Here</p></div>', None),
    # a candidate whose text is too long once pruned, then a later query's
    (
        '<span class="author">' + "Somebody with a very long description " * 4 + "</span>"
        '<div class="post-byline">Marta Costa</div>',
        "Marta Costa",
    ),
    # nothing to find
    ("<p>No byline at all.</p>", None),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_author_is_extract_authors(body: str, expected: str | None) -> None:
    """The same author as trafilatura's ``extract_author`` on pages where its pruning
    matters (a candidate inside a discarded block, discarded blocks inside a candidate,
    their tails), and the page is left as it was."""
    tree = _parse(page(body))
    assert tree is not None
    before = etree.tostring(tree)
    assert author_mod.author_search().exact
    assert tmeta.extract_author(tree) == expected
    assert author(tree) == expected
    assert etree.tostring(tree) == before


def test_author_search_copies_its_candidates_not_the_page(monkeypatch: Any) -> None:
    """trafilatura's search is not called and the page is not copied: only the candidate
    examined (a byline far smaller than the page)."""
    tree = _parse(page('<p class="byline">By Ana Lobo <time>3 May</time></p>'))
    assert tree is not None
    copied: list[Any] = []
    original = copy.deepcopy

    def deepcopy(x: Any, *args: Any) -> Any:
        copied.append(x)
        return original(x, *args)

    def refused(tree: Any) -> str | None:
        raise AssertionError("trafilatura's extract_author called")

    search = _Search()
    search.extract_author = refused
    monkeypatch.setattr(author_mod.copy, "deepcopy", deepcopy)
    assert search(tree) == "Ana Lobo"
    assert [el.tag for el in copied] == ["p"]


def test_author_search_is_trafilaturas_when_trafilatura_changed(monkeypatch: Any) -> None:
    """Another trafilatura (another source of its functions, other discard queries, no
    source to read) or a tree that is not its document's root: trafilatura's own
    ``extract_author`` is what answers."""
    import trafilatura.xpaths as txp

    tree = _parse(page('<p class="byline">By Ana Lobo</p>'))
    assert tree is not None
    calls: list[Any] = []

    def theirs(tree: Any) -> str | None:
        calls.append(tree)
        return "From Trafilatura"

    def search_of(**patches: Any) -> _Search:
        with monkeypatch.context() as m:
            for target, value in patches.items():
                m.setattr(target, value)
            search = _Search()
        search.extract_author = theirs  # trafilatura's function, as the search holds it
        return search

    # trafilatura 2.3.1's functions, as known: the search of its own
    assert search_of()(tree) == "Ana Lobo"
    assert calls == []
    sources = "worker.pages.author._SOURCES"
    changed = [
        search_of(**{sources: {**author_mod._SOURCES, "extract_author": "0"}}),
        search_of(**{sources: {**author_mod._SOURCES, "extract_metainfo": "0"}}),
        search_of(**{"worker.pages.author._digest": lambda fn: (_ for _ in ()).throw(OSError())}),
    ]
    for discard in (
        [*txp.AUTHOR_DISCARD_XPATHS, etree.XPath("//aside")],
        [txp.AUTHOR_DISCARD_XPATHS[0], etree.XPath("//time[@datetime]")],
        [etree.XPath("//*[@class='date']"), txp.AUTHOR_DISCARD_XPATHS[1]],
        # the same shape, another query
        [etree.XPath(".//*[self::div][@class='date']"), txp.AUTHOR_DISCARD_XPATHS[1]],
    ):
        changed.append(search_of(**{"trafilatura.xpaths.AUTHOR_DISCARD_XPATHS": discard}))
    for search in changed:
        assert not search.exact
        assert search(tree) == "From Trafilatura"
        assert calls.pop() is tree

    # a subtree: the search of the known trafilatura hands it to trafilatura's function
    search = search_of()
    assert search.exact
    body = tree.find("body")
    assert body is not None
    assert search(body) == "From Trafilatura"
    assert calls == [body]
    assert search(tree) == "Ana Lobo"


# Elements for each condition of trafilatura's author queries, on tags each query keeps
# and on tags it does not, with near misses, nested matches and two matching attributes.
QUERY_BODY = (
    '<div rel="author">r</div><li rel="author">r-li</li><span id="author">i</span>'
    '<p class="author">c</p><em class="author">c-em</em><strong class="x author-name">an</strong>'
    '<span class="authorName">an2</span><span class="Authorname">miss</span>'
    '<link itemprop="author name"/><a itemprop="author">ip</a><td itemprop="authors">ip-td</td>'
    "<div><rel>me</rel>rel child</div><div><rel>you</rel>miss</div><address><rel>me</rel></address>"
    '<div data-testid="AuthorCard">card</div><div data-testid="AuthorURLs">miss</div>'
    "<author>Element Author</author>"
    '<h3 class="byline">b</h3><h2 class="byline">b-h2</h2><h4 class="username">u</h4>'
    '<span class="BBL">bbl</span><span class="bbl">miss</span><div class="byl">byl</div>'
    '<div id="zuozhe">z</div><div id="post-Author">Aa</div><section id="xiaobian-1">x</section>'
    '<span class="channel-name">ch</span><div class="journalist-name">j</div>'
    '<div class="submitted-by"><span class="posted-by">nested</span></div>'
    '<footer data-component="ArticleByline">dc</footer><ul class="screenname">s</ul>'
    '<b class="writer" id="author">two</b><i class="Byline">B</i><i class="BYLINE">miss</i>'
)


def test_author_queries_find_trafilaturas_elements() -> None:
    """The author queries asked from the attributes they test find the elements
    trafilatura's ``AUTHOR_XPATHS`` find, in the same order, on a page with a match for
    every condition (on kept and other tags, near misses, nested, two attributes)."""
    import trafilatura.xpaths as txp

    tree = _parse(page(QUERY_BODY))
    assert tree is not None
    search = _Search()
    assert search.exact
    # asked in their other form, not as trafilatura's text
    assert [str(q.path) for q in search.queries] != [str(q.path) for q in txp.AUTHOR_XPATHS]
    for theirs, ours in zip(txp.AUTHOR_XPATHS, search.queries, strict=True):
        found = theirs(tree)
        assert len(found) >= 5
        assert ours(tree) == found


def test_author_queries_are_trafilaturas_when_their_text_changed(monkeypatch: Any) -> None:
    """Other author queries in trafilatura: its own are asked (the discard queries' check
    is unchanged), and the author is the one they find."""
    import trafilatura.xpaths as txp

    other = [etree.XPath("//*[@class='reporter']")]
    monkeypatch.setattr(txp, "AUTHOR_XPATHS", other)
    search = _Search()
    assert search.exact
    assert search.queries == other
    tree = _parse(page('<p class="byline">Ana Lobo</p><p class="reporter">Rui Sa</p>'))
    assert tree is not None
    assert search(tree) == "Rui Sa"
