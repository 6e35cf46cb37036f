"""What the feed reader needs from a post's HTML: absolute URLs, its first image, its plain text.

The HTML is kept as the feed gave it (it is sanitized later, before any template sees it), so
this module edits nothing but the URL attributes of start tags, in place: comments, embeds and
odd markup pass through byte for byte. The stdlib parser is enough for that and tolerates the
tag soup found in real feeds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape, unescape
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

SUMMARY_MAX = 300
_URL_ATTRS = {"href", "src", "poster", "srcset", "data-src"}
# Text in these is not prose (code, styles, the fallback text of embeds).
_SKIP_TEXT = {"script", "style", "template", "noscript", "iframe", "object", "svg", "head", "title"}
_BLOCKS = {
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure",
    "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "ol", "p", "pre",
    "section", "table", "td", "th", "tr", "ul",
}
# One attribute inside a start tag: name, the "=" with its spacing, and the (un)quoted value.
_ATTR = re.compile(r"""(?P<lead>\s)(?P<name>[^\s"'>/=]+)(?P<eq>\s*=\s*)(?P<value>"[^"]*"|'[^']*'|[^\s"'=<>`]+)""")
# Entities a feed escaped twice ("&amp;nbsp;"): shown literally in text unless undone.
_DOUBLE_ESCAPED = re.compile(r"&(?:nbsp|amp|quot|apos|lt|gt|hellip|mdash|ndash|rsquo|lsquo|rdquo|ldquo|#\d{2,6}|#x[0-9a-fA-F]{2,5});")


@dataclass
class Image:
    url: str
    alt: str = ""


@dataclass
class Scan:
    html: str  # the input with relative URLs made absolute
    text: str  # plain text, whitespace collapsed
    images: list[Image]  # the content's pictures in order (tracking pixels and data: URIs left out)


def scan(html: str, base: str | None) -> Scan:
    """Resolve relative URLs against ``base`` (when absolute), and read text and first image."""
    if not html:
        return Scan("", "", [])
    parser = _Scanner(html, base if is_absolute_http(base) else None)
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # the stdlib parser gives up on some broken markup
        return Scan(html, collapse(_strip_tags(html)), [])
    return Scan(parser.rewritten(), collapse("".join(parser.text)), parser.images)


def to_text(html: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, whitespace collapsed."""
    if "<" not in html and "&" not in html:  # most titles: nothing to parse
        return collapse(html)
    return scan(html, None).text


def plain_to_html(text: str) -> str:
    """Plain text as HTML paragraphs (blank lines split them, single newlines become <br>)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]
    return "".join(f"<p>{escape(p, quote=False).replace(chr(10), '<br>')}</p>" for p in paragraphs)


# Characters no post means: C0 and C1 controls (but tab, newline, carriage return) and DEL,
# which break MJML's strict parser and reach the networks raw; and the line and paragraph
# separators a word processor pastes (vertical tab, form feed, NEL, U+2028, U+2029), which
# read as a space.
_AS_SPACE = re.compile("[\x0b\x0c\x85\u2028\u2029]")
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")


def strip_controls(text: str) -> str:
    """TEXT without control characters; the separators a paste brings in become spaces."""
    return _CONTROLS.sub("", _AS_SPACE.sub(" ", text)) if text else text


def collapse(text: str) -> str:
    text = _DOUBLE_ESCAPED.sub(lambda m: unescape(m.group(0)), text)
    return re.sub(r"\s+", " ", text).strip()


def shorten(text: str, limit: int = SUMMARY_MAX) -> str:
    """Cut ``text`` to at most ``limit`` characters at a word boundary, ending with "…"."""
    # WordPress ends excerpts with "[…]": an ellipsis mid-sentence, nothing after a full stop.
    text = re.sub(r"(?<=[.!?])\s*\[(?:…|\.\.\.)\]\s*$", "", text)
    text = re.sub(r"\s*\[(?:…|\.\.\.)\]\s*$", "…", text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:  # a very long "word" (a URL) is cut mid-word rather than dropped
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—") + "…"


def is_absolute_http(url: str | None) -> bool:
    if not url:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def resolve(base: str | None, url: str) -> str:
    """``url`` made absolute against ``base`` when it can be; else ``url`` unchanged."""
    url = url.strip()
    if not url or not base:
        return url
    try:
        return urljoin(base, url)
    except ValueError:  # e.g. a bad IPv6 literal in the URL: keep what the feed said
        return url


def _strip_tags(html: str) -> str:
    return unescape(re.sub(r"<[^>]*>", " ", html))


class _Scanner(HTMLParser):
    def __init__(self, html: str, base: str | None):
        super().__init__(convert_charrefs=True)
        self.source = html
        self.base = base
        self.text: list[str] = []
        self.images: list[Image] = []
        self.edits: list[tuple[int, int, str]] = []  # (start, end, replacement) in the source
        self._skip_depth = 0
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", html)]

    def handle_starttag(self, tag, attrs):
        self._start(tag, attrs)
        if tag in _SKIP_TEXT:
            self._skip_depth += 1

    def handle_startendtag(self, tag, attrs):
        self._start(tag, attrs)

    def handle_endtag(self, tag):
        if tag in _SKIP_TEXT and self._skip_depth:
            self._skip_depth -= 1
        if tag in _BLOCKS:
            self.text.append(" ")

    def handle_data(self, data):
        if not self._skip_depth:
            self.text.append(data)

    def _start(self, tag, attrs):
        if tag in _BLOCKS:
            self.text.append(" ")
        values = dict(attrs)
        if tag == "img":
            self._consider_image(values)
        if self.base and any(name in _URL_ATTRS for name, _ in attrs):
            self._absolutize_tag()

    def _consider_image(self, attrs: dict):
        src = (attrs.get("src") or attrs.get("data-src") or "").strip()
        if not src or src.startswith("data:") or _is_pixel(attrs):
            return
        url = resolve(self.base, src)
        if is_absolute_http(url):
            self.images.append(Image(url, collapse(attrs.get("alt") or "")))

    def _absolutize_tag(self):
        raw = self.get_starttag_text()
        if raw is None:
            return
        line, column = self.getpos()
        start = self._line_starts[line - 1] + column
        if self.source.startswith(raw, start):
            new = _ATTR.sub(self._absolutize_attr, raw)
            if new != raw:
                self.edits.append((start, start + len(raw), new))

    def _absolutize_attr(self, match: re.Match) -> str:
        name = match.group("name").lower()
        if name not in _URL_ATTRS:
            return match.group(0)
        value = match.group("value")
        quoted = value[0] in "\"'"
        quote = value[0] if quoted else '"'
        raw = unescape(value[1:-1] if quoted else value)
        new = _resolve_srcset(self.base, raw) if name == "srcset" else _resolve_attr(self.base, raw)
        if new == raw:
            return match.group(0)
        return f"{match.group('lead')}{match.group('name')}{match.group('eq')}{quote}{escape(new)}{quote}"

    def rewritten(self) -> str:
        if not self.edits:
            return self.source
        out, last = [], 0
        for start, end, replacement in self.edits:
            out += [self.source[last:start], replacement]
            last = end
        out.append(self.source[last:])
        return "".join(out)


def _resolve_attr(base: str, value: str) -> str:
    # Already absolute (any scheme: https, mailto, data, tel, javascript) stays as it is.
    if not value.strip() or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value.strip()):
        return value
    return resolve(base, value)


def _resolve_srcset(base: str, value: str) -> str:
    """Resolve each candidate URL of a srcset ("a.jpg 1x, b.jpg 2x"); URLs may contain commas."""
    candidates, rest = [], value
    while rest := rest.lstrip(" \t\n\r\f,"):
        url, _, rest = _split_ws(rest)
        descriptor = ""
        if url.endswith(","):  # a candidate without descriptor: the comma ends it
            url = url.rstrip(",")
        else:
            descriptor, _, rest = rest.partition(",")
        candidates.append(" ".join(filter(None, [_resolve_attr(base, url), descriptor.strip()])))
    return ", ".join(candidates)


def _split_ws(text: str) -> tuple[str, str, str]:
    match = re.match(r"(\S+)(\s*)(.*)", text, re.S)
    return (match.group(1), match.group(2), match.group(3)) if match else (text, "", "")


def _is_pixel(attrs: dict) -> bool:
    """A 1x1 tracking image (Medium, FeedBurner, newspapers) is not a post's picture."""
    return any((attrs.get(dim) or "").strip() in ("0", "1", "1px", "0px") for dim in ("width", "height"))
