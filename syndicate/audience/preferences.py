"""A reader's choices: which cadence (every post, the daily or weekly digest, or two of them)
and which topics (``audience.topics``: named groups of the feed's categories).

Stored on the subscriber (``cadence``) and in ``subscriber_topics``. A subscriber who never
chose (``cadence`` NULL, no topics) gets every channel that mails the list and every topic: the
list as it was before readers could choose. The rule that decides who gets what, once per
person, is ``email/routing.py``; this module only says what a person asked for.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from syndicate.ledger.models import Subscriber, SubscriberTopic
from syndicate.settings import Channel, Settings

CADENCES = ("post", "day", "week")  # every post; the daily digest; the weekly digest
CADENCE_LABELS = {"post": "Every post, as it is published", "day": "The daily digest", "week": "The weekly digest"}
UNCHOSEN = "all"  # how a subscriber who never chose is counted


class BadChoice(ValueError):
    """A cadence or topic that is not on offer; ``str()`` says which."""


@dataclass
class Choices:
    cadences: list[str] = field(default_factory=list)  # empty: never chose (every channel)
    topics: list[str] = field(default_factory=list)  # empty: every topic

    @property
    def chosen(self) -> bool:
        return bool(self.cadences)


def channel_cadence(channel: Channel) -> str:
    """The cadence a channel serves: "post" for per-post, "day"/"week" for a digest."""
    return channel.digest.every if channel.mode == "digest" and channel.digest else "post"


def offered_cadences(settings: Settings) -> list[str]:
    """The cadences some enabled email channel mailing the list serves, in CADENCES order."""
    served = {channel_cadence(ch) for ch in settings.enabled_channels().values()
              if ch.kind == "email" and ch.options.get("audience") == "subscribers"}
    return [c for c in CADENCES if c in served]


def topics_of(categories: list[str], settings: Settings) -> list[str]:
    """The topics a post with CATEGORIES belongs to (case-insensitive), in settings order."""
    have = {c.strip().lower() for c in categories}
    return [name for name, topic in settings.audience.topics.items()
            if have & {c.strip().lower() for c in topic.categories}]


def read(s: Session, subscriber: Subscriber) -> Choices:
    cadences = [c for c in (subscriber.cadence or "").split(",") if c]
    topics = list(s.scalars(select(SubscriberTopic.topic).where(SubscriberTopic.subscriber_id == subscriber.id)
                            .order_by(SubscriberTopic.topic)))
    return Choices(cadences, topics)


def choices_of(s: Session, emails: list[str]) -> dict[str, Choices]:
    """EMAILS' choices in two queries (the send path asks for a whole list at once)."""
    found: dict[str, Choices] = {}
    ids: dict[int, str] = {}
    for start in range(0, len(emails), 500):
        for sid, email, cadence in s.execute(select(Subscriber.id, Subscriber.email, Subscriber.cadence)
                                             .where(Subscriber.email.in_(emails[start:start + 500]))):
            found[email] = Choices([c for c in (cadence or "").split(",") if c], [])
            ids[sid] = email
    keys = sorted(ids)
    for start in range(0, len(keys), 500):
        for sid, topic in s.execute(select(SubscriberTopic.subscriber_id, SubscriberTopic.topic)
                                    .where(SubscriberTopic.subscriber_id.in_(keys[start:start + 500]))):
            found[ids[sid]].topics.append(topic)
    return found


def save(s: Session, settings: Settings, subscriber: Subscriber, cadences: list[str], topics: list[str]) -> Choices:
    """Replace SUBSCRIBER's choices (checked against what is on offer). At least one cadence."""
    offered = offered_cadences(settings) or list(CADENCES)
    cadences = [c for c in CADENCES if c in set(cadences)]
    wrong = [c for c in cadences if c not in offered]
    if not cadences:
        raise BadChoice("choose at least one: every post or a digest (or unsubscribe instead)")
    if wrong:
        raise BadChoice(f"not on offer: {', '.join(wrong)}")
    unknown = sorted(set(topics) - set(settings.audience.topics))
    if unknown:
        raise BadChoice(f"no such topic: {', '.join(unknown)}")
    subscriber.cadence = ",".join(cadences)
    s.execute(delete(SubscriberTopic).where(SubscriberTopic.subscriber_id == subscriber.id))
    for topic in sorted(set(topics)):
        s.add(SubscriberTopic(subscriber_id=subscriber.id, topic=topic))
    return Choices(cadences, sorted(set(topics)))


def wants(choices: Choices | None, cadence: str) -> bool:
    """Does a person with CHOICES take a channel of CADENCE? (Never chose: yes.)"""
    return choices is None or not choices.cadences or cadence in choices.cadences


def follows(choices: Choices | None, post_topics: list[str]) -> bool:
    """Does a person with CHOICES want a post in POST_TOPICS? (No topics chosen: every post.)"""
    return choices is None or not choices.topics or bool(set(choices.topics) & set(post_topics))


def asked_for_both(choices: Choices | None, one: str, other: str) -> bool:
    """Did the person explicitly ask for both cadences (so a post may reach them in each)?"""
    return choices is not None and one in choices.cadences and other in choices.cadences


def audience_counts(s: Session, settings: Settings) -> dict[str, dict[str, int]]:
    """What staff see, in one place (``syndicate subscribers list [--json]`` and the desk's
    Audience page): subscribers per status; active readers per cadence, per topic, and per
    list channel (those whose cadence it serves, before topics and channel filters)."""
    from syndicate.audience.subscribers import status_counts

    tallies = counts(s)
    channels = {}
    for name, ch in settings.enabled_channels().items():
        if ch.kind == "email" and ch.options.get("audience") == "subscribers":
            cadence = tallies["cadence"]
            channels[name] = cadence.get(channel_cadence(ch), 0) + cadence.get(UNCHOSEN, 0)
    return {"status": status_counts(s), **tallies, "channels": channels}


def counts(s: Session) -> dict[str, dict[str, int]]:
    """Active subscribers per cadence and per topic (a person in two counts in both)."""
    active = Subscriber.status == "active"
    cadence: Counter[str] = Counter()
    for value, n in s.execute(select(Subscriber.cadence, func.count()).where(active).group_by(Subscriber.cadence)):
        for c in (value or UNCHOSEN).split(","):
            cadence[c] += n
    topics = dict(s.execute(select(SubscriberTopic.topic, func.count()).join(
        Subscriber, Subscriber.id == SubscriberTopic.subscriber_id).where(active).group_by(SubscriberTopic.topic)).all())
    everyone = s.scalar(select(func.count()).select_from(Subscriber).where(
        active, ~select(SubscriberTopic.id).where(SubscriberTopic.subscriber_id == Subscriber.id).exists())) or 0
    return {"cadence": dict(cadence), "topics": {**topics, UNCHOSEN: everyone}}
