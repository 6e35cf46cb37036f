"""Fake Postmark API: POST /email/batch, GET /server, GET /message-streams/{id}.

Auth: ``X-Postmark-Server-Token``; a missing or wrong one answers 401 ``{"ErrorCode": 10,
"Message": ...}``. A batch is a JSON array of at most 500 messages (more answers 422); each
message needs From, To, Subject and a body, and a stream that exists (``outbound``,
``broadcast``). The answer is 200 with one result per message, in order: ``ErrorCode`` 0 with
a ``MessageID``, 406 for an address in ``fake.inactive``, 1235 for an unknown stream, 300 for
a bad To. Accepted messages land in ``fake.delivered``. A 429 is Postmark's
``{"ErrorCode": 429, "Message": "Rate limit exceeded..."}``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from .server import FakeAPI, Fault, Reply, Request, reply, route

MAX_MESSAGES = 500
STREAMS = {"outbound": "Transactional", "broadcast": "Broadcasts"}


class PostmarkFake(FakeAPI):
    name = "postmark"
    TOKEN = "pm-fake-server-token-0001"
    SERVER = {"ID": 1234567, "Name": "Harbor Wellness Newsletter", "DeliveryType": "Live"}

    def reset_state(self) -> None:
        self.tokens = {self.TOKEN}
        self.delivered: list[dict[str, Any]] = []
        self.inactive: set[str] = set()

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
        if stream not in STREAMS:
            return self.error(422, f"The message stream '{stream}' was not found.", 1226)
        return reply(200, {"ID": stream, "ServerID": self.SERVER["ID"], "Name": stream.title(),
                           "MessageStreamType": STREAMS[stream]})

    @route("POST", r"/email/batch")
    def batch(self, req: Request) -> Reply:
        messages = req.json
        if not isinstance(messages, list):
            return self.error(422, "Invalid email request: the batch must be a JSON array.", 300)
        if len(messages) > MAX_MESSAGES:
            return self.error(422, f"Invalid email request: a batch may hold at most {MAX_MESSAGES} messages, "
                                   f"got {len(messages)}.", 300)
        results = []
        with self.lock:
            for message in messages:
                to = str(message.get("To") or "")
                stream = message.get("MessageStream") or "outbound"
                if "@" not in to:
                    results.append({"ErrorCode": 300, "Message": f"Invalid 'To' address: '{to}'."})
                elif not message.get("From"):
                    results.append({"ErrorCode": 300, "Message": "Invalid 'From' address: ''."})
                elif not message.get("Subject") or not (message.get("HtmlBody") or message.get("TextBody")):
                    results.append({"ErrorCode": 300, "Message": "Provide either email TextBody or HtmlBody or both."})
                elif stream not in STREAMS:
                    results.append({"ErrorCode": 1235, "Message": f"The message stream '{stream}' was not found."})
                elif to.lower() in self.inactive:
                    results.append({"ErrorCode": 406, "Message": f"You tried to send to recipient(s) that have been "
                                                                 f"marked as inactive. Found inactive addresses: "
                                                                 f"{to.lower()}. Inactive recipients are ones that "
                                                                 f"have generated a hard bounce or a spam complaint."})
                else:
                    message_id = str(uuid.uuid4())
                    headers = {h["Name"]: h["Value"] for h in message.get("Headers") or []}
                    self.delivered.append({"to": to, "from": message["From"], "subject": message["Subject"],
                                           "html": message.get("HtmlBody"), "text": message.get("TextBody"),
                                           "headers": headers, "stream": stream, "message_id": message_id,
                                           "reply_to": message.get("ReplyTo"), "metadata": message.get("Metadata"),
                                           "track_opens": message.get("TrackOpens"),
                                           "track_links": message.get("TrackLinks")})
                    results.append({"ErrorCode": 0, "Message": "OK", "MessageID": message_id, "To": to,
                                    "SubmittedAt": datetime.now(UTC).isoformat()})
        return reply(200, results)
