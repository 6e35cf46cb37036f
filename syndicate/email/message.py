"""One email payload as each recipient's MIME message: personalization and the message template.

An email delivery's payload (``render/payloads.py``) holds the rendered parts and the envelope;
at send time every recipient gets their own message, with their unsubscribe token in the
footer link and the RFC 8058 headers. ``MessageTemplate`` prepares one payload's message once
and writes each recipient's bytes by substitution; ``personalize`` is the public entry point.
"""

from __future__ import annotations

import binascii
import functools
import re
import secrets
from datetime import UTC, datetime
from email import policy, quoprimime
from email.message import EmailMessage
from email.policy import EmailPolicy, Policy
from email.utils import format_datetime, make_msgid, parseaddr
from html import escape
from urllib.parse import quote

from syndicate.render import build_message
from syndicate.render.email import (
    MESSAGE_POLICY,
    fold_list_header,
    unsubscribe_headers,
)
from syndicate.settings import Settings


def personalize(payload: dict, recipient: str, token: str, *, message_id: str | None = None) -> EmailMessage:
    """RECIPIENT's own message: "{token}" in the unsubscribe links (headers, HTML and text)
    and in the preferences link (HTML and text) replaced by TOKEN, their signed unsubscribe token.

    Built from the payload's ``MessageTemplate`` (made once per payload and kept in a small
    cache): ``bytes(message)`` and ``message.as_bytes(policy=SMTP)`` are the template's bytes,
    written without the email package; anything else done to the message (reading its parts,
    changing a header) works on the full ``EmailMessage``, built on first use."""
    return MessageTemplate.for_payload(payload).message(recipient, token, message_id=message_id)


def _personalize_slow(payload: dict, recipient: str, token: str, *, message_id: str | None = None,
                      date: datetime | None = None) -> EmailMessage:
    """The message built by the email package: what the template reproduces, byte for byte."""
    from syndicate.render import EmailContent

    web, mailto = unsubscribe_links(payload, token)
    html, text = payload["html"], payload["text"]
    for template in token_urls(payload):
        url = template.replace("{token}", token)
        html = html.replace(escape(template), escape(url)).replace(template, url)
        text = text.replace(template, url)
    content = EmailContent(subject=payload["subject"], preheader=payload["preheader"], html=html, text=text,
                           sensitive=payload.get("sensitive", False))
    return build_message(content, from_addr=payload["from"], to_addr=recipient, reply_to=payload.get("reply_to"),
                         unsubscribe_https=web, unsubscribe_mailto=mailto, message_id_domain=_domain(payload),
                         message_id=message_id, date=date)


def token_urls(payload: dict) -> list[str]:
    """The payload's links that carry each recipient's token ("{token}"): the unsubscribe
    link, then the preferences page's (the same token)."""
    urls = (payload.get("unsubscribe_https"), payload.get("preferences_https"))
    return [url for url in urls if url and "{token}" in url]


def _domain(payload: dict) -> str:
    return parseaddr(payload["from"])[1].rpartition("@")[2] or "localhost"


def unsubscribe_links(payload: dict, token: str) -> tuple[str | None, str | None]:
    """(web, mailto): one recipient's unsubscribe links, TOKEN (their signed unsubscribe token)
    in place of "{token}". The mailto is the channel's, else one to the From address; without
    "{token}" in it, the token goes into its subject. Either may be None (none configured).
    ``render.email.unsubscribe_headers(web, mailto)`` makes the RFC 8058 headers of them; this is
    what ``personalize`` puts in each message, and what direct-send APIs get per recipient."""
    web = payload.get("unsubscribe_https")
    mailto = payload.get("unsubscribe_mailto") or _default_mailto(payload)
    if web and "{token}" in web:
        web = web.replace("{token}", token)
    if mailto:
        mailto = mailto.replace("{token}", token) if "{token}" in mailto else _with_subject(mailto, token)
    return web, mailto


def _default_mailto(payload: dict) -> str | None:
    # Unsubscribe by mail goes to the From address unless the channel names a mailbox.
    address = parseaddr(payload.get("from") or "")[1]
    return f"mailto:{address}" if "@" in address else None


def _with_subject(mailto: str, token: str) -> str:
    # The token in the subject lets whoever reads that mailbox act on the request.
    base = mailto if mailto.lower().startswith("mailto:") else f"mailto:{mailto}"
    if "?" in base:
        return base
    return f"{base}?subject={quote('unsubscribe ' + token)}"


def email_messages(payload: dict, settings: Settings) -> list[EmailMessage]:
    """Each fixed recipient's message (``to``), personalized like a real send: the outbox and
    previews show exactly the headers and links a subscriber would get."""
    return [personalize(payload, to, preview_token(settings, to)) for to in payload["to"] or ["subscriber@localhost"]]


def preview_token(settings: Settings, address: str) -> str:
    """The real signed unsubscribe token where the signing key is configured; else a visible
    stand-in (the demo needs no secrets, and its messages are never mailed)."""
    from syndicate.audience.subscribers import unsubscribe_token
    from syndicate.settings import SettingsError

    try:
        return unsubscribe_token(settings, address)
    except SettingsError:
        return "preview-unsigned"


# -- per-recipient messages from one template -----------------------------------------------

_VARIABLE = ("to", "date", "message-id", "list-unsubscribe")
# A plain address / Message-ID: the email package writes them exactly as given.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_SIMPLE_MESSAGE_ID = re.compile(rf"<{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>")
_LINE_WIDTH = 78  # the default policy's max_line_length: 7bit/8bit/QP choice, QP width, folding
_TEMPLATE_CACHE = 16


class MessageTemplate:
    """One payload's message, prepared once; ``for_recipient`` writes each recipient's bytes.

    The bytes are those the email package writes for ``build_message`` (``as_bytes`` with
    the SMTP policy), with one MIME boundary per template: the constant headers are folded
    once; To, Date, Message-ID and List-Unsubscribe are written per recipient (by the email
    package itself when they are not plain ASCII); the two parts are kept as lines, those
    holding the unsubscribe URL re-encoded per recipient with the rules of the email
    package's ``set_content`` (7bit, 8bit, quoted-printable or base64, chosen the same way),
    the others encoded once."""

    def __init__(self, payload: dict):
        self.payload = payload
        self.domain = _domain(payload)
        urls = token_urls(payload)
        self.per_token = bool(urls)
        html, text = payload["html"], payload["text"]
        # Two stand-ins for the token in the bodies: as written raw, and HTML-escaped.
        self.raw = self.escaped = b""
        if self.per_token:
            seed = secrets.token_hex(8)
            self.raw, self.escaped = f"Zr{seed}Zr".encode(), f"Ze{seed}Ze".encode()
        for url in urls:
            raw_url, esc_url = url.replace("{token}", self.raw.decode()), url.replace("{token}", self.escaped.decode())
            html = html.replace(escape(url), escape(esc_url)).replace(url, raw_url)
            text = text.replace(url, raw_url)
        model = _personalize_slow(payload, "template@example.invalid", "TOKEN", message_id="<template@invalid>")
        model.as_bytes(policy=policy.SMTP)  # the email package picks the boundary here
        self.boundary = model.get_boundary().encode("ascii")
        self.headers: list[tuple[str, object]] = []  # (lower name, folded bytes or the header's name)
        self.fetch: dict[str, object] = {}  # lower name -> (name, header object or None)
        for name, value in model.raw_items():
            key = name.lower()
            self.fetch.setdefault(key, (name, None if key in _VARIABLE else value))
            self.headers.append((key, name if key in _VARIABLE else policy.SMTP.fold_binary(name, value)))
        self.parts = [_Part(part, body, (self.raw, self.escaped))
                      for part, body in zip(model.iter_parts(), (text, html), strict=True)]

    @classmethod
    def from_payload(cls, payload: dict) -> MessageTemplate:
        return cls(payload)

    @classmethod
    def for_payload(cls, payload: dict) -> MessageTemplate:
        """The template of PAYLOAD, from a small cache keyed by what the message is made of."""
        return _cached_template(tuple(payload.get(k) for k in _TEMPLATE_FIELDS), _Frozen(payload))

    def message(self, recipient: str, token: str, *, message_id: str | None = None,
                date: datetime | None = None) -> EmailMessage:
        """RECIPIENT's message as an ``EmailMessage`` (see ``personalize``)."""
        return PersonalizedMessage(self, recipient, token, message_id or make_msgid(domain=self.domain),
                                   date or datetime.now(UTC))

    def for_recipient(self, recipient: str, token: str, message_id: str | None = None, *,
                      date: datetime | None = None) -> bytes:
        """RECIPIENT's message, as ``personalize(...).as_bytes(policy=SMTP)`` writes it (CRLF)."""
        return self._bytes(recipient, token, message_id or make_msgid(domain=self.domain), date or datetime.now(UTC))

    def _bytes(self, recipient: str, token: str, message_id: str, date: datetime) -> bytes:
        if "\r" in token or "\n" in token:  # would split the parts' lines differently
            model = _personalize_slow(self.payload, recipient, token, message_id=message_id, date=date)
            model.set_boundary(self.boundary.decode())
            return model.as_bytes(policy=policy.SMTP)
        web, mailto = unsubscribe_links(self.payload, token)
        values = {"to": recipient, "date": format_datetime(date), "message-id": message_id,
                  "list-unsubscribe": unsubscribe_headers(web, mailto).get("List-Unsubscribe")}
        out = []
        for key, item in self.headers:
            out.append(_fold(item, values[key]) if isinstance(item, str) else item)
        out.append(b"\r\n")
        subs = ((self.raw, token.encode()), (self.escaped, escape(token).encode())) if self.per_token else ()
        dash = b"--" + self.boundary
        for part in self.parts:
            headers, body = part.encode(subs)
            if dash in body:  # a token that makes a boundary line: let the email package choose
                model = _personalize_slow(self.payload, recipient, token, message_id=message_id, date=date)
                return model.as_bytes(policy=policy.SMTP)
            out += (dash, b"\r\n", headers, b"\r\n", body, b"\r\n")
        out += (dash, b"--\r\n")
        return b"".join(out)


_TEMPLATE_FIELDS = ("subject", "preheader", "html", "text", "sensitive", "from", "reply_to",
                    "unsubscribe_https", "unsubscribe_mailto", "preferences_https")


class _Frozen:
    """The payload, passed along but left out of the cache key (dicts are not hashable)."""

    __slots__ = ("payload",)

    def __init__(self, payload: dict):
        self.payload = payload

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other) -> bool:
        return isinstance(other, _Frozen)


@functools.lru_cache(maxsize=_TEMPLATE_CACHE)
def _cached_template(key: tuple, frozen: _Frozen) -> MessageTemplate:
    return MessageTemplate({k: v for k, v in zip(_TEMPLATE_FIELDS, key, strict=True)} | _extra(frozen.payload))


def _extra(payload: dict) -> dict:
    return {k: v for k, v in payload.items() if k not in _TEMPLATE_FIELDS}


def _fold(name: str, value: str | None) -> bytes:
    """One variable header, folded as the email package would (it does so itself unless plain)."""
    if value is None:
        raise ValueError(f"no {name} for this message")
    line = f"{name}: {value}"
    key = name.lower()
    if key == "date" or (len(line) <= _LINE_WIDTH and (
            (key == "to" and _SIMPLE_ADDRESS.fullmatch(value))
            or (key == "message-id" and _SIMPLE_MESSAGE_ID.fullmatch(value)))):
        return (line + "\r\n").encode("ascii")
    if key == "message-id" and _SIMPLE_MESSAGE_ID.fullmatch(value) and len(line) <= 998:
        return (line + "\r\n").encode("ascii")  # a long Message-ID is written whole too
    if key == "list-unsubscribe" and value.isascii() and not any(c in value for c in "\r\n\x0b\x0c\x1c\x1d\x1e"):
        return fold_list_header(name, value).encode("ascii")
    return policy.SMTP.fold_binary(name, MESSAGE_POLICY.header_store_parse(name, value)[1])


class _Part:
    """One text part as lines, encoded as ``email.contentmanager`` encodes text for
    ``set_content`` under the default policy; the lines without the token are encoded once."""

    def __init__(self, model: EmailMessage, body: str, stand_ins: tuple[bytes, bytes]):
        self.lines = body.encode("utf-8").splitlines()
        self.variable = [i for i, line in enumerate(self.lines) if any(s and s in line for s in stand_ins)]
        fixed = [line for i, line in enumerate(self.lines) if i not in set(self.variable)]
        self.fixed_width = max((len(line) for line in fixed), default=0)
        self.fixed_ascii = all(line.isascii() for line in fixed)
        self._qp: list[bytes] | None = None
        # The variable lines cut around the token, each piece QP-escaped once (escaping is
        # character by character; only the wrapping into 78-column lines needs the whole line).
        pattern = re.compile(b"(" + b"|".join(re.escape(s) for s in stand_ins if s) + b")") if self.variable else None
        self.pieces = {i: [piece if piece in stand_ins else _qp_escape(piece) for piece in pattern.split(self.lines[i])]
                       for i in self.variable}
        self.heads = {i: _qp_head("".join(p for p in self.pieces[i][:1])) for i in self.variable}
        self._choice: str | None = None  # QP or base64, when the token is past the first 10 lines
        self._head = {}
        self.model = model

    def headers(self, cte: str) -> bytes:
        folded = self._head.get(cte)
        if folded is None:
            items = []
            for name, value in self.model.raw_items():
                if name.lower() == "content-transfer-encoding":
                    value = MESSAGE_POLICY.header_store_parse(name, cte)[1]
                items.append(policy.SMTP.fold_binary(name, value))
            folded = self._head[cte] = b"".join(items)
        return folded

    def encode(self, subs) -> tuple[bytes, bytes]:
        """(the part's headers, its encoded body with CRLF line ends) with SUBS made."""
        lines = self.lines
        if self.variable and subs:
            lines = lines.copy()
            for i in self.variable:
                line = lines[i]
                for stand_in, value in subs:
                    line = line.replace(stand_in, value)
                lines[i] = line
        width = max([self.fixed_width, *(len(lines[i]) for i in self.variable)])
        if width <= _LINE_WIDTH:
            ascii_only = self.fixed_ascii and all(lines[i].isascii() for i in self.variable)
            # The default policy's cte_type is 8bit: non-ASCII text with short lines goes as is.
            return self.headers("7bit" if ascii_only else "8bit"), b"\r\n".join(lines) + b"\r\n"
        cte = self._cte(lines)
        if cte == "base64":
            data = b"\n".join(lines) + b"\n"
            step = _LINE_WIDTH // 4 * 3
            encoded = b"".join(binascii.b2a_base64(data[i:i + step]) for i in range(0, len(data), step))
            return self.headers(cte), encoded.replace(b"\n", b"\r\n")
        qp = self._quoted()
        if self.variable:
            qp = qp.copy()
            escaped = {stand_in: _qp_escape(value) for stand_in, value in subs}
            for i in self.variable:
                head, start = self.heads[i]
                qp[i] = _qp_wrap("".join(escaped.get(p, p) if isinstance(p, bytes) else p
                                         for p in self.pieces[i]), start, head).encode("ascii")
        return self.headers(cte), b"".join(qp)

    def _cte(self, lines: list[bytes]) -> str:
        if self._choice is not None:
            return self._choice
        sniff = b"\n".join(lines[:10]) + b"\n"
        qp_length = len(quoprimime.body_encode(sniff.decode("latin-1"), _LINE_WIDTH))
        choice = "base64" if qp_length > len(binascii.b2a_base64(sniff)) else "quoted-printable"
        if not any(i < 10 for i in self.variable):
            self._choice = choice
        return choice

    def _quoted(self) -> list[bytes]:
        if self._qp is None:
            self._qp = [_qp_line(line) for line in self.lines]
        return self._qp


def _qp_line(line: bytes) -> bytes:
    # quoprimime.body_encode works line by line: the body's encoding is the lines' encodings.
    return quoprimime.body_encode(line.decode("latin-1") + "\n", _LINE_WIDTH).replace("\n", "\r\n").encode("ascii")


def _qp_escape(data: bytes) -> str:
    return data.decode("latin-1").translate(quoprimime._QUOPRI_BODY_ENCODE_MAP)


def _qp_piece(line: str, start: int) -> tuple[str, int]:
    """One soft-wrapped output line of ``quoprimime.body_encode`` starting at START (never
    splitting an ``=XX`` escape), and where the next one starts."""
    stop = start + _LINE_WIDTH - 1
    if line[stop - 2] == "=":
        return line[start:stop - 1], stop - 2
    if line[stop - 1] == "=":
        return line[start:stop], stop - 1
    return line[start:stop] + "=", stop


def _qp_head(prefix: str) -> tuple[str, int]:
    """The wrapped lines of an escaped line that PREFIX alone decides (whatever follows it),
    and where the wrapping goes on from."""
    out, start = [], 0
    while start + _LINE_WIDTH + 1 <= len(prefix):
        piece, start = _qp_piece(prefix, start)
        out.append(piece)
    return "".join(piece + "\r\n" for piece in out), start


def _qp_wrap(line: str, start: int = 0, head: str = "") -> str:
    """One escaped line wrapped as ``quoprimime.body_encode`` wraps it, CRLF-ended (its code,
    after the escaping), going on from START after the lines HEAD (see ``_qp_head``)."""
    out = []
    last = len(line) - 1 - _LINE_WIDTH
    while start <= last:
        piece, start = _qp_piece(line, start)
        out.append(piece)
    if line and line[-1] in " \t":
        room = start - last
        if room >= 3:
            tail = quoprimime.quote(line[-1])
        elif room == 2:
            tail = line[-1] + "=\r\n"
        else:
            tail = "=\r\n" + quoprimime.quote(line[-1])
        out.append(line[start:-1] + tail)
    else:
        out.append(line[start:])
    return head + "\r\n".join(out) + "\r\n"


class PersonalizedMessage(EmailMessage):
    """An ``EmailMessage`` whose bytes come from its ``MessageTemplate``.

    ``as_bytes()`` / ``bytes()`` (default or SMTP policy) and reading a header cost no MIME
    work; the first other use builds the full message with the email package (the same
    headers, boundary, Date and Message-ID, so the same bytes), and from then on it is an
    ordinary ``EmailMessage`` that may be changed."""

    _STATE = frozenset({"_headers", "_payload", "_unixfrom", "_charset", "preamble", "epilogue", "defects",
                        "_default_type"})

    def __init__(self, template: MessageTemplate, recipient: str, token: str, message_id: str, date: datetime):
        self.policy = MESSAGE_POLICY
        self._template, self._recipient, self._token = template, recipient, token
        self._message_id, self._date = message_id, date
        self._data: bytes | None = None
        if any(len(v.splitlines()) > 1 for v in (recipient, token, message_id)):
            self._full()  # the email package refuses these as it always did

    def __getattr__(self, name: str):
        if name in PersonalizedMessage._STATE and "_template" in self.__dict__:
            self._full()
            return self.__dict__[name]
        raise AttributeError(name)

    def _full(self) -> None:
        model = _personalize_slow(self._template.payload, self._recipient, self._token,
                                  message_id=self._message_id, date=self._date)
        model.set_boundary(self._template.boundary.decode())
        self.__dict__.update(model.__dict__)

    def _built(self) -> bool:
        return "_headers" in self.__dict__

    def as_bytes(self, unixfrom: bool = False, policy: Policy | None = None) -> bytes:
        policy = self.policy if policy is None else policy
        if self._built() or unixfrom or not _plain_policy(policy):
            return super().as_bytes(unixfrom=unixfrom, policy=policy)
        if self._data is None:
            self._data = self._template._bytes(self._recipient, self._token, self._message_id, self._date)
        return self._data if policy.linesep == "\r\n" else self._data.replace(b"\r\n", b"\n")

    def __bytes__(self) -> bytes:
        return self.as_bytes()

    def get(self, name: str, failobj=None):
        if self._built():
            return super().get(name, failobj)
        key = name.lower()
        found = self._template.fetch.get(key)
        if found is None:
            return failobj
        stored, value = found
        if value is None:
            value = {"to": self._recipient, "message-id": self._message_id, "date": format_datetime(self._date),
                     "list-unsubscribe": unsubscribe_headers(*unsubscribe_links(self._template.payload,
                                                                                self._token))["List-Unsubscribe"]}[key]
            return self.policy.header_fetch_parse(stored, self.policy.header_store_parse(stored, value)[1])
        return self.policy.header_fetch_parse(stored, value)

    def __getitem__(self, name: str):
        return self.get(name)


def _plain_policy(p) -> bool:
    # The policies the template's bytes are right for: default and SMTP (and clones alike).
    return (isinstance(p, EmailPolicy) and p.linesep in ("\n", "\r\n") and p.max_line_length == _LINE_WIDTH
            and not p.utf8 and p.cte_type == "8bit" and not p.mangle_from_)
