"""Fake Mailgun API: POST /v3/{domain}/messages (batch sending), GET /v3/domains/{domain}.

Auth: HTTP Basic ``api:<key>``; a wrong key answers 401 with the text "Forbidden", as
Mailgun does. A domain sending key (``fake.sending_keys``) may only post messages: "Domain
Sending Keys are API keys that only allow sending messages via a POST call on /messages and
/messages.mime" (documentation.mailgun.com api-reference/authentication); anything else with
it answers 401 "Forbidden". Messages arrive as multipart/form-data (urlencoded forms work
too). Every ``%recipient.KEY%`` in the subject, bodies and headers is replaced per recipient,
and one message per recipient lands in ``fake.delivered``. Errors are ``{"message": ...}``
(documentation.mailgun.com quickstart-guide/responses: "400 Will typically contain a JSON
response with a "message" key"); an unknown domain is 404 "Domain not found".

Strict: Mailgun publishes no schema here, so the fake encodes the documented rules of
``POST /v3/{domain}/messages`` (``SEND`` = documentation.mailgun.com send-http / the Messages
API reference, ``BATCH`` = the batch sending guide), each answered 400 with nothing sent:

* ``from`` and at least one ``to`` are required, and ``text``, ``html`` or ``template``; every
  ``to`` must pass the syntax check: "An error will be returned with 'parameter is not a valid
  address' if the provided email address fails syntax checks in accordance with RFC5321,
  RFC5322, RFC6854" (SEND) -- ASCII only, since none of those allows a UTF-8 local part; and
  any address in ``fake.invalid`` (what Mailgun's own check refuses beyond ours) fails too;
* at most 1000 recipients per call (BATCH: "The maximum number of recipients allowed for
  Batch Sending is 1,000");
* ``recipient-variables`` must be a JSON object (SEND); without it, a call with several
  ``to`` is ONE message to all of them, each seeing the others (BATCH: "it is important to
  also use Recipient Variables. This will ensure that Mailgun will send an individual email
  to each recipient"): the fake then delivers one message whose ``to_header`` lists them all;
* ``o:tracking``, ``o:tracking-clicks`` take yes/no/true/false/htmlonly, ``o:tracking-opens``
  yes/no/true/false (SEND).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from .server import FakeAPI, Fault, Reply, Request, reply, route

MAX_RECIPIENTS = 1000
VARIABLE = re.compile(r"%recipient\.([A-Za-z0-9_:.-]+)%")
YES_NO = {"yes", "no", "true", "false"}
OPTION_VALUES = {"o:tracking": YES_NO | {"htmlonly"}, "o:tracking-clicks": YES_NO | {"htmlonly"},
                 "o:tracking-opens": YES_NO}
# RFC 5321/5322 syntax, ASCII: dot-atom local part (or a quoted string) @ a dotted domain.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDRESS = re.compile(rf'(?:{_ATOM}(?:\.{_ATOM})*|"[ -~]*")@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?'
                      rf'(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+')


def valid_address(value: str) -> bool:
    """Mailgun's documented syntax check on one ``to`` / ``from`` value (``Name <addr>`` or bare)."""
    from email.utils import parseaddr

    address = parseaddr(value)[1] if "<" in value else value.strip()
    return bool(_ADDRESS.fullmatch(address))


def form_fields(req: Request) -> list[tuple[str, str]]:
    """Every field of a multipart/form-data or urlencoded body, in order (names repeat)."""
    ctype = req.header("content-type") or ""
    if ctype.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + req.body)
        fields = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            fields.append((str(name), payload.decode(part.get_content_charset() or "utf-8")))
        return fields
    return parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)


class MailgunFake(FakeAPI):
    name = "mailgun"
    API_KEY = "key-fake0123456789abcdef0123456789"
    DOMAIN = "mg.harborwellness.example"

    def reset_state(self) -> None:
        self.keys = {self.API_KEY}
        self.sending_keys: set[str] = set()  # domain sending keys: POST /messages only
        self.invalid: set[str] = set()  # addresses Mailgun's own syntax check refuses
        self.delivered: list[dict[str, Any]] = []
        self.posts: list[dict[str, Any]] = []  # one per accepted API call: its fields

    def options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "api_key_env": "SYN_FAKE_MAILGUN_KEY", "domain": self.DOMAIN}

    def env(self) -> dict[str, str]:
        return {"SYN_FAKE_MAILGUN_KEY": self.API_KEY}

    def revoke(self) -> None:
        with self.lock:
            self.keys.clear()

    def error(self, status: int, message: str, code: Any = None) -> Reply:
        return reply(status, {"message": message})

    def fault_reply(self, status: int, fault: Fault) -> Reply:
        if status == 401:
            return reply(401, "Forbidden")
        if status == 400:
            return self.error(400, "'from' parameter is not a valid address. please check documentation")
        return super().fault_reply(status, fault)

    def rate_limited(self, retry_after: int) -> Reply:
        answer = self.error(429, "Too many requests")
        answer.headers["Retry-After"] = str(retry_after)
        return answer

    def authorize(self, req: Request) -> Reply | None:
        auth = req.header("authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, key = "", ""
            sending = req.method == "POST" and req.path.endswith("/messages") and key in self.sending_keys
            if user == "api" and (key in self.keys or sending):
                return None
        return reply(401, "Forbidden")

    @route("GET", r"/v3/domains/(?P<domain>[^/]+)")
    def get_domain(self, req: Request, domain: str) -> Reply:
        if domain != self.DOMAIN:
            return self.error(404, "Domain not found")
        return reply(200, {"domain": {"name": domain, "state": "active", "type": "custom", "is_disabled": False},
                           "receiving_dns_records": [], "sending_dns_records": []})

    @route("POST", r"/v3/(?P<domain>[^/]+)/messages")
    def messages(self, req: Request, domain: str) -> Reply:
        if domain != self.DOMAIN:
            return self.error(404, "Domain not found")
        fields = form_fields(req)
        one = {}
        for name, value in fields:
            one.setdefault(name, value)
        to = [value for name, value in fields if name == "to"]
        if not one.get("from"):
            return self.error(400, "'from' parameter is missing")
        if not valid_address(one["from"]):
            return self.error(400, "'from' parameter is not a valid address. please check documentation")
        if not to:
            return self.error(400, "'to' parameter is missing")
        if any(not valid_address(a) or a.lower() in self.invalid for a in to):
            return self.error(400, "'to' parameter is not a valid address. please check documentation")
        if len(to) > MAX_RECIPIENTS:
            return self.error(400, f"Too many recipients: {len(to)} (max {MAX_RECIPIENTS})")
        if not (one.get("text") or one.get("html") or one.get("template")):
            return self.error(400, "Need at least one of 'text', 'html' or 'template' parameters specified")
        for option, allowed in OPTION_VALUES.items():
            if option in one and one[option].lower() not in allowed:
                return self.error(400, f"'{option}' parameter is not valid: {one[option]!r}")
        batch = "recipient-variables" in one
        try:
            variables = json.loads(one.get("recipient-variables") or "{}")
        except ValueError:
            return self.error(400, "recipient-variables parameter is not a valid JSON")
        if not isinstance(variables, dict):
            return self.error(400, "recipient-variables parameter is not a valid JSON")
        message_id = f"<{uuid.uuid4().hex}@{self.DOMAIN}>"
        headers = {name[2:]: value for name, value in fields if name.startswith("h:")}
        with self.lock:
            for address in to:
                mine = variables.get(address) or {}

                def fill(text: str | None, mine=mine) -> str | None:
                    if text is None:
                        return None
                    return VARIABLE.sub(lambda m: str(mine.get(m.group(1), "")), text)

                self.delivered.append({
                    "to": address, "to_header": address if batch else ", ".join(to), "from": one["from"],
                    "subject": fill(one.get("subject")),
                    "text": fill(one.get("text")), "html": fill(one.get("html")),
                    "headers": {k: fill(v) for k, v in headers.items()},
                    "variables": {n[2:]: v for n, v in fields if n.startswith("v:")},
                    "options": {n[2:]: v for n, v in fields if n.startswith("o:")}, "message_id": message_id})
            self.posts.append({"to": to, "fields": [n for n, _ in fields]})
        return reply(200, {"id": message_id, "message": "Queued. Thank you."})
