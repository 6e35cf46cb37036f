"""Postmark: the tool's own list through ``POST /email/batch``, one whole message per recipient.

Each message of a batch is complete (From, To, Subject, HtmlBody, TextBody, ReplyTo, the
recipient's own ``List-Unsubscribe`` headers and unsubscribe link, ``Metadata`` naming the
delivery) and goes to the message stream of option ``message_stream`` (default
``broadcast``: Postmark requires newsletters to use a Broadcasts stream). At most 500
messages and 50 MB per call (Postmark's limits); open and link tracking off (privacy by
default).

The stream must be set to "Manage unsubscribes on your own" (API:
``SubscriptionManagementConfiguration.UnsubscribeHandlingType`` ``Custom``). By default
Postmark manages a Broadcasts stream's unsubscribes: it appends its own unsubscribe link to
every message and sets its own ``List-Unsubscribe`` headers ("There is not a way to edit the
List-Unsubscribe headers when Postmark is managing your unsubscribes", Postmark support,
"How to include a List-Unsubscribe header"), so the reader's one-click unsubscribe reaches
Postmark's suppression list, not ours, and the message carries two unsubscribe links. The
option is enabled by Postmark support, then per stream (Settings -> Subscription
Management). ``syndicate check`` reads the stream and warns unless it is ``Custom``.

Postmark answers 200 with one result per message, in order: ``ErrorCode`` 0 is ``sent``
(with its ``MessageID``); 406 (an inactive recipient: hard bounce, spam complaint or
unsubscribed at Postmark) and 300 about the ``To`` address are ``failed`` for that recipient
only; 405/412/413 (the account may not send: out of credits, pending, or refused) stop the
send as AuthExpired (a person must fix the account); any other code (the stream does not
exist, ...) leaves the message ``deferred`` and stops the send with that error. A message
the 200 answer leaves out is ``unknown`` (the call was accepted). A 5xx to the batch call is
``unknown`` for the whole batch: "500 -- Internal Server Error ... In most cases the message
is lost" (postmarkapp.com/developer/api/overview) is not "always"; only the maintenance
answer (``ErrorCode`` 100) is retried. See ``batching.py`` for the records and retry rules.

Options: ``server_token_env`` (the Server API token: Servers -> your server -> API Tokens),
``message_stream``, ``api_base`` (default ``https://api.postmarkapp.com``), ``batch_size``,
``timeout``. Auth: ``X-Postmark-Server-Token``. Errors are ``{"ErrorCode", "Message"}``
(10: bad token); 429 when rate limited.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from syndicate.providers.base import AuthExpired, Job, Permanent, RateLimited, Retryable
from syndicate.providers.batching import BatchAnswer, Content, DirectSendProvider, Outcome, Recipient
from syndicate.providers.http import ErrorInfo

MAX_BATCH_BYTES = 45 * 1024 * 1024  # Postmark's cap is 50 MB per batch call; keep a margin
RECIPIENT_CODES = {406}  # refused for this recipient only: recorded failed, never retried
TRANSIENT_CODES = {100, 429}  # maintenance, throttled: deferred
# postmarkapp.com/developer/api/overview#error-codes: 405 "Not allowed to send" (out of
# credits), 412 "Account is pending", 413 "Account may not send": a person must fix the account.
ACCOUNT_CODES = {405, 412, 413}
MAINTENANCE = 100  # "Maintenance: the Postmark API is offline for maintenance": nothing was done


class PostmarkProvider(DirectSendProvider):
    name = "postmark"
    service = "Postmark"
    default_api_base = "https://api.postmarkapp.com"
    batch_limit = 500
    auth_codes = frozenset({"10"} | {str(code) for code in ACCOUNT_CODES})
    rate_limit_codes = frozenset({"429"})
    server_errors_may_have_sent = True

    def auth_headers(self) -> dict[str, str]:
        return {"X-Postmark-Server-Token": self.secret("server_token_env", "Server API token"),
                "Accept": "application/json"}

    def is_auth_error(self, resp, info) -> bool:
        return resp.status_code in (401, 403) or super().is_auth_error(resp, info)

    def parse_error(self, resp) -> ErrorInfo:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and "Message" in data:
            return ErrorInfo(message=str(data["Message"]), code=str(data.get("ErrorCode")))
        return super().parse_error(resp)

    def refused_before_sending(self, resp) -> bool:
        return self.parse_error(resp).code == str(MAINTENANCE)

    @property
    def stream(self) -> str:
        return str(self.options.get("message_stream") or "broadcast")

    def batches(self, content: Content, recipients: list[str]) -> Iterator[list[str]]:
        """At most ``batch_size`` messages and MAX_BATCH_BYTES per call (each message is whole)."""
        per_message = len(json.dumps([content.html, content.text, content.subject])) + 2048
        by_bytes = max(1, MAX_BATCH_BYTES // per_message)
        size = min(self.batch_size, by_bytes)
        for start in range(0, len(recipients), size):
            yield recipients[start:start + size]

    def send_batch(self, job: Job, content: Content, batch: list[Recipient]) -> BatchAnswer:
        messages = []
        for r in batch:
            message = {
                "From": content.sender, "To": r.address, "Subject": content.subject,
                "HtmlBody": content.html.replace(self.token_placeholder, r.token),
                "TextBody": content.text.replace(self.token_placeholder, r.token),
                "Headers": [{"Name": name, "Value": value} for name, value in r.headers.items()],
                "MessageStream": self.stream, "TrackOpens": False, "TrackLinks": "None",
                "Metadata": {"syndicate_delivery": job.key},
            }
            if content.reply_to:
                message["ReplyTo"] = content.reply_to
            messages.append(message)
        resp = self.request("POST", "/email/batch", json=messages, what=f"sending a batch of {len(batch)}")
        results = resp.json() if resp.content else []
        if not isinstance(results, list):
            results = []
        outcomes: dict[str, Outcome] = {}
        stop = None
        for n, r in enumerate(batch):
            result = results[n] if n < len(results) else None
            if not isinstance(result, dict) or not isinstance(result.get("ErrorCode", 0), int):
                # The call was accepted (200) but says nothing we can read about this message.
                outcomes[r.address] = Outcome("unknown", error=self._message("accepted batch without a result "
                                                                             "for this message"))
                continue
            code, text = result.get("ErrorCode") or 0, str(result.get("Message", ""))
            if code == 0:
                outcomes[r.address] = Outcome("sent", message_id=result.get("MessageID"))
            elif code in RECIPIENT_CODES or (code == 300 and re.search(r"'(To|Cc|Bcc)'", text)):
                outcomes[r.address] = Outcome("failed", code=code, error=self._message(text))
            else:
                outcomes[r.address] = Outcome("deferred", code=code, error=self._message(text))
                stop = stop or _stop(self._message(f"ErrorCode {code}: {text}"), code)
        return BatchAnswer(outcomes, stop=stop, details={"messages": len(batch)})

    def check(self) -> str:
        server = self.json_of(self.request("GET", "/server", what="reading the server"))
        line = f"Postmark server {server.get('Name', '?')!r} (ID {server.get('ID', '?')})"
        stream = self.json_of(self.request("GET", f"/message-streams/{self.stream}",
                                           what="reading the message stream"))
        kind = stream.get("MessageStreamType", "?")
        handling = (stream.get("SubscriptionManagementConfiguration") or {}).get("UnsubscribeHandlingType", "?")
        line += f"; stream {self.stream!r} ({kind}, unsubscribes: {handling})"
        if kind != "Broadcasts":
            line += ("; WARNING: newsletters must go through a Broadcasts stream (Postmark's terms); set "
                     "option message_stream")
        elif handling != "Custom":
            line += ("; WARNING: Postmark manages this stream's unsubscribes: it replaces our List-Unsubscribe "
                     "headers and adds its own link, so unsubscribes reach Postmark's suppressions, not the "
                     "subscriber list; ask Postmark support for \"Manage unsubscribes on your own\" and enable it "
                     "on the stream")
        return line


def _stop(message: str, code: int):
    """The error that stops the send after a message was refused with CODE (not per recipient)."""
    if code == 429:
        return RateLimited(message, status=None)
    if code in TRANSIENT_CODES:
        return Retryable(message)
    if code in ACCOUNT_CODES:
        return AuthExpired(message)
    return Permanent(message)

