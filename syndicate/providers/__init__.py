"""Provider adapters: one module per outside service, one shared base, one error vocabulary.

``get(name)`` finds the adapter class for a channel's ``provider`` setting.
"""

from __future__ import annotations

from importlib import import_module

from syndicate.providers.base import Provider

# provider name -> "module:Class"; modules are imported only when a channel uses them.
REGISTRY: dict[str, str] = {
    "outbox": "syndicate.providers.outbox:OutboxProvider",
    "smtp": "syndicate.providers.smtp:SmtpProvider",
    "x": "syndicate.providers.x:XProvider",
    "facebook": "syndicate.providers.facebook:FacebookProvider",
    "linkedin": "syndicate.providers.linkedin:LinkedInProvider",
    "pinterest": "syndicate.providers.pinterest:PinterestProvider",
    "mastodon": "syndicate.providers.mastodon:MastodonProvider",
    "bluesky": "syndicate.providers.bluesky:BlueskyProvider",
    "threads": "syndicate.providers.threads:ThreadsProvider",
    # Email campaign providers: the audience lives at the provider.
    "mailchimp": "syndicate.providers.mailchimp:MailchimpProvider",
    "buttondown": "syndicate.providers.buttondown:ButtondownProvider",
    "sendgrid_singlesend": "syndicate.providers.sendgrid:SendGridSingleSendProvider",
    # Email direct-send providers: the tool's own subscriber list, per-recipient records.
    "sendgrid": "syndicate.providers.sendgrid:SendGridProvider",
    "postmark": "syndicate.providers.postmark:PostmarkProvider",
    "mailgun": "syndicate.providers.mailgun:MailgunProvider",
    "ses": "syndicate.providers.ses:SesProvider",
}

# The email providers whose sends sign each recipient's unsubscribe link (SMTP and the direct-send
# APIs; not the outbox, not the campaign providers), by name, so that `syndicate worker` can ask
# for the key without loading them (tests/test_worker_memory.py checks it against the classes).
SIGNS_LINKS = frozenset({"smtp", "sendgrid", "postmark", "mailgun", "ses"})


class UnknownProvider(KeyError):
    pass


def get(name: str) -> type[Provider]:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise UnknownProvider(f"unknown provider {name!r} (known: {', '.join(sorted(REGISTRY))})") from None
    module, _, cls = target.partition(":")
    return getattr(import_module(module), cls)


def dedup_window(settings, channel_name: str):
    """How long CHANNEL's provider remembers an idempotency key, or can look up what an earlier
    attempt created (a timedelta; ``timedelta.max`` for good), or None where it can do neither:
    then an interrupted send is never redone."""
    from datetime import timedelta

    channel = settings.channels.get(channel_name)
    try:
        cls = get(channel.provider) if channel else None
    except UnknownProvider:
        return None
    if cls is None or not (cls.deduplicates or cls.looks_up):
        return None
    return cls.dedup_window or timedelta.max
