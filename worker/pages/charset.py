"""Bytes of a fetched page to text: which encoding, decided in a fixed and documented order.

Order (the first that applies wins):

1. a byte-order mark (UTF-8, UTF-16 LE/BE), as browsers do;
2. the ``charset`` of the HTTP ``Content-Type`` header;
3. ``<meta charset>`` / ``<meta http-equiv="Content-Type" content="...; charset=...">`` (or an
   XML declaration) in the first :data:`PRESCAN_BYTES` bytes;
4. strictly valid UTF-8 (cheap, and the most common case);
5. detection with charset-normalizer;
6. UTF-8 with replacement characters.

A declared encoding (2 or 3) is taken only if it plausibly fits the bytes: a multi-byte
encoding (UTF-8, GB18030, Shift_JIS, ...) must decode with at most :data:`MAX_BAD_RATIO` of
undecodable bytes, or with at least :data:`MIN_VALID_PER_BAD` valid non-ASCII characters
per undecodable byte (a UTF-8 page with a few broken bytes stays UTF-8, with replacement
characters), otherwise the next rule is tried. A declared *single-byte* encoding cannot
be checked that way, with one exception: a page declared as a single-byte encoding whose bytes
are strictly valid UTF-8 with non-ASCII characters is decoded as UTF-8 (servers often send
``ISO-8859-1`` as a default for UTF-8 pages; valid multi-byte UTF-8 sequences almost never
occur by chance in windows-125x text).

Labels are mapped as the WHATWG Encoding Standard does: ``ISO-8859-1``/``latin1``/``ascii`` are
windows-1252, ``GB2312``/``GBK`` are decoded as GB18030 (a superset), ``ISO-8859-9`` is
windows-1254, ``TIS-620`` is windows-874, a ``UTF-16`` label without a BOM is UTF-8.
windows-1252 bytes that Python's codec leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) decode
to the C1 control of the same value, as in browsers. :func:`decode_html` never raises.
"""

from __future__ import annotations

import codecs
import re

__all__ = [
    "MAX_BAD_RATIO",
    "MIN_VALID_PER_BAD",
    "PRESCAN_BYTES",
    "decode_html",
    "normalize_label",
]

PRESCAN_BYTES = 16384
"""How much of the body is searched for a ``<meta>`` charset declaration."""

MAX_BAD_RATIO = 0.001
"""Share of undecodable bytes above which a declared multi-byte encoding is not believed."""

MIN_VALID_PER_BAD = 4
"""Beyond :data:`MAX_BAD_RATIO`, a declared multi-byte encoding is still believed when the
body holds this many valid non-ASCII characters per undecodable byte."""

DETECT_BYTES = 200_000
"""At most this many bytes are given to charset-normalizer (detection cost grows with size)."""

# WHATWG label -> Python codec name, for the labels whose meaning differs from Python's.
_WHATWG_ALIASES: dict[str, str] = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "iso88591": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "cp819": "cp1252",
    "ibm819": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "ansi_x3.4-1968": "cp1252",
    "windows-1252": "cp1252",
    "x-cp1252": "cp1252",
    "gb2312": "gb18030",
    "gb_2312": "gb18030",
    "gb_2312-80": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "csgb2312": "gb18030",
    "chinese": "gb18030",
    "iso-ir-58": "gb18030",
    "iso-8859-9": "cp1254",
    "iso8859-9": "cp1254",
    "latin5": "cp1254",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "windows-874": "cp874",
    "ks_c_5601-1987": "euc_kr",
    "ks_c_5601-1989": "euc_kr",
    "windows-949": "euc_kr",
    "x-sjis": "shift_jis",
    "ms_kanji": "shift_jis",
    "windows-31j": "shift_jis",
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "x-mac-cyrillic": "mac_cyrillic",
    "x-mac-roman": "mac_roman",
    # A UTF-16 label in a page that has no BOM: WHATWG decodes it as UTF-8.
    "utf-16": "utf-8",
    "utf-16le": "utf-8",
    "utf-16be": "utf-8",
}

# Python codec name -> the name reported to callers (WHATWG-style where one exists).
_REPORTED: dict[str, str] = {
    "utf-8": "utf-8",
    "utf-16-le": "utf-16le",
    "utf-16-be": "utf-16be",
    "gb18030": "gb18030",
    "big5": "big5",
    "big5hkscs": "big5",
    "shift_jis": "shift_jis",
    "euc_jp": "euc-jp",
    "euc_kr": "euc-kr",
    "iso2022_jp": "iso-2022-jp",
    "koi8-r": "koi8-r",
    "koi8-u": "koi8-u",
    "mac-cyrillic": "x-mac-cyrillic",
    "mac-roman": "macintosh",
}

# Codecs where an arbitrary byte sequence may fail to decode (so fitting can be checked).
_MULTIBYTE = {
    "utf-8",
    "gb18030",
    "big5",
    "big5hkscs",
    "shift_jis",
    "cp932",
    "euc_jp",
    "euc_kr",
    "cp949",
    "iso2022_jp",
    "utf-16-le",
    "utf-16-be",
}

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([^\s"';,]+)""", re.IGNORECASE)
_META_CHARSET = re.compile(
    rb"""<meta\b[^>]*?charset\s*=\s*["']?\s*([a-zA-Z0-9_:.+-]+)""", re.IGNORECASE
)
_XML_DECL = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([a-zA-Z0-9_:.+-]+)""")


def _c1_controls(err: UnicodeError) -> tuple[str, int]:
    """Error handler: an undefined windows-125x byte becomes the C1 control of that value."""
    if not isinstance(err, UnicodeDecodeError):
        raise err
    bad = err.object[err.start : err.end]
    return "".join(chr(b) for b in bad), err.end


codecs.register_error("claimwire-c1", _c1_controls)


def normalize_label(label: str | None) -> str | None:
    """A charset label (from a header or ``<meta>``) to a Python codec name, or None."""
    if not label:
        return None
    key = label.strip().strip("\"'").lower()
    if not key or len(key) > 40:
        return None
    key = _WHATWG_ALIASES.get(key, key)
    try:
        name = codecs.lookup(key).name
    except LookupError:
        return None
    # codecs.lookup("latin-1") etc. are handled above; these are Python's own spellings.
    if name in {"iso8859-1", "latin-1", "ascii"}:
        return "cp1252"
    if name in {"gb2312", "gbk"}:
        return "gb18030"
    if name in {"utf-16", "utf-32", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"}:
        return "utf-8"
    if name.startswith("utf-8"):  # utf-8-sig
        return "utf-8"
    return name


def reported_name(codec: str) -> str:
    """The name recorded for a Python codec name (``cp1251`` -> ``windows-1251``)."""
    if codec.startswith("cp") and codec[2:].isdigit() and len(codec) == 6:
        return f"windows-{codec[2:]}"
    if codec == "cp874":
        return "windows-874"
    return _REPORTED.get(codec, codec)


def _decode(body: bytes, codec: str) -> str:
    errors = "claimwire-c1" if codec.startswith("cp") else "replace"
    return body.decode(codec, errors=errors)


def _fits(body: bytes, codec: str) -> bool:
    """Whether a declared multi-byte codec plausibly fits ``body``."""
    if codec not in _MULTIBYTE:
        return True
    try:
        body.decode(codec)
    except UnicodeDecodeError:
        pass
    else:
        return True
    # Tolerate a few bad bytes (a page truncated mid-character, one stray byte), and
    # more of them in a page that is plainly in this encoding: many valid multi-byte
    # characters and few invalid bytes (a page of mixed origin). A page in another
    # encoding has almost no valid multi-byte sequences, and many invalid ones.
    text = body.decode(codec, errors="replace")
    bad = text.count("\ufffd")
    if bad <= max(2, int(len(body) * MAX_BAD_RATIO)):
        return True
    valid = sum(1 for ch in text if ch > "\x7f") - bad
    return bad * MIN_VALID_PER_BAD <= valid


def _is_utf8_with_non_ascii(body: bytes) -> bool:
    if body.isascii():
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _declared_in_header(content_type_header: str | None) -> str | None:
    if not content_type_header:
        return None
    m = _HEADER_CHARSET.search(content_type_header)
    return normalize_label(m.group(1)) if m else None


def _declared_in_document(body: bytes) -> str | None:
    head = body[:PRESCAN_BYTES]
    m = _META_CHARSET.search(head) or _XML_DECL.search(head)
    if not m:
        return None
    return normalize_label(m.group(1).decode("ascii", errors="ignore"))


def _detect(body: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(body[:DETECT_BYTES]).best()
    except Exception:  # noqa: BLE001 - detection is best effort; never fail decoding for it
        return None
    if best is None or not best.encoding:
        return None
    return normalize_label(best.encoding)


def _choose(body: bytes, content_type_header: str | None) -> tuple[str, int]:
    """(codec, number of BOM bytes to skip)."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return codec, len(bom)
    for declared in (_declared_in_header(content_type_header), _declared_in_document(body)):
        if declared is None:
            continue
        if declared not in _MULTIBYTE and _is_utf8_with_non_ascii(body):
            return "utf-8", 0
        if _fits(body, declared):
            return declared, 0
    if body.isascii() or _is_utf8_with_non_ascii(body):
        return "utf-8", 0
    detected = _detect(body)
    if detected is not None and _fits(body, detected):
        return detected, 0
    return "utf-8", 0


def decode_html(body: bytes, content_type_header: str | None) -> tuple[str, str]:
    """Decode a page body; returns ``(text, encoding_used)``. Never raises.

    ``content_type_header`` is the raw ``Content-Type`` header value (or None). The encoding
    is reported with its WHATWG-style name (``utf-8``, ``windows-1251``, ``gb18030``...).
    """
    if not body:
        return "", "utf-8"
    try:
        codec, skip = _choose(body, content_type_header)
        return _decode(body[skip:], codec), reported_name(codec)
    except Exception:  # noqa: BLE001 - a codec quirk must not fail the page: last resort below
        return body.decode("utf-8", errors="replace"), "utf-8"
