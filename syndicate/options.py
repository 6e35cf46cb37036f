"""Channel options (``channels.NAME.options``): one validated model per provider.

Every option a provider, its payload renderer or the desk reads is declared here, with its
type, so that a misspelt option is an error when the settings load (``tokn_env: unknown
option; did you mean 'token_env'?``) instead of a silent default: a mistyped ``api_base``
would post to the production API, a mistyped ``rate_limit`` would lift the throttle. The
settings validate a channel's ``options`` against the model of its ``provider`` (settings.py)
and keep them as a plain dict holding only what was written; the adapters read that dict.

This sits below ``settings`` (which imports it) and imports nothing of the package, so each
provider's options have one home that settings, providers and tests all reach. The outbox
stands in for a real provider: it accepts the options of the providers of the channel's kind,
so switching ``provider`` between the outbox and the real one never needs the options touched.
Keep docs/settings.md's "Provider options" in step; tests/test_options.py checks that every
option the code reads is declared here.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

Id = str | int  # numeric ids may be written as TOML integers; the adapters send str(value)
Seconds = Annotated[float, Field(gt=0)]
# "card": the link card (the default); "image": the post's image uploaded with the post
# (providers/http.py, "image posts"), falling back to the card when that cannot be done.
Media = Literal["card", "image"]


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class _Options(BaseModel):
    # defer_build: only the providers a settings file names get their validator built
    model_config = ConfigDict(extra="forbid", defer_build=True)

    rate_limit: str | None = None  # "N/period", shared by every worker for one account
    account: str | None = None  # which channels share a rate limit (default: the credential's variable)


class _Http(_Options):
    api_base: str | None = None  # the API's base URL (tests point it at a local server)
    timeout: Seconds | None = None
    connect_timeout: Seconds | None = None
    trust_env: bool | None = None  # requests' proxy variables (HTTPS_PROXY, ...)
    image_hosts: list[str] | None = None  # extra hosts images may be fetched from for upload


class _Social(_Http):
    handle: str | None = None  # the account's handle as the desk's preview shows it


class XOptions(_Social):
    media: Media | None = None
    token_env: str | None = None
    refresh_token_env: str | None = None
    client_id_env: str | None = None
    client_secret_env: str | None = None
    consumer_key_env: str | None = None
    consumer_secret_env: str | None = None
    access_token_env: str | None = None
    access_token_secret_env: str | None = None
    username: str | None = None


class FacebookOptions(_Social):
    media: Media | None = None
    page_id: Id | None = None
    page_token_env: str | None = None
    version: str | None = None


class LinkedInOptions(_Social):
    token_env: str | None = None
    author_urn: str | None = None
    linkedin_version: Id | None = None
    image_wait: Seconds | None = None


class PinterestOptions(_Social):
    token_env: str | None = None
    board_id: Id | None = None


class MastodonOptions(_Social):
    media: Media | None = None
    instance: str | None = None
    token_env: str | None = None
    max_characters: Annotated[int, Field(ge=1)] | None = None


class BlueskyOptions(_Social):
    media: Media | None = None
    identifier: str | None = None
    identifier_env: str | None = None
    app_password_env: str | None = None


class ThreadsOptions(_Social):
    media: Media | None = None
    token_env: str | None = None
    user_id: Id | None = None
    version: str | None = None
    publish_wait: Seconds | None = None
    poll_interval: Seconds | None = None
    link_attachment: bool | None = None


class SmtpServer(BaseModel):
    """An SMTP server's connection: an SMTP channel's options, and an email channel's ``test_smtp``."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    security: Annotated[Literal["starttls", "tls", "none"], BeforeValidator(_lower)] | None = None
    username_env: str | None = None
    password_env: str | None = None
    timeout: Seconds | None = None
    ca_file: str | None = None
    envelope_from: str | None = None


class _Email(_Options):
    audience: Literal["subscribers", "to"] | None = None  # "subscribers": the tool's list; else `to`
    test_smtp: SmtpServer | None = None  # the desk's test email, for a channel whose provider is not SMTP
    # email/privacy.py: a message loading images from other hosts is held, or they are dropped
    third_party_images: Literal["hold", "drop"] | None = None
    image_hosts: list[str] | None = None  # hosts besides the site's that images may come from


class SmtpOptions(_Email, SmtpServer):
    # DKIM (email/dkim.py): the selector, the signing domain (default the From domain), the key
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_private_key_env: str | None = None
    # VERP bounces (providers/bouncebox.py): bounces+TOKEN@ this address's domain, read over IMAP
    return_path: str | None = None
    bounce_imap_host: str | None = None
    bounce_imap_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    bounce_imap_security: Annotated[Literal["starttls", "tls", "none"], BeforeValidator(_lower)] | None = None
    bounce_imap_user: str | None = None
    bounce_imap_password_env: str | None = None
    bounce_imap_folder: str | None = None
    bounce_imap_done: str | None = None
    bounce_imap_ca_file: str | None = None


class _EmailApi(_Email, _Http):
    api_key_env: str | None = None


class _DirectSend(_EmailApi):
    batch_size: Annotated[int, Field(ge=1)] | None = None  # recipients per API call


class _Campaign(_EmailApi):
    schedule_after: Annotated[float, Field(ge=0)] | None = None  # minutes; 0: send at once


class MailchimpOptions(_Campaign):
    audience_id: Id | None = None
    segment_id: Id | None = None
    tracking: bool | None = None
    auto_footer: bool | None = None


class ButtondownOptions(_Campaign):
    email_type: Literal["public", "private", "premium"] | None = None
    api_version: str | None = None  # X-API-Version (default buttondown.API_VERSION)
    archival_mode: str | None = None  # checked against Buttondown's enum by the API itself
    template: str | None = None  # e.g. "naked" (a paid Buttondown feature)


class SendGridSingleSendOptions(_Campaign):
    list_ids: list[Id] | None = None
    segment_ids: list[Id] | None = None
    send_to_all: bool | None = None
    sender_id: Id | None = None
    suppression_group_id: Id | None = None


class SendGridOptions(_DirectSend):
    asm_group_id: Id | None = None


class PostmarkOptions(_DirectSend):
    server_token_env: str | None = None
    message_stream: str | None = None


class MailgunOptions(_DirectSend):
    domain: str | None = None
    region: Annotated[Literal["us", "eu"], BeforeValidator(_lower)] | None = None


class SesOptions(_DirectSend):
    region: str | None = None
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    session_token_env: str | None = None
    configuration_set: str | None = None


# provider name (as in providers.REGISTRY) -> its options; the outbox is OUTBOX below.
PROVIDERS: dict[str, type[BaseModel]] = {
    "smtp": SmtpOptions,
    "x": XOptions,
    "facebook": FacebookOptions,
    "linkedin": LinkedInOptions,
    "pinterest": PinterestOptions,
    "mastodon": MastodonOptions,
    "bluesky": BlueskyOptions,
    "threads": ThreadsOptions,
    "mailchimp": MailchimpOptions,
    "buttondown": ButtondownOptions,
    "sendgrid_singlesend": SendGridSingleSendOptions,
    "sendgrid": SendGridOptions,
    "postmark": PostmarkOptions,
    "mailgun": MailgunOptions,
    "ses": SesOptions,
}
EMAIL_PROVIDERS = ("smtp", "mailchimp", "buttondown", "sendgrid_singlesend", "sendgrid", "postmark", "mailgun",
                   "ses")
# The audience lives at the provider: it mails its own list, never one address we name.
CAMPAIGN_PROVIDERS = ("mailchimp", "buttondown", "sendgrid_singlesend")


def _union(name: str, models: list[type[BaseModel]]) -> type[BaseModel]:
    """One model accepting the options of any of MODELS (the first declaration of a name wins)."""
    fields: dict[str, Any] = {}
    for model in models:
        for key, info in model.model_fields.items():
            fields.setdefault(key, (info.annotation, info))
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


# The outbox, by the channel's kind: what the real providers of that kind accept.
OUTBOX: dict[str, type[BaseModel]] = {
    "email": _union("OutboxEmailOptions", [PROVIDERS[p] for p in EMAIL_PROVIDERS]),
    **{kind: PROVIDERS[kind] for kind in ("x", "facebook", "linkedin", "pinterest", "mastodon", "bluesky", "threads")},
}


class OptionError(ValueError):
    """One bad option; KEY is its dotted path inside ``options`` (``tokn_env``, ``test_smtp.hst``)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def model_for(provider: str, kind: str) -> type[BaseModel] | None:
    """The options model of PROVIDER on a channel of KIND; None for a provider unknown here
    (``syndicate check`` names it)."""
    if provider == "outbox":
        return OUTBOX.get(kind)
    return PROVIDERS.get(provider)


def validate(provider: str, kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """OPTIONS checked against the provider's model: the values as validated, only the keys
    written (the adapters' own defaults apply to the rest). Raises OptionError."""
    model = model_for(provider, kind)
    if model is None:
        return options
    try:
        return model.model_validate(options).model_dump(exclude_unset=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(part) for part in first["loc"]]
        if first["type"] == "extra_forbidden":
            raise OptionError(".".join(loc), "unknown option" + _did_you_mean(model, loc)) from None
        raise OptionError(".".join(loc), first["msg"].removeprefix("Value error, ")) from None


def _did_you_mean(model: type[BaseModel], loc: list[str]) -> str:
    for part in loc[:-1]:  # down to the table holding the unknown key (test_smtp.hst)
        field = model.model_fields.get(part)
        inner = _model_in(field.annotation) if field else None
        if inner is None:
            return ""
        model = inner
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if (found := _model_in(arg)) is not None:
            return found
    return None
