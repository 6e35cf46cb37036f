"""One poll of every feed in a URL list, as its own process (timed from outside, like r2e).

    python bench/poll_driver.py --urls FILE --store URL --driver library|library-16|sequential

library: the library's poll, engine/poll.py poll_feeds with the settings' defaults (fetch.concurrency
16, fetch.per_host 2), as engine/runner.py run_once calls it.
library-N: the same with fetch.concurrency = N (per_host stays 2).
sequential: poll_feed for one feed after another (what each per-feed worker task does).
Prints one JSON line: the statuses counted and the poll's own duration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--urls", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--driver", choices=["library", "library-16", "sequential"], default="library")
    args = parser.parse_args()

    from syndicate import settings as settings_mod
    from syndicate.engine.poll import poll_feed, poll_feeds
    from syndicate.ledger.db import open_ledger
    from syndicate.ledger.models import utcnow

    start = time.perf_counter()  # after imports, as bench/r2e_timed.py measures rss2email
    urls = json.loads(Path(args.urls).read_text())
    settings = settings_mod.from_dict({
        "site": {"name": "Bench", "url": "https://bench.example"},
        "store": {"url": args.store},
        "feeds": [{"name": f"f{i:03d}", "url": u} for i, u in enumerate(urls)],
        "channels": {},
        **({"fetch": {"concurrency": int(args.driver.split("-")[1])}} if "-" in args.driver else {}),
    }, base_dir=Path(args.store.removeprefix("sqlite:///")).parent)
    factory = open_ledger(settings.store_url)
    now = utcnow()
    if args.driver.startswith("library"):
        results = poll_feeds(factory, settings, settings.feeds, now)
    elif args.driver == "sequential":
        results = [poll_feed(factory, settings, feed, now) for feed in settings.feeds]
    took = time.perf_counter() - start
    counts = Counter(r.status for r in results)
    print(json.dumps({"statuses": counts, "poll_seconds": took,
                      "posts": sum(r.new + r.recorded + r.held for r in results)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
