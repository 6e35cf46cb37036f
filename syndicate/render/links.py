"""Links as subscribers and followers receive them: absolute, untracked unless configured."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urljoin, urlsplit, urlunsplit

SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel"})


def with_utm(url: str, utm: dict[str, str]) -> str:
    """``url`` with the channel's UTM parameters; unchanged when none are configured.

    Keys may be given bare (``source``) or prefixed (``utm_source``). A parameter the link
    already carries is replaced, so the channel's attribution is the one that counts.
    """
    if not utm or not url.lower().startswith(("http://", "https://")):
        return url
    tags = {(k if k.startswith("utm_") else f"utm_{k}"): str(v) for k, v in utm.items() if v}
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in tags]
    query = urlencode(kept + sorted(tags.items()))
    return urlunsplit(parts._replace(query=query))


def channel_utm(utm: dict[str, str], per_post: bool, campaign: str, channel: str) -> dict[str, str]:
    """The UTM tags of one post (or digest edition) on one channel: the channel's static ``utm``
    and, with ``utm_per_post``, ``utm_campaign`` = CAMPAIGN (the post's slug, or the edition) and
    ``utm_content`` = the channel's name, which win over static values of the same names."""
    tags = {(k if k.startswith("utm_") else f"utm_{k}"): v for k, v in utm.items()}
    if per_post:
        tags.update({"utm_campaign": campaign, "utm_content": channel})
    return tags


def post_slug(url: str) -> str:
    """The last segment of a post's path, without an extension: ".../2026/01/coping-with-grief/"
    -> "coping-with-grief"; "post" when the path has none (a post at the site's root)."""
    segments = [unquote(part) for part in urlsplit(url).path.split("/") if part]
    slug = segments[-1].rsplit(".", 1)[0] if segments else ""
    return slug or "post"


def absolute(url: str | None, base: str) -> str | None:
    """``url`` resolved against ``base``, or None when it is empty or not a safe scheme."""
    if not url or not url.strip():
        return None
    # Browsers ignore tabs and newlines inside URLs ("java\nscript:"); so must the check.
    cleaned = "".join(ch for ch in url.strip() if ch not in "\t\r\n")
    resolved = urljoin(base, cleaned)
    scheme = urlsplit(resolved).scheme.lower()
    return resolved if scheme in SAFE_SCHEMES else None


def is_http(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme.lower() in {"http", "https"} and bool(urlsplit(url).netloc)
