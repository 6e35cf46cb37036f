"""Mailgun: the tool's own list through batch sending, ``POST /v3/{domain}/messages``.

One multipart call per batch of at most 1000 recipients (Mailgun's limit for batch
sending): a ``to`` field per recipient and ``recipient-variables``, a JSON object giving each
recipient its own values -- which is also what makes Mailgun send each recipient a separate
message instead of one message to all. The shared body holds ``%recipient.token%`` where the
unsubscribe token goes, and each of the RFC 8058 headers is sent as
``h:List-Unsubscribe: %recipient.list_unsubscribe%`` (Mailgun substitutes recipient
variables in headers too). ``v:syndicate-delivery`` names the delivery in events and
webhooks; Mailgun also writes it into the delivered message's ``X-Mailgun-Variables`` header,
where the reader can see it: it is the delivery's key, an opaque id that names no reader.
Tracking is off (``o:tracking``, ``o:tracking-clicks``, ``o:tracking-opens``).

Mailgun answers 200 ``{"id": "<...>", "message": "Queued. Thank you."}`` for the whole batch:
every recipient of it is then ``sent`` with that id. One address Mailgun's syntax check
refuses fails the whole call ("An error will be returned with 'parameter is not a valid
address' if the provided email address fails syntax checks in accordance with RFC5321,
RFC5322, RFC6854", documentation.mailgun.com send-http), with nothing sent: so an address
that cannot pass (a non-ASCII local part, ``email/addresses.py``) is ``failed`` before the
call, and on that answer the batch is split in halves and sent again until the refused
address is alone (``failed``); the others are sent once each. A 5xx is ``unknown`` for the
batch ("500: Internal Error on the Mailgun side", documentation.mailgun.com responses, does
not say nothing was queued). See ``batching.py`` for the records and the retry rules.

Options: ``domain`` (the sending domain, required), ``api_key_env`` (a Mailgun API key: API
Security -> API keys, or a domain's sending key), ``region`` (``us``, default, or ``eu``
for ``https://api.eu.mailgun.net``), ``api_base`` (overrides region), ``batch_size``,
``timeout``. Auth: HTTP Basic ``api:<key>``. Errors are ``{"message": ...}``; a bad key
answers 401 with the text "Forbidden".

``syndicate check`` reads the domain (``GET /v3/domains/{domain}``). A domain sending key may
not ("Domain Sending Keys are API keys that only allow sending messages via a POST call on
/messages and /messages.mime", documentation.mailgun.com api-reference/authentication), so on
401/403 the check posts to ``/messages`` a form with no ``to``: the key is checked before the
form, so a sending key gets Mailgun's 400 "'to' parameter is missing" (nothing can be sent
without a recipient) and a wrong key 401 "Forbidden".
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import re
from urllib.parse import quote

from syndicate.email.addresses import NotAscii, ascii_address
from syndicate.providers.base import AuthExpired, Job, OutcomeUnknown, Permanent, ProviderError
from syndicate.providers.batching import BatchAnswer, Content, DirectSendProvider, Outcome, Recipient
from syndicate.providers.http import ErrorInfo

log = logging.getLogger(__name__)

REGIONS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}
BAD_ADDRESS = re.compile(r"\bto'? parameter is not a valid address", re.IGNORECASE)  # a `to`, not `from`


def _variable(header: str) -> str:
    return header.lower().replace("-", "_")


class MailgunProvider(DirectSendProvider):
    name = "mailgun"
    service = "Mailgun"
    batch_limit = 1000
    token_placeholder = "%recipient.token%"
    server_errors_may_have_sent = True

    @property
    def api_base(self) -> str:
        if self.options.get("api_base"):
            return str(self.options["api_base"]).rstrip("/")
        region = str(self.options.get("region") or "us").lower()
        if region not in REGIONS:
            raise Permanent(f"Mailgun channel {self.channel_name!r}: region must be us or eu, got {region!r}")
        return REGIONS[region]

    @property
    def domain(self) -> str:
        domain = str(self.option("domain")).strip()
        if "/" in domain or not domain:
            raise Permanent(f"Mailgun channel {self.channel_name!r}: option domain {domain!r} is not a domain")
        return domain

    def auth_headers(self) -> dict[str, str]:
        key = self.secret("api_key_env", "API key")
        return {"Authorization": "Basic " + base64.b64encode(f"api:{key}".encode()).decode()}

    def is_auth_error(self, resp, info) -> bool:
        return resp.status_code in (401, 403)

    def parse_error(self, resp) -> ErrorInfo:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("message"):
            return ErrorInfo(message=str(data["message"]))
        return super().parse_error(resp)

    def send_batch(self, job: Job, content: Content, batch: list[Recipient]) -> BatchAnswer:
        refused: dict[str, Outcome] = {}
        sendable, original = [], {}
        for r in batch:
            try:
                wire = ascii_address(r.address)
            except NotAscii as exc:
                refused[r.address] = Outcome("failed", error=self._message(str(exc)))
                continue
            original[wire] = r.address
            sendable.append(dataclasses.replace(r, address=wire))
        answer = self._send_split(job, content, sendable) if sendable else BatchAnswer({})
        outcomes = {original.get(address, address): outcome for address, outcome in answer.outcomes.items()}
        return BatchAnswer({**outcomes, **refused}, stop=answer.stop, details=answer.details)

    def _send_split(self, job: Job, content: Content, part: list[Recipient]) -> BatchAnswer:
        """PART in one call; if Mailgun refuses an address in it (nothing was sent), each half
        again, down to the refused address alone (``failed``). What the calls of a split achieved
        stands when a later one fails: the rest are ``deferred`` (``unknown`` for a call whose
        answer was lost) and the error stops the send."""
        try:
            return self._post(job, content, part)
        except Permanent as exc:
            if not BAD_ADDRESS.search(str(exc)):
                raise
            if len(part) == 1:
                return BatchAnswer({part[0].address: Outcome("failed", code=exc.status, error=str(exc))},
                                   details={"refused": part[0].address})
            log.info("Mailgun refused an address in a batch of %d; sending it again in halves", len(part))
        middle = len(part) // 2
        halves = [part[:middle], part[middle:]]
        outcomes: dict[str, Outcome] = {}
        details: dict = {"split": len(part)}
        for n, half in enumerate(halves):
            try:
                answer = self._send_split(job, content, half)
            except ProviderError as exc:
                lost = "unknown" if isinstance(exc, OutcomeUnknown) else "deferred"
                outcomes |= {r.address: Outcome(lost, error=str(exc), code=exc.status) for r in half}
                outcomes |= {r.address: Outcome("deferred", error=str(exc)) for h in halves[n + 1:] for r in h}
                return BatchAnswer(outcomes, stop=exc, details=details)
            outcomes |= answer.outcomes
            if answer.stop is not None:
                outcomes |= {r.address: Outcome("deferred", error=str(answer.stop)) for h in halves[n + 1:] for r in h}
                return BatchAnswer(outcomes, stop=answer.stop, details=details)
        return BatchAnswer(outcomes, details=details)

    def _post(self, job: Job, content: Content, batch: list[Recipient]) -> BatchAnswer:
        fields: list[tuple[str, str]] = [("from", content.sender), ("subject", content.subject),
                                         ("text", content.text), ("html", content.html)]
        fields += [("to", r.address) for r in batch]
        if content.reply_to:
            fields.append(("h:Reply-To", content.reply_to))
        names = sorted({name for r in batch for name in r.headers})
        fields += [(f"h:{name}", f"%recipient.{_variable(name)}%") for name in names]
        variables = {r.address: {"token": r.token, **{_variable(n): r.headers.get(n, "") for n in names}}
                     for r in batch}
        fields += [("recipient-variables", json.dumps(variables)), ("v:syndicate-delivery", job.key),
                   ("o:tracking", "no"), ("o:tracking-clicks", "no"), ("o:tracking-opens", "no")]
        files = [(name, (None, value.encode("utf-8"))) for name, value in fields]
        resp = self.request("POST", f"/v3/{quote(self.domain, safe='')}/messages", files=files,
                            what=f"sending a batch of {len(batch)}")
        data = self.json_of(resp)
        message_id = data.get("id")
        return BatchAnswer({r.address: Outcome("sent", message_id=message_id) for r in batch},
                           details={"id": message_id, "recipients": len(batch)})

    def check(self) -> str:
        try:
            data = self.json_of(self.request("GET", f"/v3/domains/{quote(self.domain, safe='')}",
                                             what="reading the sending domain"))
        except AuthExpired as exc:
            if exc.status not in (401, 403):
                raise
            return self._check_sending_key()
        domain = data.get("domain") or {}
        return f"Mailgun domain {domain.get('name', self.domain)!r} ({domain.get('state', '?')}) on {self.api_base}"

    def _check_sending_key(self) -> str:
        """The key may be a domain sending key: post a form without ``to`` (it cannot send)."""
        try:
            self.request("POST", f"/v3/{quote(self.domain, safe='')}/messages",
                         files=[("from", (None, f"syndicate-check@{self.domain}".encode()))],
                         what="checking a sending key")
        except Permanent as exc:
            if exc.status == 400 and "'to'" in str(exc):
                return (f"Mailgun domain {self.domain!r} on {self.api_base}: a domain sending key (it may send, "
                        f"not read the domain)")
            raise
        raise Permanent(self._message("the check's empty form was accepted; expected 400 'to' parameter is missing"))
