"""Amazon SES (API v2): the tool's own list through ``SendBulkEmail``, SigV4-signed.

``POST /v2/email/outbound-bulk-emails`` with at most 50 destinations per call (the API's
limit). The content is an inline template (``DefaultContent.Template.TemplateContent``:
Subject, Html, Text) whose ``{{token}}`` is each entry's unsubscribe token
(``ReplacementEmailContent.ReplacementTemplate.ReplacementTemplateData``); each entry also
carries its own ``List-Unsubscribe`` / ``List-Unsubscribe-Post`` as ``ReplacementHeaders``.
SES renders templates with Handlebars, so any ``{{`` already in the post is neutralised
first (``&#123;&#123;`` in HTML, ``{ {`` in text and subject), or SES would drop the message.
``DefaultEmailTags`` name the delivery (``syndicate_delivery``) for event destinations.

Requests are signed with botocore's SigV4 signer (service ``ses``, the channel's region);
nothing here hand-writes AWS signatures. The call itself goes through the shared HTTP base
(timeouts, the one error mapping).

SES answers 200 with one result per entry, in order: ``SUCCESS`` is ``sent`` (with the SES
message id); ``MESSAGE_REJECTED`` and ``INVALID_PARAMETER`` / ``FAILED`` are ``failed`` for
that recipient; ``ACCOUNT_THROTTLED`` / ``ACCOUNT_DAILY_QUOTA_EXCEEDED`` leave it
``deferred`` and stop the send as RateLimited, ``TRANSIENT_FAILURE`` as Retryable, the
account- or configuration-wide statuses (suspended, sending paused, MAIL FROM not verified,
configuration set not found) as Permanent. See ``batching.py`` for the records and retries.

Errors of the whole call come as ``x-amzn-ErrorType`` plus ``{"message"}``:
``TooManyRequestsException`` (429) and ``LimitExceededException`` (400: the sending rate or
the daily quota) are RateLimited; signature and credential errors (403, ``Unrecognized
ClientException``, ``SignatureDoesNotMatch``, ``ExpiredTokenException``, ...) AuthExpired;
``MessageRejected``, ``AccountSuspendedException``, ``SendingPausedException``,
``MailFromDomainNotVerifiedException``, ``NotFoundException``, ``BadRequestException``
Permanent; 5xx Retryable.

Options: ``region`` (default ``us-east-1``), ``access_key_id_env`` / ``secret_access_key_env``
/ ``session_token_env`` (default ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``, the last only if set; an IAM user or role allowed ``ses:SendBulkEmail``
and, for ``syndicate check``, ``ses:GetAccount``), ``configuration_set``, ``api_base``
(default ``https://email.<region>.amazonaws.com``), ``batch_size``, ``timeout``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from syndicate.providers.base import Job, Permanent, RateLimited, Retryable
from syndicate.providers.batching import BatchAnswer, Content, DirectSendProvider, Outcome, Recipient
from syndicate.providers.http import ErrorInfo

SIGNING_NAME = "ses"
SENT = {"SUCCESS"}
RECIPIENT_FAILED = {"MESSAGE_REJECTED", "INVALID_PARAMETER", "FAILED"}
THROTTLED = {"ACCOUNT_THROTTLED", "ACCOUNT_DAILY_QUOTA_EXCEEDED"}
TRANSIENT = {"TRANSIENT_FAILURE"}
AUTH_CODES = frozenset({"UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch",
                        "IncompleteSignatureException", "ExpiredTokenException", "ExpiredToken",
                        "AccessDeniedException", "InvalidClientTokenId", "MissingAuthenticationTokenException"})
RATE_CODES = frozenset({"TooManyRequestsException", "LimitExceededException", "ThrottlingException", "Throttling"})
_TAG_VALUE = re.compile(r"[^A-Za-z0-9_-]")


class SesProvider(DirectSendProvider):
    name = "ses"
    service = "SES"
    batch_limit = 50
    token_placeholder = "{{token}}"
    auth_codes = AUTH_CODES
    rate_limit_codes = RATE_CODES

    def __init__(self, settings, channel_name, channel):
        super().__init__(settings, channel_name, channel)
        self.options.setdefault("access_key_id_env", "AWS_ACCESS_KEY_ID")
        self.options.setdefault("secret_access_key_env", "AWS_SECRET_ACCESS_KEY")
        if "session_token_env" not in self.options and os.environ.get("AWS_SESSION_TOKEN"):
            self.options["session_token_env"] = "AWS_SESSION_TOKEN"

    @property
    def region(self) -> str:
        return str(self.options.get("region") or "us-east-1")

    @property
    def api_base(self) -> str:
        base = self.options.get("api_base") or f"https://email.{self.region}.amazonaws.com"
        return str(base).rstrip("/")

    # -- signing ----------------------------------------------------------------------------------

    def credentials(self) -> Credentials:
        return Credentials(self.secret("access_key_id_env", "access key id"),
                           self.secret("secret_access_key_env", "secret access key"),
                           self.secret("session_token_env", "session token", required=False))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *, what: str):
        """One SigV4-signed call through the shared HTTP base."""
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        aws = AWSRequest(method=method, url=self.url(path), data=data, headers=headers)
        SigV4Auth(self.credentials(), SIGNING_NAME, self.region).add_auth(aws)
        return self.request(method, path, data=data or None, headers=dict(aws.headers.items()), what=what)

    # -- errors -----------------------------------------------------------------------------------

    def parse_error(self, resp) -> ErrorInfo:
        try:
            data = resp.json()
        except ValueError:
            data = None
        code = (resp.headers.get("x-amzn-ErrorType") or "").split(":", 1)[0] or None
        if isinstance(data, dict):
            code = code or str(data.get("__type") or data.get("code") or "").rsplit("#", 1)[-1] or None
            message = data.get("message") or data.get("Message")
            if message:
                return ErrorInfo(message=f"{code}: {message}" if code else str(message), code=code)
        info = super().parse_error(resp)
        return ErrorInfo(message=info.message, code=code or info.code)

    def is_auth_error(self, resp, info) -> bool:
        return resp.status_code == 403 or super().is_auth_error(resp, info)

    # -- the send ---------------------------------------------------------------------------------

    def content(self, job: Job) -> Content:
        payload = dict(job.payload)
        payload["html"] = (payload.get("html") or "").replace("{{", "&#123;&#123;")
        payload["text"] = (payload.get("text") or "").replace("{{", "{ {")
        payload["subject"] = (payload.get("subject") or "").replace("{{", "{ {")
        return super().content(dataclasses.replace(job, payload=payload))

    def send_batch(self, job: Job, content: Content, batch: list[Recipient]) -> BatchAnswer:
        body: dict[str, Any] = {
            "FromEmailAddress": content.sender,
            "DefaultContent": {"Template": {
                "TemplateContent": {"Subject": content.subject, "Html": content.html, "Text": content.text},
                "TemplateData": json.dumps({"token": ""}),
            }},
            "BulkEmailEntries": [
                {"Destination": {"ToAddresses": [r.address]},
                 "ReplacementEmailContent": {"ReplacementTemplate": {
                     "ReplacementTemplateData": json.dumps({"token": r.token})}},
                 "ReplacementHeaders": [{"Name": n, "Value": v} for n, v in r.headers.items()]}
                for r in batch
            ],
            "DefaultEmailTags": [{"Name": "syndicate_delivery", "Value": _TAG_VALUE.sub("_", job.key)[:256]}],
        }
        if content.reply_to:
            body["ReplyToAddresses"] = [content.reply_to]
        if self.options.get("configuration_set"):
            body["ConfigurationSetName"] = str(self.options["configuration_set"])
        resp = self.call("POST", "/v2/email/outbound-bulk-emails", body, what=f"sending a batch of {len(batch)}")
        results = self.json_of(resp).get("BulkEmailEntryResults") or []
        outcomes: dict[str, Outcome] = {}
        stop = None
        for r, result in zip(batch, results, strict=False):
            status = str(result.get("Status") or "")
            error = result.get("Error")
            if status in SENT:
                outcomes[r.address] = Outcome("sent", message_id=result.get("MessageId"))
            elif status in RECIPIENT_FAILED:
                outcomes[r.address] = Outcome("failed", error=self._message(f"{status}: {error or ''}"))
            else:
                outcomes[r.address] = Outcome("deferred", error=self._message(f"{status}: {error or ''}"))
                if stop is None:
                    message = self._message(f"{status}: {error or 'not sent'}")
                    if status in THROTTLED:
                        # The sending rate is per second; the daily quota rolls: try again soon.
                        wait = timedelta(seconds=1) if status == "ACCOUNT_THROTTLED" else timedelta(hours=1)
                        stop = RateLimited(message, reset_at=datetime.now(UTC) + wait, status=None)
                    elif status in TRANSIENT:
                        stop = Retryable(message)
                    else:
                        stop = Permanent(message)
        return BatchAnswer(outcomes, stop=stop, details={"entries": len(batch)})

    def check(self) -> str:
        account = self.json_of(self.call("GET", "/v2/email/account", what="reading the account"))
        quota = account.get("SendQuota") or {}
        access = "production access" if account.get("ProductionAccessEnabled") else "sandbox (verified recipients only)"
        sending = "sending enabled" if account.get("SendingEnabled") else "SENDING DISABLED"
        return (f"SES {self.region}: {sending}, {access}, quota {_num(quota.get('Max24HourSend'))}/24h "
                f"at {_num(quota.get('MaxSendRate'))}/s, {_num(quota.get('SentLast24Hours'))} sent in the last 24h")


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"
