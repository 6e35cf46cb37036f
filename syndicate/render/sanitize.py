"""Feed HTML made safe and self-contained for an email, and its plain-text twin.

Three passes, because nh3 (the security boundary) can only drop what it doesn't allow:
1. before nh3, rewrite what would otherwise be lost or leak: video embeds become links,
   tracking pixels and emoji images go, lazy-loaded images get their real source, and
   every image gets alt text;
2. nh3 keeps only an allow-list of tags and attributes, with every URL made absolute and
   checked against a scheme allow-list (no javascript:, no data:);
3. after nh3, empty paragraphs left by WordPress blocks are removed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from html import escape
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import nh3

from syndicate.render.links import absolute, is_http
from syndicate.render.textlength import truncate_to

ALLOWED_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del", "div", "dl", "dt",
    "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li",
    "mark", "ol", "p", "pre", "q", "s", "small", "span", "strong", "sub", "sup", "table", "tbody",
    "td", "tfoot", "th", "thead", "tr", "u", "ul",
})
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "title"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "ol": {"start"},
    "abbr": {"title"},
}
# Dropped together with everything inside: their content means nothing in an email
# (or, for script/style, is dangerous).
REMOVED_WITH_CONTENT = frozenset({
    "script", "style", "form", "button", "select", "textarea", "object", "embed", "applet",
    "noscript", "template", "svg", "math", "iframe", "frame", "frameset", "audio", "video",
    "canvas", "head", "title", "noembed", "noframes", "datalist", "option",
})
URL_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
IMAGE_STYLE = "max-width:100%;height:auto;border:0;"
DEFAULT_MAX_IMAGE_WIDTH = 552  # the content column of templates/email (600 minus padding)
_MEDIA_TAGS = frozenset({"iframe", "video", "audio", "object", "embed"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                   "track", "wbr"})
_BLOCK = frozenset({"address", "blockquote", "dd", "div", "dl", "dt", "figure", "figcaption", "h1", "h2",
                    "h3", "h4", "h5", "h6", "hr", "li", "ol", "p", "pre", "table", "tr", "ul"})
_EMPTY_ELEMENT = re.compile(
    r"<(p|div|h[1-6]|span|strong|em|b|i|figure|blockquote)>(?:\s|&nbsp;|<br>)*</\1>"
)

LinkRewriter = Callable[[str], str]


def sanitize(html: str, base_url: str, *, fallback_alt: str = "", rewrite_link: LinkRewriter | None = None,
             max_image_width: int = DEFAULT_MAX_IMAGE_WIDTH) -> str:
    """Feed HTML as safe, absolute, self-contained email HTML (see the module doc)."""
    if not html or not html.strip():
        return ""
    prepared = _prepare(html, base_url, fallback_alt)
    filtered = functools.partial(_filter_attribute, base_url=base_url, rewrite_link=rewrite_link,
                                 max_image_width=max_image_width)
    cleaned = nh3.clean(
        prepared,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(REMOVED_WITH_CONTENT),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=filtered,
        url_schemes=set(URL_SCHEMES),
        set_tag_attribute_values={"img": {"style": IMAGE_STYLE}},
        link_rel=None,  # rel on email links does nothing useful and adds bytes
        strip_comments=True,
    )
    return _drop_empty_elements(cleaned).strip()


def _filter_attribute(tag: str, attr: str, value: str, *, base_url: str, rewrite_link: LinkRewriter | None,
                      max_image_width: int) -> str | None:
    # nh3 checks URL schemes *before* this filter, so the URL we return is checked here.
    if attr == "href":
        url = absolute(value, base_url)
        return rewrite_link(url) if url and rewrite_link and is_http(url) else url
    if attr == "src":
        url = absolute(value, base_url)
        return url if is_http(url) else None  # images only over http(s): no data:, no cid:
    if attr == "width":
        return _clamped_width(value, max_image_width)
    if attr == "style":
        return value if (tag, value) == ("img", IMAGE_STYLE) else None
    return value


def _clamped_width(value: str, maximum: int) -> str | None:
    # Outlook sizes images by the width attribute alone; a percentage or junk value would
    # let a 3000-pixel photo break the layout, so only plain pixel counts survive.
    match = re.fullmatch(r"\s*(\d+)(?:px)?\s*", value)
    if not match or int(match.group(1)) == 0:
        return None
    return str(min(int(match.group(1)), maximum))


def _drop_empty_elements(html: str) -> str:
    # nh3's output is normalized (lower-case tags, no attributes on these), so a regex is
    # exact here; repeat because removing an inner empty element can empty its parent.
    previous = None
    while previous != html:
        previous, html = html, _EMPTY_ELEMENT.sub("", html)
    return html


# -- pass 1: embeds, trackers, images -------------------------------------------------------

def _prepare(html: str, page_url: str, fallback_alt: str) -> str:
    rewriter = _Prepare(page_url, fallback_alt)
    rewriter.feed(html)
    rewriter.close()
    return "".join(rewriter.out)


class _Prepare(HTMLParser):
    """Copies the HTML through, rewriting embeds and images (see the module doc)."""

    def __init__(self, page_url: str, fallback_alt: str):
        super().__init__(convert_charrefs=False)
        self.page_url = page_url
        self.fallback_alt = fallback_alt
        self.out: list[str] = []
        self.skipping: str | None = None  # the media element whose content is being dropped
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, self_closing=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, self_closing=True)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], self_closing: bool) -> None:
        if self.skipping:
            self.depth += tag == self.skipping and not self_closing
            return
        values = {name: value or "" for name, value in reversed(attrs)}  # first one wins, as in HTML
        if tag in _MEDIA_TAGS:
            self.out.append(self._media_link(tag, values))
            if not self_closing and tag not in _VOID:
                self.skipping, self.depth = tag, 1
        elif tag == "img":
            self.out.append(self._image(values))
        else:
            self.out.append(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping:
                self.depth -= 1
                self.skipping = self.skipping if self.depth else None
            return
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        self.handle_data(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.handle_data(f"&#{name};")

    # Comments (WordPress block markers among them), doctypes and processing instructions
    # carry nothing a reader sees: they are dropped by not being copied.

    def _media_link(self, tag: str, attrs: dict[str, str]) -> str:
        video = video_page_url(attrs.get("src", ""), self.page_url)
        if video:
            label = attrs.get("title") or ""
            text = f"▶ Watch the video: {label}" if label else "▶ Watch the video"
            return f'<p><a href="{escape(video)}"><strong>{escape(text)}</strong></a></p>'
        # Other embeds (maps, podcasts, forms) would load third-party code; the post has them.
        return f'<p><a href="{escape(self.page_url)}">View the embedded content on our website</a></p>'

    def _image(self, attrs: dict[str, str]) -> str:
        if _is_tracker(attrs):
            return ""
        if _is_emoji_image(attrs):
            return escape(attrs.get("alt", ""), quote=False)  # the character, not s.w.org's picture
        lazy = attrs.get("data-src") or attrs.get("data-lazy-src")
        if lazy and (not attrs.get("src") or attrs["src"].strip().lower().startswith("data:")):
            attrs["src"] = lazy
        if not is_http(absolute(attrs.get("src"), self.page_url)):
            return ""  # no picture to show (a data: URL, cid:, or nothing): no broken image icon
        if not attrs.get("alt", "").strip():
            attrs["alt"] = self.fallback_alt
        return "<img" + "".join(f' {name}="{escape(value)}"' for name, value in attrs.items()) + ">"


# Analytics endpoints that feeds embed as images (Matomo/Piwik, FeedBurner's ~r/ pixel and
# ~ff/ "flare" images, WordPress.com stats, DoubleClick, Google Analytics, comScore, Medium):
# whatever their size, loading one tells a third party who opened the email.
_TRACKER_URL = re.compile(
    r"(?:/(?:piwik|matomo|p)\.php\?(?:.*&)?idsite="
    r"|feeds\.feedburner\.com/~(?:r|ff)/|feedproxy\.google\.com/~(?:r|ff)/"
    r"|//(?:pixel|stats)\.wp\.com/|doubleclick\.net/|google-analytics\.com/"
    r"|scorecardresearch\.com/|medium\.com/_/stat|/wf/open\?upn=)",
    re.I,
)


def _is_tracker(attrs: dict[str, str]) -> bool:
    """A 1x1 (or hidden) image, or one served by an analytics endpoint, exists only to report
    that the message was opened."""
    if _TRACKER_URL.search(attrs.get("src", "")):
        return True
    tiny = {attrs.get("width", "").strip().removesuffix("px"), attrs.get("height", "").strip().removesuffix("px")}
    if tiny & {"0", "1"}:
        return True
    style = re.sub(r"\s+", "", attrs.get("style", "").lower())
    return bool(re.search(r"(?:^|;)(?:width|height):[01]px|display:none|visibility:hidden", style))


def _is_emoji_image(attrs: dict[str, str]) -> bool:
    classes = attrs.get("class", "").split()
    return bool({"wp-smiley", "emoji"} & set(classes)) and bool(attrs.get("alt"))


def video_page_url(src: str, page_url: str) -> str | None:
    """The watch page for a YouTube or Vimeo embed URL, else None."""
    url = absolute(src, page_url)
    if not url or not is_http(url):
        return None
    parts = urlsplit(url)
    host = parts.netloc.lower().split(":")[0].removeprefix("www.").removeprefix("m.")
    path = [p for p in parts.path.split("/") if p]
    if host in {"youtube.com", "youtube-nocookie.com"} and len(path) >= 2 and path[0] in {"embed", "v"}:
        return f"https://www.youtube.com/watch?v={path[1]}"
    if host == "youtube.com" and path[:1] == ["watch"] and parse_qs(parts.query).get("v"):
        return f"https://www.youtube.com/watch?v={parse_qs(parts.query)['v'][0]}"
    if host == "youtu.be" and path:
        return f"https://www.youtube.com/watch?v={path[0]}"
    if host == "player.vimeo.com" and len(path) >= 2 and path[0] == "video" and path[1].isdigit():
        return f"https://vimeo.com/{path[1]}"
    if host == "vimeo.com" and path and path[0].isdigit():
        return f"https://vimeo.com/{path[0]}"
    return None


# -- cutting at a paragraph ----------------------------------------------------------------

def excerpt(html: str, max_bytes: int) -> tuple[str, bool]:
    """The leading whole blocks of sanitized ``html`` within ``max_bytes`` (UTF-8).

    Returns (html, was_cut). If even the first block is too long, its text is cut at a word.
    """
    if len(html.encode()) <= max_bytes:
        return html, False
    kept, size = [], 0
    for block in top_level_blocks(html):
        size += len(block.encode())
        if size > max_bytes:
            break
        kept.append(block)
    if kept:
        return "".join(kept), True
    return _first_words(html, max_bytes), True


def _first_words(html: str, max_bytes: int) -> str:
    def utf8_escaped_size(text: str) -> int:
        return len(escape(text, quote=False).encode())

    text = " ".join(to_text(html).split())
    return f"<p>{escape(truncate_to(text, max(max_bytes - 7, 0), utf8_escaped_size), quote=False)}</p>"


def top_level_blocks(html: str) -> list[str]:
    """Split sanitized HTML after each top-level block element (a paragraph, list, table...)."""
    splitter = _BlockSplitter()
    splitter.feed(html)
    splitter.close()
    splitter.flush()
    return splitter.blocks


class _BlockSplitter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.append(self.get_starttag_text() or "")
        if tag not in _VOID:
            self.depth += 1
        elif self.depth == 0 and tag in _BLOCK:
            self.flush()

    def handle_endtag(self, tag: str) -> None:
        self.current.append(f"</{tag}>")
        self.depth = max(self.depth - 1, 0)
        if self.depth == 0 and tag in _BLOCK:
            self.flush()

    def handle_data(self, data: str) -> None:
        self.current.append(data)

    def handle_entityref(self, name: str) -> None:
        self.current.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.current.append(f"&#{name};")

    def flush(self) -> None:
        if "".join(self.current).strip():
            self.blocks.append("".join(self.current))
        self.current = []


# -- plain text ----------------------------------------------------------------------------

def to_text(html: str) -> str:
    """Readable plain text: paragraphs apart, list items as "- ", links as "text (url)"."""
    writer = _TextWriter()
    writer.feed(html or "")
    writer.close()
    return writer.text()


class _TextWriter(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.newlines = 2  # line breaks the output ends with (spaces aside); the start counts as a break
        self.links: list[tuple[str | None, int]] = []  # (href, index in parts where the link began)
        self.lists = 0
        self.quotes: list[int] = []  # where each open blockquote began in parts
        self.skip = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif tag in {"ul", "ol"}:
            self.lists += 1
            self._break(2 if self.lists == 1 else 1)
        elif tag == "li":
            self._break(1)
            self._emit("  " * (self.lists - 1) + "- ")
        elif tag == "br":
            self._emit("\n")
        elif tag == "a":
            href = next((value for name, value in attrs if name == "href"), None)
            self.links.append((href, len(self.parts)))
        elif tag == "blockquote":
            self._break(2)
            self.quotes.append(len(self.parts))
        elif tag in {"td", "th"}:
            self._emit(" ")
        elif tag in _BLOCK:
            self.pre += tag == "pre"
            self._break(2)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(self.skip - 1, 0)
        elif tag in {"ul", "ol"} and self.lists:
            self.lists -= 1
            self._break(1 if self.lists else 2)
        elif tag == "a" and self.links:
            self._close_link(*self.links.pop())
        elif tag == "blockquote" and self.quotes:
            self._close_quote(self.quotes.pop())
        elif tag in _BLOCK and tag != "li":
            self.pre -= tag == "pre" and self.pre > 0
            self._break(2)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
            data = data.lstrip() if self.newlines else data  # no stray space opening a line
        if data:
            self._emit(data)

    def _close_link(self, href: str | None, start: int) -> None:
        label = "".join(self.parts[start:]).strip()
        if not href or href.startswith("#"):
            return
        if not label:
            self._emit(href)
        elif label not in {href, href.removeprefix("mailto:")}:
            self._emit(f" ({href.removeprefix('mailto:')})")

    def _close_quote(self, start: int) -> None:
        inner = "".join(self.parts[start:]).strip()
        del self.parts[start:]
        self.links = [(href, min(begin, start)) for href, begin in self.links]
        self._emit("\n".join(f"> {line}".rstrip() for line in inner.split("\n")))
        self._break(2)

    def _emit(self, chunk: str) -> None:
        self.parts.append(chunk)
        visible = chunk.rstrip(" ")
        if visible:
            trailing = len(visible) - len(visible.rstrip("\n"))
            self.newlines = self.newlines + trailing if trailing == len(visible) else trailing

    def _break(self, newlines: int) -> None:
        if newlines > self.newlines:
            self._emit("\n" * (newlines - self.newlines))

    def text(self) -> str:
        raw = "".join(self.parts).replace("\xa0", " ")
        # Spaces around lines are markup noise ("<p> Hello"), except list and quote prefixes.
        lines = [line.rstrip() if re.match(r"^\s*- |^> ", line) else line.strip() for line in raw.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
