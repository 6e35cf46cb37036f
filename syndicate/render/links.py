"""Links as subscribers and followers receive them: absolute, untracked unless configured."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

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
