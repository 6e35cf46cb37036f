"""`GET /metrics`: Prometheus numbers, read from the ledger at scrape time.

Nothing is counted in this process's memory: the web server sends nothing, and a counter kept
by a worker would start again at zero on every restart. The ledger already holds every send
(its audit trail) and every per-recipient result, so each scrape counts rows: the counters
survive restarts and agree across every worker and host. A custom collector does it
(prometheus_client calls ``collect`` on each scrape).

Metrics (every name starts with ``syndicate_``):

- ``deliveries{channel,state}``: deliveries now in each state (gauge)
- ``sends_total{channel,provider}``: deliveries that went out (the audit trail's ``sent`` entries)
- ``provider_errors_total{channel,provider,error_class}``: failed attempts by error class
  (retryable, rate_limited, auth, permanent, duplicate, unknown)
- ``due_lag_seconds``: how long the oldest due, unclaimed delivery has waited (0: none)
- ``feed_polls_total{feed}``: successful fetches; ``feed_up{feed}``: 1 when the last fetch
  worked; ``feed_last_success_timestamp_seconds{feed}``, ``feed_last_poll_timestamp_seconds{feed}``
- ``recipients_sent_total{channel}``: email recipients mailed (one row each, exactly once)
- ``deliverability_events_total{provider,kind}``: bounces and complaints the mail services
  reported (only where the ledger has the ``deliverability_events`` table)
- ``health_check_ok{check}``: each /healthz check, 1 or 0; ``heartbeat_age_seconds{name}``

``feed_last_fetch_seconds{feed}``: how long the last successful fetch took (the request to the
last byte; a 304 too). A poll that times out shows as ``feed_up`` 0 with the timeout in /healthz.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine import health
from syndicate.ledger.models import STATES, Delivery, Event, Feed, RecipientSend, utcnow
from syndicate.settings import Settings

ERROR_CLASSES = ("retryable", "rate_limited", "auth", "permanent", "duplicate", "unknown")


class LedgerCollector(Collector):
    def __init__(self, settings: Settings, factory: sessionmaker[Session], started_at=None):
        self.settings = settings
        self.factory = factory
        self.started_at = started_at

    def collect(self):
        now = utcnow()
        with self.factory() as s:
            yield self._deliveries(s)
            yield from self._sends(s)
            yield self._due_lag(s, now)
            yield from self._feeds(s)
            yield self._recipients(s)
            if (events := self._deliverability(s)) is not None:
                yield events
        yield from self._health(now)

    def _deliveries(self, s: Session):
        family = GaugeMetricFamily("syndicate_deliveries", "Deliveries now in each state",
                                   labels=["channel", "state"])
        counts = dict.fromkeys(((c, st) for c in self.settings.channels for st in STATES), 0)
        for channel, state, n in s.execute(select(Delivery.channel, Delivery.state, func.count())
                                           .group_by(Delivery.channel, Delivery.state)):
            counts[(channel, state)] = n
        for (channel, state), n in sorted(counts.items()):
            family.add_metric([channel, state], n)
        return family

    def _sends(self, s: Session):
        sends = CounterMetricFamily("syndicate_sends", "Deliveries that went out (from the audit trail)",
                                    labels=["channel", "provider"])
        errors = CounterMetricFamily("syndicate_provider_errors",
                                     "Failed send attempts by error class (from the audit trail)",
                                     labels=["channel", "provider", "error_class"])
        by = (Delivery.channel, Delivery.provider)
        joined = select(*by).join(Event, Event.delivery_id == Delivery.id)
        for channel, provider, n in s.execute(joined.add_columns(func.count()).where(Event.action == "sent")
                                              .group_by(*by)):
            sends.add_metric([channel, provider], n)
        # An error leaves `sending` with "<class>: <message>" as the event's detail (engine/deliver.py).
        columns = [func.sum(case((Event.detail.like(f"{cls}:%"), 1), else_=0)) for cls in ERROR_CLASSES]
        rows = s.execute(joined.add_columns(*columns)
                         .where(Event.from_state == "sending", Event.to_state != "sent").group_by(*by))
        for channel, provider, *counts in rows:
            for cls, n in zip(ERROR_CLASSES, counts, strict=True):
                if n:
                    errors.add_metric([channel, provider, cls], n)
        return sends, errors

    def _due_lag(self, s: Session, now):
        oldest = s.scalar(select(func.min(Delivery.due_at)).where(Delivery.state == "planned",
                                                                   Delivery.due_at <= now))
        family = GaugeMetricFamily("syndicate_due_lag_seconds",
                                   "How long the oldest due, unclaimed delivery has waited")
        family.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        return family

    def _feeds(self, s: Session):
        polls = CounterMetricFamily("syndicate_feed_polls", "Successful fetches of each feed", labels=["feed"])
        up = GaugeMetricFamily("syndicate_feed_up", "1 when the feed's last fetch worked", labels=["feed"])
        ok_at = GaugeMetricFamily("syndicate_feed_last_success_timestamp_seconds",
                                  "When the feed was last fetched successfully", labels=["feed"])
        polled_at = GaugeMetricFamily("syndicate_feed_last_poll_timestamp_seconds",
                                      "When the feed was last tried", labels=["feed"])
        took = GaugeMetricFamily("syndicate_feed_last_fetch_seconds",
                                 "How long the feed's last successful fetch took", labels=["feed"])
        for feed in s.scalars(select(Feed).order_by(Feed.name)):
            polls.add_metric([feed.name], feed.polls or 0)
            if feed.last_polled_at is not None:
                up.add_metric([feed.name], 0 if feed.last_error else 1)
                polled_at.add_metric([feed.name], feed.last_polled_at.timestamp())
            if feed.last_ok_at is not None:
                ok_at.add_metric([feed.name], feed.last_ok_at.timestamp())
            if feed.last_fetch_seconds is not None:
                took.add_metric([feed.name], feed.last_fetch_seconds)
        return polls, up, ok_at, polled_at, took

    def _recipients(self, s: Session):
        family = CounterMetricFamily("syndicate_recipients_sent", "Email recipients mailed",
                                     labels=["channel"])
        for channel, n in s.execute(select(Delivery.channel, func.count())
                                    .join(RecipientSend, RecipientSend.delivery_id == Delivery.id)
                                    .where(RecipientSend.state == "sent").group_by(Delivery.channel)):
            family.add_metric([channel], n)
        return family

    def _deliverability(self, s: Session):
        """Bounces and complaints, where the ledger records them (a table newer than this module)."""
        if not inspect(s.get_bind()).has_table("deliverability_events"):
            return None
        family = CounterMetricFamily("syndicate_deliverability_events",
                                     "Bounces, complaints and other reports from the mail services",
                                     labels=["provider", "kind"])
        for provider, kind, n in s.execute(text("SELECT provider, kind, count(*) FROM deliverability_events "
                                                "GROUP BY provider, kind ORDER BY provider, kind")):
            family.add_metric([provider, kind], n)
        return family

    def _health(self, now):
        report = health.evaluate(self.settings, self.factory, now, started_at=self.started_at)
        checks = GaugeMetricFamily("syndicate_health_check_ok", "1 when the /healthz check passes",
                                   labels=["check"])
        for check in report.checks:
            checks.add_metric([check.name], 1 if check.ok else 0)
        yield checks
        ages = GaugeMetricFamily("syndicate_heartbeat_age_seconds", "Seconds since each runner's last pass",
                                 labels=["name"])
        for check in report.checks:
            if check.name in ("beat", "dispatcher", "runner") and check.value is not None:
                ages.add_metric([check.name], check.value)
        yield ages
