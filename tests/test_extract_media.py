"""worker.pages.prune_media: photo galleries found by structure and removed before extraction.

Every page here is invented in the test.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from worker.pages.extractor import PROFILES, _parse, extract_page
from worker.pages.prune_media import MediaSettings, gallery_blocks, without_galleries

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
URL = "https://news.example.org/2025/05/orchard-festival"
MEDIA = PROFILES["balanced+teasers+media+arbiter"]
REVISION4 = PROFILES["balanced+teasers+arbiter"]  # production before galleries were removed

ARTICLE = [
    "The valley's apple growers opened their orchards to visitors on Saturday for the first "
    "harvest festival since the cooperative was founded, and more than four thousand people "
    "came by bus, bicycle and on foot from the neighbouring towns.",
    "The cooperative's chair said the festival was meant to show where the fruit sold in the "
    "region's markets comes from, and how much work goes into a season that began with a late "
    "frost and ended with the driest August in twenty years.",
    "Growers let children pick their own apples, ran tastings of eleven old varieties and "
    "explained the new drip irrigation that saved most of the crop during the drought.",
    "The town council has already asked the cooperative to hold the festival again next year "
    "and offered the market square for a cider tasting on the Sunday.",
    "Not everyone was pleased: residents of the lane that leads to the largest orchard "
    "complained about parked cars blocking their gates for most of the afternoon.",
    "The cooperative promised a shuttle from the railway station next year and a field "
    "behind the school as a car park, which the council is expected to approve in March.",
    "Next year's festival is planned for the second weekend of September, when the late "
    "varieties are ripe, and the growers hope to add a market for their juice and vinegar.",
]

CAPTIONS = [
    f"Picture {n}: visitors at the {place} during the festival, photographed by the "
    "cooperative's volunteer photographer."
    for n, place in enumerate(
        [
            "cider press",
            "tasting tent",
            "old barn",
            "tractor parade",
            "children's corner",
            "market stall",
            "pruning demonstration",
            "bee hives",
            "jam kitchen",
            "brass band",
            "orchard gate",
            "weighing station",
        ],
        start=1,
    )
]


def gallery(lazy: bool = False) -> str:
    """A slideshow: the pictures in one list (lazy-loaded ones carry ``data-src`` and no
    ``img``), the captions in another, as many news sites build them."""
    if lazy:
        pictures = "".join(
            f'<li class="slide" data-src="/photos/{n}.jpg"></li>' for n in range(len(CAPTIONS))
        )
    else:
        pictures = "".join(
            f'<li><img src="/photos/{n}.jpg" alt=""></li>' for n in range(len(CAPTIONS))
        )
    captions = "".join(
        f"<li><h3>Festival</h3><span>{n}/{len(CAPTIONS)}</span><p>{c}</p></li>"
        for n, c in enumerate(CAPTIONS, start=1)
    )
    return (
        '<div class="embed"><h2>The festival in pictures</h2>'
        f'<div class="pics"><ul>{pictures}</ul></div><ul class="legends">{captions}</ul></div>'
    )


def page(body: str, *, container: str = "story") -> str:
    return (
        '<html lang="en"><head><title>Orchards open their gates</title>'
        '<meta name="author" content="Mira Holm">'
        '<meta property="article:published_time" content="2025-05-17T09:30:00Z">'
        '</head><body><nav><a href="/">Home</a> <a href="/region">Region</a></nav>'
        '<div class="main"><h1>Orchards open their gates</h1>'
        f'<div class="{container}">{body}</div></div>'
        "<footer>Valley Courier</footer></body></html>"
    )


def article_with_gallery(lazy: bool = False) -> str:
    paras = [f"<p>{p}</p>" for p in ARTICLE]
    return page("".join(paras[:2]) + gallery(lazy) + "".join(paras[2:]))


def test_a_gallery_next_to_the_article_is_removed() -> None:
    html = article_with_gallery()
    tree = _parse(html)
    assert tree is not None
    blocks = gallery_blocks(tree)
    assert [b.get("class") for b in blocks] == ["embed"]  # the whole slideshow, title included
    plain = extract_page(html, URL, now=NOW, profile=REVISION4).text
    assert sum(c in plain for c in CAPTIONS) >= 6  # the failure the rule is for
    text = extract_page(html, URL, now=NOW, profile=MEDIA).text
    assert all(p in text for p in ARTICLE)
    assert not any(c in text for c in CAPTIONS)


def test_production_removes_a_gallery_next_to_the_article() -> None:
    from worker.pages.extractor import DEFAULT_PROFILE, EXTRACTOR_VERSION

    assert EXTRACTOR_VERSION.endswith("+cw7")
    text = extract_page(article_with_gallery(), URL, now=NOW, profile=DEFAULT_PROFILE).text
    assert all(p in text for p in ARTICLE)
    assert not any(c in text for c in CAPTIONS)


def test_lazy_loaded_pictures_count_as_pictures() -> None:
    tree = _parse(article_with_gallery(lazy=True))
    assert tree is not None
    assert len(gallery_blocks(tree)) == 1
    text = extract_page(article_with_gallery(lazy=True), URL, now=NOW, profile=MEDIA).text
    assert all(p in text for p in ARTICLE) and not any(c in text for c in CAPTIONS)


@pytest.mark.parametrize(
    ("attribute", "is_picture"),
    [
        ('data-original="/p.jpg"', True),
        ('data-background-image="url(/p.jpg)"', True),
        ('DATA-BG="/p.jpg"', True),  # HTML attribute names are case-insensitive
        ('data-src=""', False),  # an empty lazy-load attribute holds no picture
        ('data-id="slide"', False),  # another data- attribute
        ('src="/p.jpg"', False),  # a list item is not a picture by its src
    ],
)
def test_which_attributes_make_a_lazy_loaded_picture(attribute: str, is_picture: bool) -> None:
    # the slideshow's pictures are list items that carry only this attribute
    html = re.sub(r'data-src="/photos/\d+\.jpg"', attribute, article_with_gallery(lazy=True))
    assert html.count(attribute) == len(CAPTIONS)
    tree = _parse(html)
    assert tree is not None
    assert [b.get("class") for b in gallery_blocks(tree)] == (["embed"] if is_picture else [])


def test_thresholds_are_honoured() -> None:
    tree = _parse(article_with_gallery())
    assert tree is not None
    assert len(CAPTIONS) == 12
    assert gallery_blocks(tree, replace(MediaSettings(), min_images=13)) == []
    # about 100 characters of caption per picture
    assert gallery_blocks(tree, replace(MediaSettings(), max_chars_per_image=60)) == []
    # the article next to the gallery holds about 1,000 characters without spaces
    assert gallery_blocks(tree, replace(MediaSettings(), min_context_chars=2000)) == []


def test_a_text_heavy_container_named_gallery_is_kept() -> None:
    """The name-based rule's failure: the article itself sits in a container whose class
    says "gallery". A few figures between long paragraphs are not a gallery."""
    figures = [
        f'<figure><img src="/photos/{n}.jpg"><figcaption>Orchard</figcaption></figure>'
        for n in range(3)
    ]
    body = "".join(
        f"<p>{p}</p>{f}" for p, f in zip(ARTICLE, figures + [""] * (len(ARTICLE) - 3), strict=True)
    )
    html = page(body, container="article-gallery gallery slideshow")
    tree = _parse(html)
    assert tree is not None
    assert gallery_blocks(tree) == []
    assert without_galleries(tree) is tree
    named = extract_page(html, URL, now=NOW, profile=PROFILES["balanced+gallery+arbiter"]).text
    assert not any(p in named for p in ARTICLE)  # what the name-based rule did
    text = extract_page(html, URL, now=NOW, profile=MEDIA).text
    assert all(p in text for p in ARTICLE)


def test_a_page_that_is_only_a_gallery_keeps_its_text() -> None:
    """A photo story: the pictures and their captions are the page's content, with one
    line of introduction. Too little text sits next to them, so nothing is removed; and
    were the block removed (no minimum of text next to it), too little would be left, so
    the page is extracted as it is."""
    html = page("<p>Pictures from Saturday's festival.</p>" + gallery())
    tree = _parse(html)
    assert tree is not None
    plain = extract_page(html, URL, now=NOW, profile=REVISION4).text
    assert all(c in plain for c in CAPTIONS)
    assert gallery_blocks(tree) == []
    assert extract_page(html, URL, now=NOW, profile=MEDIA).text == plain
    loose = replace(MediaSettings(), min_context_chars=0)
    assert len(gallery_blocks(tree, loose)) == 1
    assert extract_page(html, URL, now=NOW, profile=replace(MEDIA, media=loose)).text == plain


def test_pictures_inside_paragraphs_are_not_a_gallery() -> None:
    """Inline pictures (formulas, emoji) inside a paragraph's text."""
    inline = "".join(f'<img src="/f/{n}.png" alt="x{n}"> and ' for n in range(10))
    html = page("".join(f"<p>{p}</p>" for p in ARTICLE) + f"<p>Formulas: {inline} more.</p>")
    tree = _parse(html)
    assert tree is not None
    assert gallery_blocks(tree) == []


def test_icons_are_not_pictures() -> None:
    icons = "".join(
        f'<li><img src="/i/{n}.png" width="16" height="16"></li>' for n in range(len(CAPTIONS))
    )
    html = article_with_gallery().replace(
        "".join(f'<li><img src="/photos/{n}.jpg" alt=""></li>' for n in range(len(CAPTIONS))),
        icons,
    )
    tree = _parse(html)
    assert tree is not None
    assert gallery_blocks(tree) == []


def test_metadata_is_unchanged() -> None:
    html = article_with_gallery()
    plain = extract_page(html, URL, now=NOW, profile=REVISION4)
    page_ = extract_page(html, URL, now=NOW, profile=MEDIA)
    assert page_.text != plain.text
    fields = ("title", "author", "published_at", "sitename", "language", "description")
    assert [getattr(page_, f) for f in fields] == [getattr(plain, f) for f in fields]
    assert plain.title == "Orchards open their gates" and plain.author == "Mira Holm"
    assert plain.published_at == datetime(2025, 5, 17, 9, 30, tzinfo=UTC)
