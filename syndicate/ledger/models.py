"""The ledger's tables: feeds, posts, deliveries and the audit trail.

The database, not the broker, is the source of truth (DESIGN.md, "The delivery engine").
Unique constraints make creation idempotent: a post is unique per (feed, identity), a
delivery per (subject, channel), so overlapping polls and double dispatcher ticks are harmless.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from syndicate.model import FINAL_STATES, STATES  # noqa: F401  (imported from here too)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (no tz) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict: JSON}


class Feed(Base):
    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(Text)
    final_url: Mapped[str | None] = mapped_column(Text)  # where redirects led last time
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    polls: Mapped[int] = mapped_column(default=0)  # successful polls; 0 means "first poll ahead"
    last_polled_at: Mapped[datetime | None]
    last_ok_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    failing: Mapped[int] = mapped_column(Integer, default=0)  # failed polls in a row (migration 0010)
    last_fetch_seconds: Mapped[float | None]  # how long the last good fetch took (migration 0014; /metrics)
    # Set: etag/last_modified are the validators of a body this parser version (the value) could
    # not read, so a 304 means "the same unreadable body": last_error stands (engine/poll.py).
    unparsed: Mapped[str | None] = mapped_column(String(40))  # migration 0015


# What a post's planning state means: 'send' plans deliveries; 'hold' plans them held for a
# human (a flood); 'ignore' records it only (seen at the first poll, or a moved duplicate).
POST_PLANS = ("send", "hold", "ignore")


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        UniqueConstraint("feed_id", "identity", name="uq_posts_feed_identity"),
        Index("ix_posts_feed_fingerprint", "feed_id", "fingerprint"),
        Index("ix_posts_url", "url"),
        # The planner's question every tick: which posts are not planned yet (migration 0013).
        Index("ix_posts_unplanned", "id", postgresql_where=text("planned_at IS NULL"),
              sqlite_where=text("planned_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id"))
    identity: Mapped[str] = mapped_column(String(700))
    fingerprint: Mapped[str] = mapped_column(String(700))
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text, default="")
    content_hash: Mapped[str] = mapped_column(String(80), default="")
    data: Mapped[dict] = mapped_column(JSON)  # the normalized PostData, as last seen
    plan: Mapped[str] = mapped_column(String(10), default="send")
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("posts.id"))
    published_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime]
    edited_at: Mapped[datetime | None]  # set when the same identity came back with new content
    planned_at: Mapped[datetime | None]  # deliveries created (None: the planner has not run yet)
    no_email: Mapped[bool] = mapped_column(default=False)  # a person kept it out of email (desk)


# planned -> claimed -> sending -> sent | failed | unknown; also held, skipped, cancelled:
# STATES and FINAL_STATES, in syndicate/model.py (the command line offers them without SQLAlchemy).


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subject", "channel", name="uq_deliveries_subject_channel"),
        Index("ix_deliveries_state_due", "state", "due_at"),
        Index("ix_deliveries_state_sent", "state", "sent_at"),  # the desk's dated Sent tab (migration 0007)
        Index("ix_deliveries_updated", "updated_at"),  # `status --since`
        Index("ix_deliveries_due", "due_at", "id"),  # `status` by due time, keyset order (migration 0013)
        Index("ix_deliveries_channel_due", "channel", "due_at", "id"),  # `status --channel`
        # What is still to go out, by due time (`schedule`, the desk's queue tabs; migration 0013).
        Index("ix_deliveries_pending_due", "due_at", "id",
              postgresql_where=text("state IN ('planned', 'held', 'claimed', 'sending')"),
              sqlite_where=text("state IN ('planned', 'held', 'claimed', 'sending')")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # idempotency key sent to providers
    subject: Mapped[str] = mapped_column(String(200))  # "post:<id>", "digest:<edition>" or "reshare:<slot>"
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"))
    channel: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str] = mapped_column(String(50))
    state: Mapped[str] = mapped_column(String(12))
    due_at: Mapped[datetime]
    payload: Mapped[dict] = mapped_column(JSON)  # rendered once: what was previewed is what is sent
    # The post's content_hash the payload was rendered from (migration 0011): a send compares
    # it with the post's current hash to tell whether the feed's copy changed since (engine/fresh.py).
    rendered_hash: Mapped[str | None] = mapped_column(String(80))
    post_url: Mapped[str | None] = mapped_column(Text)
    hold_reason: Mapped[str | None] = mapped_column(Text)
    claim_token: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]  # a claim or send still in this state after it is reaped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_ref: Mapped[str | None] = mapped_column(Text)
    provider_url: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class Event(Base):
    """The audit trail: every state change and human action, who and when."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_delivery", "delivery_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))  # "dispatcher", "worker:<host>", "cli:<user>"
    action: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str | None] = mapped_column(String(12))
    to_state: Mapped[str | None] = mapped_column(String(12))
    detail: Mapped[str | None] = mapped_column(Text)


# --- Email: the subscriber list, suppressions, and per-recipient sends (migration 0002) ---

# pending: double opt-in, not confirmed; bounced and complained: suppressed by a deliverability event
SUBSCRIBER_STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")


class Subscriber(Base):
    """One address on the list the tool keeps (``syndicate subscribers``)."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalized, lower case
    name: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(12))
    source: Mapped[str] = mapped_column(String(200), default="")  # "import:list.csv", "web"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    invited_at: Mapped[datetime | None]  # the double opt-in confirmation email went out
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    # The reader's choices (audience/preferences.py): CADENCE is "post", "day", "week" or two of
    # them joined by commas; NULL (never chose) takes every channel that mails the list.
    cadence: Mapped[str | None] = mapped_column(String(20))
    confirm_sent_at: Mapped[datetime | None]  # the last signup confirmation email (one per 10 min)


class SubscriberTopic(Base):
    """A topic (``audience.topics``) one subscriber follows; none: every topic."""

    __tablename__ = "subscriber_topics"
    __table_args__ = (UniqueConstraint("subscriber_id", "topic", name="uq_subscriber_topics"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    topic: Mapped[str] = mapped_column(String(64))


class PostReceipt(Base):
    """Once per person (email/routing.py): the one delivery of a cadence that carries POST to
    EMAIL. Unique per (email, post, cadence): a second channel of that cadence finds it taken and
    leaves the post out; one of another cadence leaves it out too, unless the person asked for
    both cadences."""

    __tablename__ = "post_receipts"
    __table_args__ = (UniqueConstraint("email", "post_id", "cadence", name="uq_post_receipts"),
                      Index("ix_post_receipts_delivery", "delivery_id", "email"))

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"))
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"))
    cadence: Mapped[str] = mapped_column(String(8))  # the taking delivery's: "post", "day", "week"
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Suppression(Base):
    """An address never mailed again, whatever list or import names it (an unsubscribe, a removal)."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliverabilityEvent(Base):
    """One bounce, complaint or unsubscribe a mail service reported (audience/suppression.py).

    Unique per (provider, provider_event_id): a webhook the service sends again, or a sync read
    twice, is stored once. ``email`` is the address, or its keyed hash once it was forgotten.
    """

    __tablename__ = "deliverability_events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id", name="uq_deliverability_events_provider_event"),
        Index("ix_deliverability_events_email", "email"),
        Index("ix_deliverability_events_delivery", "delivery_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(40))  # "ses", "sendgrid", "smtp", "mailchimp", ...
    kind: Mapped[str] = mapped_column(String(20))  # bounce | complaint | unsubscribe | ...
    subtype: Mapped[str] = mapped_column(String(40), default="")  # hard | soft | the service's own word
    email: Mapped[str] = mapped_column(String(320))
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id", ondelete="SET NULL"))
    provider_event_id: Mapped[str | None] = mapped_column(String(300))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookToken(Base):
    """A webhook's one-time token, kept while its timestamp is fresh, so a replay is refused
    (Mailgun signs timestamp + token; web/hooks.py)."""

    __tablename__ = "webhook_tokens"
    __table_args__ = (UniqueConstraint("provider", "token", name="uq_webhook_tokens_provider_token"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(40))
    token: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


# sending -> sent | failed | deferred | unknown. "sending" is committed before the SMTP
# transaction: a recipient found "sending" or "unknown" later may have the message and is
# never mailed again for that delivery; "deferred" (a 4xx, nothing accepted) is retried.
RECIPIENT_STATES = ("sending", "sent", "failed", "deferred", "unknown")


class RecipientSend(Base):
    """One recipient of one email delivery: exactly once per (delivery, recipient).

    ``state``: sending (claimed; the message has certainly not gone out) -> issued (committed
    just before the message content leaves) -> sent | failed | deferred | unknown; a person may
    settle an unknown one as sent, cancelled or deferred (mailed again). ``owner`` is the claim
    token of the send that holds the row (email/recipients.py).
    """

    __tablename__ = "recipient_sends"
    __table_args__ = (
        UniqueConstraint("delivery_id", "recipient", name="uq_recipient_sends_delivery_recipient"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    recipient: Mapped[str] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(12))
    message_id: Mapped[str | None] = mapped_column(Text)
    code: Mapped[int | None] = mapped_column(Integer)  # the SMTP reply code of the last attempt
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    owner: Mapped[str | None] = mapped_column(String(64))  # the claim token of the send holding it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- The preview desk: staff accounts (migration 0003) ---


class StaffUser(Base):
    """A person who may sign in to the preview desk (``syndicate users add NAME``).

    Only a salted hash of the password is kept (werkzeug.security, scrypt). Guessing is slowed
    per name and source address in ``sign_in_throttle`` (migration 0009), not here, so nobody
    can lock a staff member out from elsewhere. ``session_epoch`` goes up when the person signs
    out: every session cookie carries the epoch it was issued under, and an older one is refused.
    """

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)  # the sign-in name, lower case
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the account may do at the desk: admin, approver or editor (web/roles.py; migration 0011).
    role: Mapped[str] = mapped_column(String(12), default="admin", server_default="admin")


class SignInThrottle(Base):
    """Sign-in attempts per key in the current window (migration 0009).

    Keys: ``name:<name>|<address>`` (one name from one source address) and ``client:<address>``
    (every name from one address: password spraying). Counted with one atomic upsert *before*
    the password is checked, so parallel guesses cannot overwrite each other's counts.
    """

    __tablename__ = "sign_in_throttle"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime]


# --- Digest editions: which posts each edition holds (migration 0004) ---


class DigestItem(Base):
    """One post in one digest edition (the edition's delivery row).

    Unique per (channel, post): a post is in at most one edition of a digest channel, whatever
    the order in which polls commit and dispatchers plan (engine/digest.py).
    """

    __tablename__ = "digest_items"
    __table_args__ = (
        UniqueConstraint("channel", "post_id", name="uq_digest_items_channel_post"),
        Index("ix_digest_items_delivery", "delivery_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(100))
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))


class OAuthToken(Base):
    """Rotated OAuth tokens, shared by every worker process.

    Some networks (X) rotate the refresh token on every refresh and accept each one once: the
    newest pair must be where every process can see it, and only one process may spend it.
    The environment holds the first pair; the ledger holds what came after. Protect the ledger
    like the environment that holds the secrets.
    """

    __tablename__ = "oauth_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(300), unique=True)  # provider, client, first refresh token
    access_token: Mapped[str | None] = mapped_column(Text)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Heartbeat(Base):
    """When a runner (the embedded loop, or Celery's dispatcher) last ran, and when it runs next.

    One row per NAME ("runner", "dispatcher"), overwritten on every pass: the desk reads it to
    say whether anything is sending at all, and when an approval will go (migration 0007).
    """

    __tablename__ = "heartbeats"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    host: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime]  # the last pass
    next_at: Mapped[datetime | None]  # the next pass that sends what is due
    next_poll_at: Mapped[datetime | None]  # the next feed poll


class PauseSwitch(Base):
    """The pause button (migration 0010): one row, id 1. While ``paused``, nothing is claimed
    and nothing claimed starts sending; polls and planning go on (engine/pause.py)."""

    __tablename__ = "pause_switch"

    id: Mapped[int] = mapped_column(primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(100))
    since: Mapped[datetime | None]  # when it was paused (or last resumed)


class AlertSent(Base):
    """What was already alerted, so each thing is told once (engine/alerts.py, migration 0010).

    SUBJECT is what the alert was about ("delivery:12", "feed:blog", "beat:dispatcher:<time>");
    the row with an empty subject holds when the KIND's last message went out (the grouping)."""

    __tablename__ = "alerts_sent"
    __table_args__ = (UniqueConstraint("kind", "subject", name="uq_alerts_sent_kind_subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime]


class QuietState(Base):
    """What the last full ``run --once`` proved (engine/quiet.py, migration 0015): one row, id 1.
    FINGERPRINT covers the settings file, its path, the code and the environment variables the
    pass reads; PLAN is the validated settings the quiet run needs (feeds, fetch, what to print);
    until QUIET_UNTIL nothing time-driven (a digest edition, a re-share, alerts) is due."""

    __tablename__ = "quiet_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    plan: Mapped[str] = mapped_column(Text)
    quiet_until: Mapped[datetime]
    recorded_at: Mapped[datetime]
