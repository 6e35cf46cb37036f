"""Fake Postmark API: POST /email/batch, GET /server, GET /message-streams/{id}.

Auth: ``X-Postmark-Server-Token``; a missing or wrong one answers 401 ``{"ErrorCode": 10,
"Message": ...}``. Accepted messages land in ``fake.delivered``. A 429 is Postmark's
``{"ErrorCode": 429, "Message": "Rate limit exceeded..."}``.

Strict: Postmark publishes no schema, so the fake encodes the documented rules, each with its
source below (``API`` = postmarkapp.com/developer/api/overview, ``EMAIL`` =
postmarkapp.com/developer/api/email-api). A rule about the whole call answers 422 (or 413)
with ``{"ErrorCode", "Message"}``; a rule about one message gives that message's result its
``ErrorCode`` in the 200 answer, as the batch endpoint does ("the response will contain an
array of objects, one for each message, in the order they were sent").

Streams (``fake.streams``): ``outbound`` (Transactional) and ``broadcast`` (Broadcasts, its
``UnsubscribeHandlingType`` ``Custom`` here: "manage unsubscribes on your own"). With
``Postmark`` handling, as on a stream left at Postmark's default, the fake does what Postmark
documents: it replaces the message's List-Unsubscribe headers with its own ("There is not a
way to edit the List-Unsubscribe headers when Postmark is managing your unsubscribes") and
appends its own unsubscribe link to the bodies.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from email.utils import getaddresses, parseaddr
from typing import Any

from .server import FakeAPI, Fault, Reply, Request, reply, route

MAX_MESSAGES = 500  # API, error code 410 "Too many batch messages": "up to 500 messages"
MAX_BATCH_BYTES = 50 * 1024 * 1024  # EMAIL, batch: "up to 50 MB payload size"; API: 413 Payload Too Large
MAX_RECIPIENTS = 50  # EMAIL, To/Cc/Bcc: "Limited to 50 recipients per message"
TRACK_LINKS = {"None", "HtmlAndText", "HtmlOnly", "TextOnly"}  # EMAIL, TrackLinks
# postmarkapp.com/support/article/1125-custom-metadata-faq: at most 10 fields, names up to 20
# characters, values up to 80.
METADATA_FIELDS, METADATA_NAME, METADATA_VALUE = 10, 20, 80
POSTMARK_UNSUBSCRIBE = "https://pm.example/unsubscribe/"


class PostmarkFake(FakeAPI):
    name = "postmark"
    TOKEN = "pm-fake-server-token-0001"
    SERVER = {"ID": 1234567, "Name": "Harbor Wellness Newsletter", "DeliveryType": "Live"}

    def reset_state(self) -> None:
        self.tokens = {self.TOKEN}
        self.delivered: list[dict[str, Any]] = []
        self.inactive: set[str] = set()
        self.account_refusal: int | None = None  # 405/412/413: every message refused with it
        self.maintenance = 0  # the next N batch calls answer ErrorCode 100 (nothing done)
        self.short_answer = False  # the next batch's answer leaves out its last result
        self.streams = {"outbound": {"type": "Transactional", "unsubscribe": "None"},
                        "broadcast": {"type": "Broadcasts", "unsubscribe": "Custom"}}

    def options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "server_token_env": "SYN_FAKE_POSTMARK_TOKEN"}

    def env(self) -> dict[str, str]:
        return {"SYN_FAKE_POSTMARK_TOKEN": self.TOKEN}

    def revoke(self) -> None:
        with self.lock:
            self.tokens.clear()

    def error(self, status: int, message: str, code: Any = None) -> Reply:
        return reply(status, {"ErrorCode": code if isinstance(code, int) else 0, "Message": message})

    def fault_reply(self, status: int, fault: Fault) -> Reply:
        if status == 401:
            return self.error(401, "Request does not contain a valid Server token.", 10)
        if status == 400:
            return self.error(422, "Invalid 'From' address: 'news@harborwellness.example'.", 300)
        return super().fault_reply(status, fault)

    def rate_limited(self, retry_after: int) -> Reply:
        return self.error(429, "Rate limit exceeded. Please slow down your requests.", 429)

    def authorize(self, req: Request) -> Reply | None:
        if req.header("x-postmark-server-token") in self.tokens:
            return None
        return self.error(401, "Request does not contain a valid Server token.", 10)

    @route("GET", r"/server")
    def server(self, req: Request) -> Reply:
        return reply(200, dict(self.SERVER))

    @route("GET", r"/message-streams/(?P<stream>[^/]+)")
    def message_stream(self, req: Request, stream: str) -> Reply:
        if stream not in self.streams:
            return self.error(422, f"The message stream '{stream}' was not found.", 1226)
        config = self.streams[stream]
        return reply(200, {"ID": stream, "ServerID": self.SERVER["ID"], "Name": stream.title(),
                           "MessageStreamType": config["type"],
                           "SubscriptionManagementConfiguration": {"UnsubscribeHandlingType": config["unsubscribe"]}})

    def refusal(self, message: dict[str, Any]) -> tuple[int, str] | None:
        """The per-message ErrorCode and Message Postmark gives MESSAGE, or None if it is valid."""
        if not isinstance(message, dict):
            return 402, "Received invalid JSON input."  # API, 402 Invalid JSON
        sender = message.get("From")
        if not isinstance(sender, str) or "@" not in parseaddr(sender)[1]:
            return 300, f"Invalid 'From' address: '{sender or ''}'."  # API, 300 Invalid email request
        to = [a for _, a in getaddresses([str(message.get(k) or "") for k in ("To", "Cc", "Bcc")]) if a]
        if not message.get("To") or not to or any("@" not in a or " " in a for a in to):
            return 300, f"Invalid 'To' address: '{message.get('To') or ''}'."
        if len(to) > MAX_RECIPIENTS:
            return 300, f"Invalid 'To' address: more than {MAX_RECIPIENTS} recipients."
        if not (message.get("HtmlBody") or message.get("TextBody")):
            return 300, "Provide either email TextBody or HtmlBody or both."  # EMAIL, HtmlBody/TextBody
        headers = message.get("Headers") or []
        if not isinstance(headers, list) or not all(isinstance(h, dict) and isinstance(h.get("Name"), str)
                                                    and h["Name"] and isinstance(h.get("Value"), str)
                                                    for h in headers):
            return 300, "Invalid 'Headers': a list of {Name, Value} objects is expected."  # EMAIL, Headers
        if message.get("TrackLinks", "None") not in TRACK_LINKS:
            return 300, f"Invalid 'TrackLinks' value: '{message.get('TrackLinks')}'."
        if not isinstance(message.get("TrackOpens", False), bool):
            return 300, "Invalid 'TrackOpens' value: a boolean is expected."
        metadata = message.get("Metadata") or {}
        if not isinstance(metadata, dict) or len(metadata) > METADATA_FIELDS or any(
                len(str(k)) > METADATA_NAME or not isinstance(v, str) or len(v) > METADATA_VALUE
                for k, v in metadata.items()):
            return 300, "Invalid metadata: at most 10 fields, names up to 20 and values up to 80 characters."
        stream = message.get("MessageStream") or "outbound"  # EMAIL: "If not provided, ... outbound"
        if stream not in self.streams:
            return 1235, f"The message stream '{stream}' was not found."
        return None

    @route("POST", r"/email/batch")
    def batch(self, req: Request) -> Reply:
        # API, 409 JSON required: "Your HTTP request does not have the Accept and Content-Type
        # headers set to application/json."
        if not all("application/json" in (req.header(h) or "") for h in ("accept", "content-type")):
            return self.error(422, "JSON required: set Accept and Content-Type to application/json.", 409)
        if self.maintenance > 0:  # API, error code 100 "Maintenance"
            self.maintenance -= 1
            return self.error(503, "Maintenance: the Postmark API is offline for maintenance.", 100)
        if len(req.body) > MAX_BATCH_BYTES:
            return self.error(413, "Payload Too Large: the batch exceeds 50 MB.", 413)
        try:
            messages = json.loads(req.body)
        except ValueError:
            return self.error(422, "Received invalid JSON input.", 402)
        if not isinstance(messages, list):
            return self.error(422, "Received invalid JSON input: the batch must be an array.", 402)
        if len(messages) > MAX_MESSAGES:
            return self.error(422, f"Too many batch messages: {len(messages)}; the limit is {MAX_MESSAGES}.", 410)
        results = []
        with self.lock:
            for message in messages:
                refused = self.refusal(message)
                to = str(message.get("To") or "") if isinstance(message, dict) else ""
                if refused is not None:
                    results.append({"ErrorCode": refused[0], "Message": refused[1]})
                elif self.account_refusal is not None:  # API, error codes 405/412/413
                    text = {405: "Not allowed to send: you have run out of credits.",
                            412: "Account is pending approval.", 413: "Account may not send."}
                    results.append({"ErrorCode": self.account_refusal, "Message": text[self.account_refusal]})
                elif to.lower() in self.inactive:
                    results.append({"ErrorCode": 406, "Message": f"You tried to send to recipient(s) that have been "
                                                                 f"marked as inactive. Found inactive addresses: "
                                                                 f"{to.lower()}. Inactive recipients are ones that "
                                                                 f"have generated a hard bounce or a spam complaint."})
                else:
                    results.append(self._deliver(message, to))
            if self.short_answer and results:
                self.short_answer = False
                results.pop()
        return reply(200, results)

    def _deliver(self, message: dict[str, Any], to: str) -> dict[str, Any]:
        message_id = str(uuid.uuid4())
        stream = message.get("MessageStream") or "outbound"
        headers = {h["Name"]: h["Value"] for h in message.get("Headers") or []}
        html, text = message.get("HtmlBody"), message.get("TextBody")
        if self.streams[stream]["unsubscribe"] == "Postmark":  # Postmark's own link and headers win
            link = POSTMARK_UNSUBSCRIBE + message_id
            headers.update({"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
            html = html and html + f'<p><a href="{link}">Unsubscribe</a></p>'
            text = text and text + f"\nUnsubscribe: {link}\n"
        self.delivered.append({"to": to, "from": message["From"], "subject": message.get("Subject"),
                               "html": html, "text": text, "headers": headers, "stream": stream,
                               "message_id": message_id, "reply_to": message.get("ReplyTo"),
                               "metadata": message.get("Metadata"), "track_opens": message.get("TrackOpens"),
                               "track_links": message.get("TrackLinks")})
        return {"ErrorCode": 0, "Message": "OK", "MessageID": message_id, "To": to,
                "SubmittedAt": datetime.now(UTC).isoformat()}
