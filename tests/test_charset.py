"""worker.pages.charset: declared, sniffed and detected encodings; never raises."""

from __future__ import annotations

import codecs
import random

import pytest

from worker.pages.charset import decode_html, normalize_label

RU = "Съешь же ещё этих мягких французских булок, да выпей чаю. Москва встречает весну."
PT = "A ação do coração não é fácil; o português é lindo — “disse ela” à noite."
ZH = "我们今天在北京讨论了新的经济政策，记者报道说会议非常成功。"


def page(body_text: str, head: str = "") -> str:
    return f"<html><head>{head}<title>t</title></head><body><p>{body_text}</p></body></html>"


@pytest.mark.parametrize(
    ("text", "python_codec", "header", "expected"),
    [
        (RU, "cp1251", "text/html; charset=windows-1251", "windows-1251"),
        (PT, "cp1252", "text/html; charset=ISO-8859-1", "windows-1252"),
        (ZH, "gb2312", "text/html; charset=GB2312", "gb18030"),
        (RU + PT + ZH, "utf-8", "text/html; charset=utf-8", "utf-8"),
    ],
)
def test_header_charset(text: str, python_codec: str, header: str, expected: str) -> None:
    body = page(text).encode(python_codec)
    decoded, used = decode_html(body, header)
    assert used == expected
    assert text in decoded


@pytest.mark.parametrize(
    ("text", "python_codec", "meta", "expected"),
    [
        (RU, "cp1251", '<meta charset="windows-1251">', "windows-1251"),
        (
            PT,
            "cp1252",
            '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">',
            "windows-1252",
        ),
        (ZH, "gb2312", "<meta charset=gb2312>", "gb18030"),
        (RU, "utf-8", "<meta charset='UTF-8'>", "utf-8"),
    ],
)
def test_meta_charset_without_header(
    text: str, python_codec: str, meta: str, expected: str
) -> None:
    decoded, used = decode_html(page(text, meta).encode(python_codec), "text/html")
    assert used == expected
    assert text in decoded


def test_header_wins_over_meta() -> None:
    body = page(RU, '<meta charset="koi8-r">').encode("cp1251")
    decoded, used = decode_html(body, "text/html; charset=windows-1251")
    assert used == "windows-1251"
    assert RU in decoded


def test_gb18030_only_characters_decoded_under_gb2312_label() -> None:
    # 𠀀 (U+20000) and € do not exist in GB2312; real "GB2312" pages use GBK/GB18030 bytes.
    text = ZH + "𠀀€"
    decoded, used = decode_html(page(text).encode("gb18030"), "text/html; charset=gb2312")
    assert used == "gb18030"
    assert text in decoded


def test_windows_1252_specials_and_undefined_bytes() -> None:
    # 0x80 is € in windows-1252 (not a C1 control as in ISO-8859-1); 0x81 is undefined and
    # becomes U+0081 as in browsers instead of raising.
    decoded, used = decode_html(b"<p>\x80 5 \x93ok\x94 \x81</p>", "text/html; charset=latin1")
    assert used == "windows-1252"
    assert decoded == "<p>€ 5 “ok” \x81</p>"


@pytest.mark.parametrize(
    ("text", "python_codec", "expected"),
    [(RU * 3, "cp1251", "windows-1251"), (ZH * 3, "gb18030", "gb18030")],
)
def test_detection_without_any_declaration(text: str, python_codec: str, expected: str) -> None:
    decoded, used = decode_html(page(text).encode(python_codec), None)
    assert used == expected
    assert text in decoded


def test_undeclared_utf8() -> None:
    decoded, used = decode_html(page(PT + ZH).encode("utf-8"), None)
    assert (used, PT + ZH in decoded) == ("utf-8", True)


def test_utf8_body_mislabelled_as_latin1_is_read_as_utf8() -> None:
    decoded, used = decode_html(page(PT).encode("utf-8"), "text/html; charset=ISO-8859-1")
    assert used == "utf-8"
    assert PT in decoded


def test_wrong_multibyte_declaration_falls_through() -> None:
    # Declared UTF-8 but clearly windows-1251: not believed, detection takes over.
    body = page(RU * 4).encode("cp1251")
    decoded, used = decode_html(body, "text/html; charset=utf-8")
    assert used == "windows-1251"
    assert RU in decoded


@pytest.mark.parametrize(
    ("bom", "python_codec", "expected"),
    [
        (codecs.BOM_UTF8, "utf-8", "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16le"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16be"),
    ],
)
def test_bom_wins_and_is_stripped(bom: bytes, python_codec: str, expected: str) -> None:
    body = bom + page(PT).encode(python_codec)
    decoded, used = decode_html(body, "text/html; charset=windows-1251")
    assert used == expected
    assert decoded.startswith("<html>")
    assert PT in decoded


def test_invalid_utf8_is_replaced_not_raised() -> None:
    # A long UTF-8 page with a stray invalid byte and a truncated final character.
    body = page(PT * 20).encode("utf-8") + b"<p>caf\xc3\xa9 \xff broken \xc3"
    decoded, used = decode_html(body, "text/html; charset=utf-8")
    assert used == "utf-8"
    assert PT in decoded
    assert decoded.endswith("<p>café \ufffd broken \ufffd")


def test_unknown_label_is_ignored() -> None:
    decoded, used = decode_html(page(PT).encode("utf-8"), "text/html; charset=x-no-such-thing")
    assert (used, PT in decoded) == ("utf-8", True)


def test_empty_and_random_bytes_never_raise() -> None:
    assert decode_html(b"", None) == ("", "utf-8")
    rng = random.Random(7)
    for size in (1, 17, 4096, 70_000):
        body = bytes(rng.randrange(256) for _ in range(size))
        for header in (None, "text/html; charset=utf-8", "text/html; charset=gb2312", "x"):
            text, used = decode_html(body, header)
            assert isinstance(text, str) and used


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("ISO-8859-1", "cp1252"),
        ("us-ascii", "cp1252"),
        ("GBK", "gb18030"),
        ("gb2312", "gb18030"),
        ("UTF8", "utf-8"),
        ("utf-16", "utf-8"),
        ("Windows-1251", "cp1251"),
        ("nonsense", None),
        ("", None),
    ],
)
def test_normalize_label(label: str, codec: str | None) -> None:
    assert normalize_label(label) == codec


def test_utf8_page_with_several_broken_bytes_stays_utf8() -> None:
    # A short page of plainly UTF-8 text with more stray bytes than MAX_BAD_RATIO allows:
    # still UTF-8 with replacement characters, not a single-byte guess full of mojibake.
    body = page(PT).encode("utf-8").replace(b"</p>", b" \xff\xfe\xc3( </p>")
    decoded, used = decode_html(body, "text/html; charset=utf-8")
    assert used == "utf-8"
    assert PT in decoded and decoded.count("\ufffd") == 3


@pytest.mark.parametrize(
    ("text", "python_codec", "expected"),
    [(RU * 4, "cp1251", "windows-1251"), (ZH * 4, "gb2312", "gb18030")],
)
def test_other_encoding_declared_as_utf8_is_not_believed(
    text: str, python_codec: str, expected: str
) -> None:
    decoded, used = decode_html(page(text).encode(python_codec), "text/html; charset=utf-8")
    assert used == expected
    assert text in decoded
