"""The delivery path's ledger work, counted: claim_due + deliver() (or deliver_chunk, as a
deliver_many message runs it) for N outbox deliveries on a fresh PostgreSQL database, in this
process, no broker. Prints deliveries/s, CPU per delivery, and per delivery: SQL statements,
SQLAlchemy transaction events, pool checkouts, and network round trips (psycopg exchanges that
waited on the socket: BEGIN, COMMIT and a pool ping each count, a statement too).

    python bench/ledger_round_trips.py [N] [--chunk] [--profile]

Run from a tree with that tree on PYTHONPATH to measure it (e.g. an older copy beside this one).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _count_round_trips(counts: dict) -> None:
    """Count every psycopg exchange that waits on the socket at least once."""
    import psycopg.connection as pc

    wait = pc.waiting.wait

    def counting(gen):
        try:
            state = next(gen)
        except StopIteration as done:
            return done.value
        counts["round trips"] += 1
        while True:
            ready = yield state
            try:
                state = gen.send(ready)
            except StopIteration as done:
                return done.value

    pc.waiting.wait = lambda gen, *a, **k: wait(counting(gen), *a, **k)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", type=int, nargs="?", default=1000)
    parser.add_argument("--chunk", action="store_true", help="deliver_chunk, 10 claims at a time")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    from sqlalchemy import event, insert

    import syndicate
    from bench.cluster import write_config
    from bench.common import FreshDatabase
    from syndicate import settings as settings_mod
    from syndicate.engine import deliver as deliver_mod
    from syndicate.engine.dispatch import claim_due
    from syndicate.ledger.db import close_ledger, open_ledger, transaction
    from syndicate.ledger.models import Delivery, utcnow

    print("syndicate from", syndicate.__file__)
    root = Path(tempfile.mkdtemp(prefix="ledger-round-trips-"))
    with FreshDatabase("roundtrips") as url:
        config = write_config(root / "settings.toml", store_url=url, broker_url="redis://127.0.0.1:6379/15",
                              outbox=root / "outbox", run={"claim_ttl": "30m"},
                              channels='[channels.y]\nkind = "x"\nprovider = "outbox"\n')
        settings = settings_mod.load(config)
        factory = open_ledger(url)
        engine = factory.kw["bind"]
        now = utcnow()
        with transaction(factory) as s:
            s.execute(insert(Delivery), [{"key": uuid.uuid4().hex, "subject": f"p:{i}", "channel": "y", "kind": "x",
                                          "provider": "outbox", "state": "planned",
                                          "due_at": now - timedelta(seconds=2), "payload": {"text": f"Post {i}"},
                                          "created_at": now, "updated_at": now} for i in range(args.count)])
        counts = dict.fromkeys(("statements", "begin", "commit", "rollback", "checkouts", "round trips"), 0)
        kinds: dict[str, int] = {}

        def statement(_conn, _cursor, sql, *_rest):
            counts["statements"] += 1
            key = " ".join(sql.split()[:3])[:50]
            kinds[key] = kinds.get(key, 0) + 1

        def bump(name):
            return lambda *_a: counts.__setitem__(name, counts[name] + 1)

        event.listen(engine, "before_cursor_execute", statement)
        for name in ("begin", "commit", "rollback"):
            event.listen(engine, name, bump(name))
        event.listen(engine.pool, "checkout", bump("checkouts"))
        _count_round_trips(counts)
        profile = cProfile.Profile() if args.profile else None
        providers: dict = {}
        done = 0
        cpu, wall = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        while done < args.count and (claims := claim_due(factory, now - timedelta(seconds=2),
                                                         limit=min(100, args.count - done),
                                                         ttl=timedelta(minutes=30), actor="bench")):
            if args.chunk:
                for i in range(0, len(claims), 10):
                    outcomes = deliver_mod.deliver_chunk(
                        factory, settings, [(c.delivery_id, c.token, c.channel) for c in claims[i:i + 10]],
                        actor="bench", provider_cache=providers)
                    assert all(o.state == "sent" for o in outcomes), outcomes
                    done += len(outcomes)
                continue
            for claim in claims:
                outcome = deliver_mod.deliver(factory, settings, claim.delivery_id, claim.token, actor="bench",
                                              provider_cache=providers, channel=claim.channel)
                assert outcome.state == "sent", outcome
                done += 1
        if profile:
            profile.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{done} delivered ({'chunks of 10' if args.chunk else 'one by one'}) in {wall:.2f} s = "
              f"{done / wall:.0f}/s; CPU {cpu:.2f} s = {cpu / done * 1000:.2f} ms a delivery")
        print("per delivery:", ", ".join(f"{k} {v / done:.2f}" for k, v in counts.items()))
        for key, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"   {n / done:6.2f}  {key}")
        if profile:
            pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
        close_ledger(url)


if __name__ == "__main__":
    main()
