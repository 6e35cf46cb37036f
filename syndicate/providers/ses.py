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

Credentials: the variables named by ``access_key_id_env`` / ``secret_access_key_env`` (and
``session_token_env``) when the channel names them; otherwise botocore's default credential
chain (``botocore.session.Session().get_credentials()``): the ``AWS_*`` environment
variables, the shared credentials and config files (``AWS_PROFILE``, SSO, assume-role), the
ECS/EKS container role and the EC2 instance profile. A role's temporary credentials are
refreshed by botocore before they expire (``get_frozen_credentials`` on every call).

Addresses go out in 7-bit ASCII, as SES requires (``email/addresses.py``): the domain in
Punycode, a non-ASCII display name RFC 2047 encoded; a recipient whose local part is not
ASCII is ``failed`` before the call instead of failing the whole batch.

SES answers 200 with one result per entry, in order: ``SUCCESS`` is ``sent`` (with the SES
message id); ``MESSAGE_REJECTED`` and ``INVALID_PARAMETER`` / ``FAILED`` are ``failed`` for
that recipient; ``ACCOUNT_THROTTLED`` / ``ACCOUNT_DAILY_QUOTA_EXCEEDED`` leave it
``deferred`` and stop the send as RateLimited, ``TRANSIENT_FAILURE`` as Retryable, the
account- or configuration-wide statuses (suspended, sending paused, MAIL FROM not verified,
configuration set not found) as Permanent. An entry the 200 answer leaves out is ``unknown``.
A 5xx (``InternalFailure``, ``ServiceUnavailable``) is ``unknown`` for the whole batch: it
does not say that nothing was sent. See ``batching.py`` for the records and retries.

Errors of the whole call come as ``x-amzn-ErrorType`` plus ``{"message"}``:
``TooManyRequestsException`` (429) and ``LimitExceededException`` (400: the sending rate or
the daily quota: reset in an hour, SES sends no reset header) are RateLimited; signature and credential errors (403, ``Unrecognized
ClientException``, ``SignatureDoesNotMatch``, ``ExpiredTokenException``, ...) AuthExpired;
``MessageRejected``, ``AccountSuspendedException``, ``SendingPausedException``,
``MailFromDomainNotVerifiedException``, ``NotFoundException``, ``BadRequestException``
Permanent; 5xx Retryable.

Options: ``region`` (default ``us-east-1``), ``access_key_id_env`` / ``secret_access_key_env``
/ ``session_token_env`` (unset: botocore's default chain; an IAM user or role allowed
``ses:SendBulkEmail`` and, for ``syndicate check``, ``ses:GetAccount``),
``configuration_set``, ``api_base`` (default ``https://email.<region>.amazonaws.com``),
``batch_size``, ``timeout``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError

from syndicate.email.addresses import NotAscii, ascii_address, ascii_sender
from syndicate.providers.base import AuthExpired, Job, Permanent, RateLimited, Retryable
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
KEY_OPTIONS = ("access_key_id_env", "secret_access_key_env")
_TAG_VALUE = re.compile(r"[^A-Za-z0-9_-]")


class SesProvider(DirectSendProvider):
    name = "ses"
    service = "SES"
    batch_limit = 50
    token_placeholder = "{{token}}"
    auth_codes = AUTH_CODES
    rate_limit_codes = RATE_CODES
    server_errors_may_have_sent = True
    _chain = None  # botocore's default credential chain, resolved once per channel

    @property
    def region(self) -> str:
        return str(self.options.get("region") or "us-east-1")

    @property
    def api_base(self) -> str:
        base = self.options.get("api_base") or f"https://email.{self.region}.amazonaws.com"
        return str(base).rstrip("/")

    # -- signing ----------------------------------------------------------------------------------

    def credentials(self) -> Credentials:
        if any(self.options.get(option) for option in KEY_OPTIONS):
            return Credentials(self.secret("access_key_id_env", "access key id"),
                               self.secret("secret_access_key_env", "secret access key"),
                               self.secret("session_token_env", "session token", required=False))
        return self._default_chain()

    def _default_chain(self) -> Credentials:
        """botocore's own resolver (env, shared files, SSO, container role, instance profile):
        nothing here reads AWS credentials by hand. Frozen per call, refreshed when near expiry."""
        label = f"SES channel {self.channel_name!r}"
        try:
            if self._chain is None:
                self._chain = botocore.session.Session().get_credentials()
            frozen = self._chain.get_frozen_credentials() if self._chain is not None else None
        except BotoCoreError as exc:
            raise AuthExpired(self._message(f"{label}: botocore could not get credentials "
                                            f"({type(exc).__name__})")) from None
        if frozen is None or not frozen.access_key:
            raise AuthExpired(f"{label}: no AWS credentials found by botocore's default chain (AWS_* variables, "
                              f"~/.aws files, container role, instance profile); or set options access_key_id_env "
                              f"and secret_access_key_env to the names of the variables holding a key")
        self._remember(frozen.secret_key)
        self._remember(frozen.token)
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

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

    def rate_limit_reset(self, resp, info: ErrorInfo) -> datetime | None:
        # LimitExceededException covers the daily quota too ("Daily message quota exceeded"),
        # and SES sends no reset header: wait an hour rather than the short retry backoff.
        if info.code == "LimitExceededException" and "quota" in info.message.lower():
            return datetime.now(UTC) + timedelta(hours=1)
        return super().rate_limit_reset(resp, info)

    # -- the send ---------------------------------------------------------------------------------

    def content(self, job: Job) -> Content:
        payload = dict(job.payload)
        payload["html"] = (payload.get("html") or "").replace("{{", "&#123;&#123;")
        payload["text"] = (payload.get("text") or "").replace("{{", "{ {")
        payload["subject"] = (payload.get("subject") or "").replace("{{", "{ {")
        return super().content(dataclasses.replace(job, payload=payload))

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
        if not sendable:
            return BatchAnswer(refused)
        answer = self._send_bulk(job, content, sendable)
        outcomes = {original.get(address, address): outcome for address, outcome in answer.outcomes.items()}
        return BatchAnswer({**outcomes, **refused}, stop=answer.stop, details=answer.details)

    def _send_bulk(self, job: Job, content: Content, batch: list[Recipient]) -> BatchAnswer:
        try:
            sender = ascii_sender(content.sender)
            reply_to = ascii_sender(content.reply_to) if content.reply_to else None
        except NotAscii as exc:
            raise Permanent(self._message(f"the From or Reply-To address: {exc}")) from None
        body: dict[str, Any] = {
            "FromEmailAddress": sender,
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
        if reply_to:
            body["ReplyToAddresses"] = [reply_to]
        if self.options.get("configuration_set"):
            body["ConfigurationSetName"] = str(self.options["configuration_set"])
        resp = self.call("POST", "/v2/email/outbound-bulk-emails", body, what=f"sending a batch of {len(batch)}")
        results = self.json_of(resp).get("BulkEmailEntryResults") or []
        outcomes: dict[str, Outcome] = {}
        stop = None
        for n, r in enumerate(batch):
            result = results[n] if n < len(results) else None
            if not isinstance(result, dict) or not result.get("Status"):
                # The call was accepted (200) but says nothing we can read about this entry.
                outcomes[r.address] = Outcome("unknown", error=self._message("accepted batch without a result "
                                                                             "for this destination"))
                continue
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
