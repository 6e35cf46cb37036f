"""Mailgun: the tool's own list through batch sending, ``POST /v3/{domain}/messages``.

One multipart call per batch of at most 1000 recipients (Mailgun's limit for batch
sending): a ``to`` field per recipient and ``recipient-variables``, a JSON object giving each
recipient its own values -- which is also what makes Mailgun send each recipient a separate
message instead of one message to all. The shared body holds ``%recipient.token%`` where the
unsubscribe token goes, and each of the RFC 8058 headers is sent as
``h:List-Unsubscribe: %recipient.list_unsubscribe%`` (Mailgun substitutes recipient
variables in headers too). ``v:syndicate-delivery`` names the delivery in events and
webhooks; tracking is off (``o:tracking``, ``o:tracking-clicks``, ``o:tracking-opens``).

Mailgun answers 200 ``{"id": "<...>", "message": "Queued. Thank you."}`` for the whole batch:
every recipient of it is then ``sent`` with that id. See ``batching.py`` for the records and
the retry rules.

Options: ``domain`` (the sending domain, required), ``api_key_env`` (a Mailgun API key: API
Security -> API keys, or a domain's sending key), ``region`` (``us``, default, or ``eu``
for ``https://api.eu.mailgun.net``), ``api_base`` (overrides region), ``batch_size``,
``timeout``. Auth: HTTP Basic ``api:<key>``. Errors are ``{"message": ...}``; a bad key
answers 401 with the text "Forbidden".
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

from syndicate.providers.base import Job, Permanent
from syndicate.providers.batching import BatchAnswer, Content, DirectSendProvider, Outcome, Recipient
from syndicate.providers.http import ErrorInfo

REGIONS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}


def _variable(header: str) -> str:
    return header.lower().replace("-", "_")


class MailgunProvider(DirectSendProvider):
    name = "mailgun"
    service = "Mailgun"
    batch_limit = 1000
    token_placeholder = "%recipient.token%"

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
        data = self.json_of(self.request("GET", f"/v3/domains/{quote(self.domain, safe='')}",
                                         what="reading the sending domain"))
        domain = data.get("domain") or {}
        return f"Mailgun domain {domain.get('name', self.domain)!r} ({domain.get('state', '?')}) on {self.api_base}"
