"""kombu's Redis transport, with one fix: a worker survives a Redis restart.

The crash (seen and reproduced with celery 5.7.0, kombu 5.7.0, redis-py 8.2.0; the test is
tests/test_worker_redis_restart.py): when Redis goes away, Celery's consumer calls
``connection.collect()`` and then ``connection.close()`` (celery/worker/consumer/consumer.py,
``on_connection_error_after_connected``). ``collect()`` closes the channels and then detaches the
transport from its connection (kombu/connection.py ``_do_close_transport``:
``transport.client = None``). But closing the task channel can fail half way: with a BRPOP in
flight (a worker with room for another task: concurrency 2 or more, one task running) its close
first reads the BRPOP reply, the dead socket raises a connection error, and the channel stays
open; closing the other channels then stops at the first one that cannot reach Redis either. So
``close()`` closes the task channel again, now on a detached transport: the channel dropped its
pool the first time, and restoring its unacknowledged message (virtual/base.py
``restore_unacked_once`` -> ``restore_unacked`` -> ``_create_client`` -> ``pool`` ->
``_get_pool`` -> ``_connparams``) reads ``self.connection.client.hostname`` -> ``AttributeError:
'NoneType' object has no attribute 'hostname'``. kombu and Celery ignore only connection and
channel errors there, so the AttributeError ends the worker ("Unrecoverable error").

Why a subclass and not a pin: the inline ``close()`` after ``collect()`` is new in celery 5.7.0
(celery 5.6.3 only collects), so ``celery<5.7`` would dodge this one path, but it would also hold
back every later fix, and the detach itself is old kombu behaviour that any other late close can
hit. The subclass holds whatever the versions: a channel whose connection is gone raises a
connection error instead, which kombu and Celery already treat as "the broker is away".

Nothing is lost by not restoring that message here: the broker only says "do this now". The
ledger holds the claim, and the reaper hands an unfinished claim back after ``run.claim_ttl``
(the dispatcher then publishes a fresh message); a duplicate message is fenced by the claim
token (DESIGN.md rule 5).
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES, _transport_cache
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class _DetachedFailsAsConnectionError:
    def _get_pool(self, asynchronous=False):
        if self.connection.client is None:  # the connection this channel served was closed
            raise RedisConnectionError("the broker connection was closed (Redis went away)")
        return super()._get_pool(asynchronous=asynchronous)


class Channel(_DetachedFailsAsConnectionError, kombu_redis.Channel):
    pass


class SentinelChannel(_DetachedFailsAsConnectionError, kombu_redis.SentinelChannel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def install() -> None:
    """Make kombu use these transports for redis://, rediss:// and sentinel:// broker URLs.

    By alias rather than Celery's ``broker_transport`` (a class there shows up in every log line
    as ``<class ...>://`` instead of ``redis://``). Idempotent; only this process is affected."""
    for scheme, cls in (("redis", Transport), ("rediss", Transport), ("sentinel", SentinelTransport)):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:{cls.__name__}"
        _transport_cache.pop(scheme, None)  # in case kombu resolved the stock class already
