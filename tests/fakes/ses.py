"""Fake Amazon SES API v2: SendBulkEmail and GetAccount, with real SigV4 verification.

Every request must carry an ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
Signature=...`` header and ``X-Amz-Date``; the fake recomputes the signature with botocore's
SigV4 signer from the secret key it knows and answers 403 ``SignatureDoesNotMatch`` when it
differs (``UnrecognizedClientException`` for an unknown access key, ``InvalidSignatureException``
for a wrong region or service in the scope, "Signature expired" past 5 minutes), as SES does.
Errors are ``x-amzn-ErrorType: <Code>`` plus ``{"message": ...}``; a 429 is
``TooManyRequestsException``.

Strict: every request is checked against botocore's own SESv2 service model (the one the AWS
SDKs are generated from): the JSON body is mapped back to the operation's parameters and
validated with ``botocore.validate.ParamValidator`` (required members, types, unknown
members, minimums), plus the model's ``max``, ``pattern`` and ``enum`` constraints, which the
SDK leaves to the service. A violation answers as SES does: 400, ``x-amzn-ErrorType:
BadRequestException`` and ``{"message": "1 validation error detected: ..."}``. So are the
documented rules the model states in prose: a destination's local part must be 7-bit ASCII
and its domain Punycode (model, ``Destination``: "Amazon SES does not support the SMTPUTF8
extension"), and so must the From and Reply-To addresses, with a non-ASCII display name in
RFC 2047 encoded-words (SES developer guide, "Email format": "you must encode ... using MIME
encoded-word syntax").

``POST /v2/email/outbound-bulk-emails``: at most 50 entries (the model's ``max`` on
``BulkEmailEntries`` is not set; the 50 is SendBulkEmail's documented quota), a verified
``FromEmailAddress`` (else 400 MessageRejected), an inline template. Each entry's
template data (over the default) fills ``{{name}}`` in subject, HTML and text (a ``{{`` whose
name has no value makes the entry fail, as SES's renderer does); its ReplacementHeaders are
its own. Results come back one per entry in order: SUCCESS with a MessageId (delivered into
``fake.delivered``), MESSAGE_REJECTED for an address in ``fake.rejected``, or
ACCOUNT_THROTTLED for the next ``fake.throttle_entries`` entries.

Temporary credentials, as a role gets them: ``GET /ecs/credentials`` (unauthenticated, the
shape of the ECS/EKS container credentials endpoint botocore reads through
``AWS_CONTAINER_CREDENTIALS_FULL_URI``) issues a fresh key, secret and session token, expiring
in ``fake.credential_lifetime``; a request signed with such a key must carry (and sign) its
``X-Amz-Security-Token``.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from email.header import decode_header
from email.utils import parseaddr
from functools import cache
from typing import Any
from urllib.parse import urlencode

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.validate import ParamValidator

from .server import FakeAPI, Fault, Reply, Request, reply, route

MAX_ENTRIES = 50
VERIFIED = {"news@harborwellness.example", "harborwellness.example"}
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<cred>[^,]+), ?SignedHeaders=(?P<signed>[^,]+), ?"
                   r"Signature=(?P<sig>[0-9a-f]+)")
_TAG = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


@cache
def operation(name: str):
    """The SESv2 operation model from botocore's bundled service model (no network)."""
    return botocore.session.get_session().get_service_model("sesv2").operation_model(name)


def model_problems(name: str, body: dict[str, Any]) -> list[str]:
    """Every way BODY (a rest-json body) breaks operation NAME's input shape."""
    shape = operation(name).input_shape
    report = ParamValidator().validate(body, shape)
    problems = [line.strip() for line in report.generate_report().splitlines()] if report.has_errors() else []
    return problems + _constraints(shape, body, "")


def _constraints(shape, value, where: str) -> list[str]:
    """The model's max / pattern / enum, which botocore leaves to the service."""
    meta, out = shape.metadata, []
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                out += _constraints(shape.members[key], item, f"{where}.{key}" if where else key)
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"Value at '{where}' failed to satisfy constraint: Member must have length less than or "
                       f"equal to {meta['max']}")
        for n, item in enumerate(value):
            out += _constraints(shape.member, item, f"{where}[{n}]")
    elif shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"Value at '{where}' failed to satisfy constraint: Member must have length less than or "
                       f"equal to {meta['max']}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"].strip("^$"), value):
            out.append(f"Value at '{where}' failed to satisfy constraint: Member must satisfy regular expression "
                       f"pattern: {meta['pattern']}")
        if shape.enum and value not in shape.enum:
            out.append(f"Value '{value}' at '{where}' failed to satisfy constraint: Member must satisfy enum value "
                       f"set: [{', '.join(shape.enum)}]")
    return out


def ascii_problems(label: str, value: str) -> list[str]:
    """The SES rules on addresses: 7-bit ASCII, the display name encoded-words if not ASCII."""
    if not value.isascii():
        return [f"{label}: the address must be 7-bit ASCII (non-ASCII display names as RFC 2047 encoded-words, "
                f"domains in Punycode): {value!r}"]
    name, address = parseaddr(value)
    if "@" not in address:
        return [f"{label}: {value!r} is not an email address"]
    if "=?" in name:
        try:
            decode_header(name)
        except ValueError:
            return [f"{label}: malformed encoded-word in {value!r}"]
    return []


class SesFake(FakeAPI):
    name = "ses"
    ACCESS_KEY = "AKIAFAKESES000000001"
    SECRET_KEY = "fake/secret/key/for/ses/0123456789abcdef"
    REGION = "eu-west-1"

    def reset_state(self) -> None:
        self.keys = {self.ACCESS_KEY: self.SECRET_KEY}
        self.delivered: list[dict[str, Any]] = []
        self.rejected: set[str] = set()
        self.throttle_entries = 0
        self.calls_accepted = 0
        self.session_tokens: dict[str, str] = {}  # temporary key id -> its session token
        self.credentials_issued = 0
        self.credential_lifetime = timedelta(hours=6)
        self.daily_quota_exceeded = False  # 400 LimitExceededException "Daily message quota exceeded."
        self.short_answer = False  # the next accepted call's answer leaves out its last result
        operation("SendBulkEmail")  # strict from the start: the model must load

    def options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "region": self.REGION, "access_key_id_env": "SYN_FAKE_SES_KEY_ID",
                "secret_access_key_env": "SYN_FAKE_SES_SECRET"}

    def env(self) -> dict[str, str]:
        return {"SYN_FAKE_SES_KEY_ID": self.ACCESS_KEY, "SYN_FAKE_SES_SECRET": self.SECRET_KEY}

    def revoke(self) -> None:
        with self.lock:
            self.keys.clear()

    # -- shapes ---------------------------------------------------------------------------------

    def error(self, status: int, message: str, code: Any = None) -> Reply:
        answer = reply(status, {"message": message})
        answer.headers["x-amzn-ErrorType"] = f"{code or 'BadRequestException'}:http://internal.amazon.com/coral/"
        answer.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return answer

    def fault_reply(self, status: int, fault: Fault) -> Reply:
        if status == 401 or status == 403:
            return self.error(403, "The security token included in the request is invalid.",
                              "UnrecognizedClientException")
        if status == 400:
            return self.error(400, "Email address is not verified. The following identities failed the check "
                                   "in region EU-WEST-1: news@harborwellness.example", "MessageRejected")
        if status >= 500:
            return self.error(status, "Internal failure (injected fault)", "InternalFailure")
        return super().fault_reply(status, fault)

    def rate_limited(self, retry_after: int) -> Reply:
        return self.error(429, "Too Many Requests", "TooManyRequestsException")

    def authorize(self, req: Request) -> Reply | None:
        match = _AUTH.fullmatch(req.header("authorization") or "")
        stamp = req.header("x-amz-date") or ""
        if not match or not stamp:
            return self.error(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
        key_id, day, region, service, terminator = (match["cred"].split("/") + [""] * 5)[:5]
        secret = self.keys.get(key_id)
        if secret is None:
            return self.error(403, "The security token included in the request is invalid.",
                              "UnrecognizedClientException")
        token = self.session_tokens.get(key_id)
        if token is not None and (req.header("x-amz-security-token") != token
                                  or "x-amz-security-token" not in match["signed"].split(";")):
            return self.error(403, "The security token included in the request is invalid.",
                              "UnrecognizedClientException")
        if region != self.REGION or service != "ses" or terminator != "aws4_request" or day != stamp[:8]:
            return self.error(403, f"Credential should be scoped to a valid region and service "
                                   f"({region}/{service}).", "InvalidSignatureException")
        try:
            when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return self.error(403, "Invalid X-Amz-Date", "IncompleteSignatureException")
        if abs((datetime.now(UTC) - when).total_seconds()) > 300:
            return self.error(403, "Signature expired", "InvalidSignatureException")
        signed = match["signed"].split(";")
        url = f"{self.base_url}{req.path}" + (f"?{urlencode(req.query)}" if req.query else "")
        aws = AWSRequest(method=req.method, url=url, data=req.body,
                         headers={name: req.header(name) or "" for name in signed})
        aws.context["timestamp"] = stamp
        signer = SigV4Auth(Credentials(key_id, secret), "ses", self.REGION)
        expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
        if expected != match["sig"] or "host" not in signed:
            return self.error(403, "The request signature we calculated does not match the signature you "
                                   "provided. Check your AWS Secret Access Key and signing method.",
                              "SignatureDoesNotMatch")
        return None

    # -- routes ---------------------------------------------------------------------------------

    @route("GET", r"/ecs/credentials", auth=False)
    def container_credentials(self, req: Request) -> Reply:
        with self.lock:
            self.credentials_issued += 1
            key_id = f"ASIAFAKESESTEMP{self.credentials_issued:05d}"
            secret, token = uuid.uuid4().hex, f"fake-session-token-{uuid.uuid4().hex}"
            self.keys[key_id] = secret
            self.session_tokens[key_id] = token
        expires = datetime.now(UTC) + self.credential_lifetime
        return reply(200, {"AccessKeyId": key_id, "SecretAccessKey": secret, "Token": token,
                           "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")})

    def invalid(self, problems: list[str]) -> Reply:
        """SES's answer to a request that breaks the model."""
        count = len(problems)
        return self.error(400, f"{count} validation error{'s' if count > 1 else ''} detected: "
                               + "; ".join(problems), "BadRequestException")

    @route("GET", r"/v2/email/account")
    def get_account(self, req: Request) -> Reply:
        return reply(200, {"ProductionAccessEnabled": True, "SendingEnabled": True, "EnforcementStatus": "HEALTHY",
                           "DedicatedIpAutoWarmupEnabled": False,
                           "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 120.0}})

    @route("POST", r"/v2/email/outbound-bulk-emails")
    def send_bulk(self, req: Request) -> Reply:
        body = req.json if isinstance(req.json, dict) else None
        if body is None:
            return self.error(400, "Request body must be JSON", "BadRequestException")
        problems = model_problems("SendBulkEmail", body)
        for label, values in (("FromEmailAddress", [body.get("FromEmailAddress") or ""]),
                              ("ReplyToAddresses", body.get("ReplyToAddresses") or [])):
            for value in values:
                problems += ascii_problems(label, str(value))
        for n, entry in enumerate(body.get("BulkEmailEntries") or []):
            for address in ((entry or {}).get("Destination") or {}).get("ToAddresses") or []:
                problems += ascii_problems(f"BulkEmailEntries[{n}].Destination.ToAddresses", str(address))
        if problems:
            return self.invalid(problems)
        if self.daily_quota_exceeded:  # model: LimitExceededException, 400
            return self.error(400, "Daily message quota exceeded.", "LimitExceededException")
        entries = body.get("BulkEmailEntries")
        if not isinstance(entries, list) or not entries:
            return self.error(400, "BulkEmailEntries is required", "BadRequestException")
        if len(entries) > MAX_ENTRIES:
            return self.error(400, f"1 validation error detected: Value at 'bulkEmailEntries' failed to satisfy "
                                   f"constraint: Member must have length less than or equal to {MAX_ENTRIES}",
                              "BadRequestException")
        sender = str(body.get("FromEmailAddress") or "")
        address = re.search(r"<([^>]+)>", sender)
        address = (address.group(1) if address else sender).lower()
        if address not in VERIFIED and address.rpartition("@")[2] not in VERIFIED:
            return self.error(400, f"Email address is not verified. The following identities failed the check in "
                                   f"region {self.REGION.upper()}: {address}", "MessageRejected")
        template = ((body.get("DefaultContent") or {}).get("Template") or {})
        content = template.get("TemplateContent")
        if not isinstance(content, dict) or not content.get("Subject"):
            return self.error(400, "Template content with a Subject is required", "BadRequestException")
        defaults = json.loads(template.get("TemplateData") or "{}")
        default_headers = {h["Name"]: h["Value"] for h in template.get("Headers") or []}
        results = []
        with self.lock:
            for entry in entries:
                to = ((entry.get("Destination") or {}).get("ToAddresses") or [""])[0]
                replacement = (((entry.get("ReplacementEmailContent") or {}).get("ReplacementTemplate") or {})
                               .get("ReplacementTemplateData"))
                data = {**defaults, **json.loads(replacement or "{}")}
                if self.throttle_entries > 0:
                    self.throttle_entries -= 1
                    results.append({"Status": "ACCOUNT_THROTTLED", "Error": "Maximum sending rate exceeded."})
                    continue
                if to.lower() in self.rejected:
                    results.append({"Status": "MESSAGE_REJECTED", "Error": "Address is on the suppression list."})
                    continue
                try:
                    rendered = {k: _render(content.get(k) or "", data) for k in ("Subject", "Html", "Text")}
                except KeyError as exc:
                    results.append({"Status": "INVALID_PARAMETER", "Error": f"Attribute {exc} is not present"})
                    continue
                message_id = f"0102018{uuid.uuid4().hex}-000000"
                headers = {**default_headers, **{h["Name"]: h["Value"] for h in entry.get("ReplacementHeaders") or []}}
                self.delivered.append({"to": to, "from": sender, "subject": rendered["Subject"],
                                       "html": rendered["Html"], "text": rendered["Text"], "headers": headers,
                                       "reply_to": body.get("ReplyToAddresses"), "tags": body.get("DefaultEmailTags"),
                                       "message_id": message_id})
                results.append({"Status": "SUCCESS", "MessageId": message_id})
            self.calls_accepted += 1
            if self.short_answer and results:
                self.short_answer = False
                results.pop()
        return reply(200, {"BulkEmailEntryResults": results})


def _render(text: str, data: dict[str, Any]) -> str:
    return _TAG.sub(lambda m: str(data[m.group(1)]), text)
