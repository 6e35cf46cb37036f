"""`syndicate lint-email`: check a rendered message against what every email must be.

Rules (each finding names one):

==================  ==========================================================================
size                the HTML is at most 100,000 bytes (Gmail clips at ~102 KB, hiding the footer)
alt                 every <img> has an alt attribute (alt="" marks a decorative image), and a
                    link made only of images has a name (one of them has non-empty alt text)
relative-url        every link and image URL is absolute (http, https, mailto or tel)
unsafe-url          no javascript:, data:, vbscript: or file: URL
third-party         nothing is *loaded* (images, backgrounds, styles, fonts) from a host that
                    is not the site's (its host, subdomains, the logo's and web app's hosts,
                    and any --allow-host); links to other sites are fine
tracking-pixel      no 1x1, zero-sized or hidden image
click-redirect      no link that hides another URL in its query (a click-tracking redirect)
active-content      no script, iframe, object, embed, form, meta refresh or on* handler
unsubscribe-link    a visible unsubscribe link in the body
header              (.eml only) From, Subject, Date, Message-ID; List-Unsubscribe with an https
                    and a mailto target; List-Unsubscribe-Post: List-Unsubscribe=One-Click;
                    a text/plain part beside the text/html part
==================  ==========================================================================

And a warning (not a finding: the email is not wrong, the settings are) when text in the
configured brand colour ``site.brand.primary_color`` is under 4.5:1 on white
(``brand_warnings``): the renderer then darkens the links and puts dark text on the buttons.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from syndicate.render import colors
from syndicate.render.email import MAX_HTML_BYTES
from syndicate.settings import Settings

SAFE_SCHEMES = {"http", "https", "mailto", "tel"}
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)""", re.I)
_CSS_IMPORT = re.compile(r"""@import\s+(?:url\()?\s*['"]?([^'");\s]+)""", re.I)
_LOADING_ATTRS = {("img", "src"), ("img", "srcset"), ("source", "src"), ("source", "srcset"),
                  ("video", "poster"), ("input", "src"), ("table", "background"), ("td", "background"),
                  ("body", "background"), ("image", "href"), ("v:fill", "src"), ("v:image", "src")}
_ACTIVE_TAGS = {"script", "iframe", "object", "embed", "form", "applet", "frame", "frameset"}


@dataclass(frozen=True)
class Finding:
    rule: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


def site_hosts(settings: Settings, extra: list[str] | tuple[str, ...] = ()) -> set[str]:
    """The hosts an email may load from: the site's, the logo's, the web app's, and EXTRA."""
    urls = [settings.site.url, settings.public_url, settings.site.brand.logo_url or ""]
    hosts = {_host(u) for u in urls if _host(u)}
    return hosts | {h.lower().removeprefix("www.") for h in extra if h}


def brand_warnings(settings: Settings) -> list[str]:
    """What in the configured brand colours people will find hard to read (WCAG 1.4.3)."""
    primary = settings.site.brand.primary_color
    ratio = colors.contrast(primary, "#ffffff") if primary else None
    if ratio is None or ratio >= colors.TEXT_CONTRAST:
        return []
    return [f"site.brand.primary_color {primary} on white is {ratio:.2f}:1, under the {colors.TEXT_CONTRAST}:1 "
            "that text needs (WCAG 1.4.3): links are drawn darker "
            f"({colors.readable(primary, '#ffffff')}) and button text dark; choose a darker brand colour "
            "to keep your own"]


def lint_file(path: Path, hosts: set[str]) -> list[Finding]:
    """Lint an .eml (headers and parts) or an .html file (the body only)."""
    data = path.read_bytes()
    if path.suffix.lower() == ".eml" or data[:200].lower().startswith((b"from:", b"subject:", b"mime-version:",
                                                                       b"content-type:", b"to:", b"date:")):
        return lint_message(message_from_bytes(data, policy=policy.default), hosts)
    return lint_html(data.decode("utf-8", "replace"), hosts)


def lint_message(msg: EmailMessage, hosts: set[str]) -> list[Finding]:
    findings = []
    for header in ("From", "Subject", "Date", "Message-ID"):
        if not msg.get(header):
            findings.append(Finding("header", f"no {header} header"))
    findings += _unsubscribe_headers(msg)
    html_part, text_part = msg.get_body(("html",)), msg.get_body(("plain",))
    if text_part is None:
        findings.append(Finding("header", "no text/plain part (some readers and spam filters need one)"))
    if html_part is None:
        findings.append(Finding("header", "no text/html part"))
        return findings
    return findings + lint_html(html_part.get_content(), hosts)


def _unsubscribe_headers(msg: EmailMessage) -> list[Finding]:
    value = str(msg.get("List-Unsubscribe") or "")
    if not value:
        return [Finding("header", "no List-Unsubscribe header (RFC 2369)")]
    findings = []
    targets = [t.strip().lower() for t in re.findall(r"<([^>]*)>", value)]
    if not any(t.startswith("https://") for t in targets):
        findings.append(Finding("header", "List-Unsubscribe has no https URL (RFC 8058 one-click needs one)"))
    if not any(t.startswith("mailto:") for t in targets):
        findings.append(Finding("header", "List-Unsubscribe has no mailto: address"))
    if str(msg.get("List-Unsubscribe-Post") or "").strip() != "List-Unsubscribe=One-Click":
        findings.append(Finding("header", "no 'List-Unsubscribe-Post: List-Unsubscribe=One-Click' (RFC 8058)"))
    return findings


def lint_html(html: str, hosts: set[str]) -> list[Finding]:
    findings = []
    size = len(html.encode())
    if size > MAX_HTML_BYTES:
        findings.append(Finding("size", f"the HTML is {size:,} bytes; keep it under {MAX_HTML_BYTES:,} "
                                        "(Gmail clips at about 102 KB and hides the footer)"))
    scan = _Scan()
    scan.feed(html)
    scan.close()
    findings += scan.findings
    for url, where in scan.links:
        findings += _check_url(url, where, hosts, loaded=False)
    for url, where in scan.loads:
        findings += _check_url(url, where, hosts, loaded=True)
    if not scan.unsubscribe_link:
        findings.append(Finding("unsubscribe-link", "no visible unsubscribe link in the body"))
    return _unique(findings)


# The rules about subscribers' privacy: checked before every send (syndicate/email/privacy.py).
PRIVACY_RULES = frozenset({"third-party", "tracking-pixel"})
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.I)
_ATTR = re.compile(r"""\s(src|srcset)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)


def privacy_findings(html: str, hosts: set[str]) -> list[Finding]:
    """What in HTML would tell a third party who opened the email (third-party, tracking-pixel)."""
    return [f for f in lint_html(html, hosts) if f.rule in PRIVACY_RULES]


def drop_third_party_images(html: str, hosts: set[str]) -> tuple[str, int]:
    """HTML without the <img> elements that load from another host; and how many went."""
    dropped = 0

    def keep_or_drop(match: re.Match) -> str:
        nonlocal dropped
        urls = []
        for name, *values in _ATTR.findall(match.group(0)):
            value = htmllib.unescape(next((v for v in values if v), ""))
            urls += _srcset(value) if name.lower() == "srcset" else [value]
        if any(not _is_site_host(_host(u), hosts) for u in urls if urlsplit(u.strip()).netloc):
            dropped += 1
            return ""
        return match.group(0)

    return _IMG_TAG.sub(keep_or_drop, html), dropped


def _check_url(url: str, where: str, hosts: set[str], *, loaded: bool) -> list[Finding]:
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"javascript", "data", "vbscript", "file"}:
        return [Finding("unsafe-url", f"{where}: {scheme}: URL")]
    if scheme not in SAFE_SCHEMES or (scheme in {"http", "https"} and not parts.netloc):
        return [Finding("relative-url", f"{where}: not an absolute URL: {url[:120]}")]
    findings = []
    if loaded and scheme in {"http", "https"} and not _is_site_host(_host(url), hosts):
        findings.append(Finding("third-party", f"{where}: loads from {_host(url)} (not the site's host): "
                                               f"{url[:120]}"))
    if not loaded and scheme in {"http", "https"} and _hides_url(parts.query):
        findings.append(Finding("click-redirect", f"{where}: a redirect carrying another URL: {url[:120]}"))
    return findings


def _hides_url(query: str) -> bool:
    return any(re.match(r"https?://", unquote(value), re.I) for _, value in parse_qsl(query))


def _is_site_host(host: str, hosts: set[str]) -> bool:
    return any(host == h or host.endswith("." + h) for h in hosts)


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower().removeprefix("www.")
    except ValueError:
        return ""


def _unique(findings: list[Finding]) -> list[Finding]:
    seen, result = set(), []
    for f in findings:
        if f not in seen:
            seen.add(f)
            result.append(f)
    return result


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.findings: list[Finding] = []
        self.links: list[tuple[str, str]] = []
        self.loads: list[tuple[str, str]] = []
        self.anchor: list[str] | None = None
        self.anchor_href = ""
        self.anchor_images: list[str] = []  # the src of each image in the open link without alt text
        self.anchor_named = False  # the open link holds an image with alt text
        self.in_style = False
        self.unsubscribe_link = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag in _ACTIVE_TAGS:
            self.findings.append(Finding("active-content", f"<{tag}> element"))
        for name in values:
            if name.startswith("on"):
                self.findings.append(Finding("active-content", f"<{tag} {name}=...> event handler"))
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            self.findings.append(Finding("active-content", "<meta http-equiv=refresh>"))
        if tag == "img":
            self._image(values)
        for (t, attr) in _LOADING_ATTRS:
            if t == tag and values.get(attr):
                for url in _srcset(values[attr]) if attr == "srcset" else [values[attr]]:
                    self.loads.append((url, f"<{tag} {attr}>"))
        if tag == "link" and values.get("href"):
            self.loads.append((values["href"], "<link href>"))
        if tag in {"a", "area"} and "href" in values:
            self.links.append((values["href"], f"<{tag} href>"))
            if tag == "a":
                self.anchor, self.anchor_href, self.anchor_images = [], values["href"], []
                self.anchor_named = False
        for url in _CSS_URL.findall(values.get("style", "")):
            self.loads.append((url, f"<{tag} style>"))
        self.in_style = tag == "style" or self.in_style

    def handle_startendtag(self, tag, attrs) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self.in_style = False
        if tag == "a" and self.anchor is not None:
            text = " ".join("".join(self.anchor).split()).lower()
            if "unsubscribe" in text or ("unsubscribe" in self.anchor_href.lower() and text):
                self.unsubscribe_link = True
            if self.anchor_images and not text and not self.anchor_named:
                self.findings.append(Finding("alt", f"a link to {self.anchor_href[:80]!r} holds only an image with "
                                                    f"empty alt text ({self.anchor_images[0]!r}): it has no name"))
            self.anchor = None

    def handle_data(self, data: str) -> None:
        if self.in_style:
            for url in _CSS_URL.findall(data) + _CSS_IMPORT.findall(data):
                self.loads.append((url, "<style>"))
        elif self.anchor is not None:
            self.anchor.append(data)

    def _image(self, values: dict[str, str]) -> None:
        src = values.get("src", "")[:80]
        if "alt" not in values:
            self.findings.append(Finding("alt", f"<img src={src!r}> has no alt text (alt=\"\" if it is decoration)"))
        if self.anchor is not None:
            if values.get("alt", "").strip():
                self.anchor_named = True
            else:
                self.anchor_images.append(src)
        sizes = {values.get("width", "").strip().removesuffix("px"), values.get("height", "").strip().removesuffix("px")}
        style = re.sub(r"\s+", "", values.get("style", "").lower())
        if sizes & {"0", "1"} or re.search(r"(?:^|;)(?:width|height):[01]px|display:none|visibility:hidden",
                                           style):
            self.findings.append(Finding("tracking-pixel", f"<img src={src!r}> is tiny or hidden"))


def _srcset(value: str) -> list[str]:
    return [item.strip().split()[0] for item in value.split(",") if item.strip()]
