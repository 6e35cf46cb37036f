"""What a worker loads, and where (issue 18, worker memory; workers/preload.py).

Celery's prefork main process only hands messages to its pool children: it loads Celery, the
settings and the task names, never the ledger, the renderers or the feed parser. A pool child
loads the delivery path at start, before its first task, and not the renderers, the feed parser
or what only email channels use. Each test runs a fresh interpreter, so what an earlier test
imported cannot hide a module that comes back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from syndicate import providers
from syndicate.providers.batching import DirectSendProvider
from syndicate.providers.smtp import SmtpProvider

REPO = Path(__file__).resolve().parents[1]

# Never in the main process: the ledger and everything above it.
NOT_IN_MAIN = ["sqlalchemy", "psycopg", "requests", "mjml", "nh3", "regex", "jinja2", "markupsafe", "feedparser",
               "syndicate.ledger.db", "syndicate.ledger.models", "syndicate.engine", "syndicate.render",
               "syndicate.feeds", "syndicate.email", "syndicate.audience", "syndicate.providers.smtp",
               "syndicate.providers.batching", "syndicate.web", "alembic", "rich"]
# Never in a pool child at start, for channels of posts through the outbox on a demo site.
NOT_IN_CHILD = ["requests", "mjml", "nh3", "regex", "jinja2", "markupsafe", "feedparser", "syndicate.render",
                "syndicate.feeds", "syndicate.email.message", "syndicate.email.recipients", "syndicate.audience",
                "syndicate.engine.poll", "syndicate.engine.alerts", "syndicate.engine.actions", "syndicate.web",
                "alembic", "rich"]

SETTINGS = """
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
timezone = "America/New_York"
address = "120 Water Street, Portland, ME 04101"

[store]
url = "sqlite:///{ledger}"

[broker]
url = "redis://127.0.0.1:1/0"

[outbox]
dir = "{outbox}"

[web]
secret_env = "SYN_MEMORY_TEST_SECRET"

[channels.x]
kind = "x"
provider = "outbox"

[channels.bsky]
kind = "bluesky"
provider = "outbox"
{extra}
"""

SMTP_CHANNEL = """
[channels.news]
kind = "email"
provider = "smtp"
to = ["reader@example.org"]
[channels.news.options]
host = "127.0.0.1"
"""


def _loaded(tmp_path: Path, code: str, extra: str = "") -> list[str]:
    config = tmp_path / "settings.toml"
    config.write_text(SETTINGS.format(ledger=tmp_path / "ledger.db", outbox=tmp_path / "outbox", extra=extra))
    env = {**os.environ, "SYNDICATE_CONFIG": str(config), "SYN_MEMORY_TEST_SECRET": "pJ3vQ8xT2mWcK7nR5bYz9aLfD4hGsE6u"}
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _present(modules: list[str], names: list[str]) -> list[str]:
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


MAIN_PROCESS = """
import argparse, os
from syndicate.cli import workers as cli_workers
from syndicate.cli.common import load_settings
settings = load_settings(argparse.Namespace(config=os.environ["SYNDICATE_CONFIG"]), signing=True)
cli_workers._require_secret(settings)   # what `syndicate worker` checks before Celery starts
from workers.app import app
app.loader.import_default_modules()     # what Celery's worker imports before forking: workers.tasks
assert "syndicate.deliver" in app.tasks and "syndicate.dispatch" in app.tasks
"""


def test_the_main_process_loads_neither_the_ledger_nor_the_renderers(tmp_path):
    modules = _loaded(tmp_path, MAIN_PROCESS, extra=SMTP_CHANNEL)
    assert "workers.tasks" in modules and "syndicate.settings" in modules
    assert _present(modules, NOT_IN_MAIN) == []


def test_a_pool_child_loads_the_delivery_path_at_start_and_nothing_rare(tmp_path):
    from syndicate.ledger.db import close_ledger, open_ledger

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    open_ledger(url)  # migrated, as `syndicate` leaves it: the child opens it without Alembic
    close_ledger(url)
    warmed = ("import threading, syndicate.ledger.db as db\nfrom workers.preload import WARM_THREAD\n"
              "[t.join(60) for t in threading.enumerate() if t.name == WARM_THREAD]\n"
              "assert list(db._factories) == [db_url()]\n")  # the ledger is open before the first task
    modules = _loaded(tmp_path, MAIN_PROCESS + "from workers.app import _pool_child_start, app\n_pool_child_start()\n"
                      "db_url = lambda: app.conf.syndicate_settings.store_url\n" + warmed)
    assert {"sqlalchemy.orm", "syndicate.engine.deliver", "syndicate.engine.planner", "syndicate.engine.digest",
            "syndicate.engine.reshare", "syndicate.providers.outbox"} <= set(modules)
    assert _present(modules, NOT_IN_CHILD) == []


def test_a_pool_child_loads_what_the_settings_make_every_send_use(tmp_path, make_settings):
    from workers.preload import modules_for

    quiet = make_settings(site={"url": "https://harborwellness.example"},
                          channels={"x": {"kind": "x", "provider": "outbox"}})
    assert "requests" not in modules_for(quiet) and "syndicate.email.message" not in modules_for(quiet)
    busy = make_settings(site={"url": "https://harborwellness.org"},
                         feeds=[{"name": "blog", "url": "https://harborwellness.org/feed"}],
                         channels={"x": {"kind": "x", "provider": "x"},
                                   "news": {"kind": "email", "provider": "outbox", "to": ["reader@example.org"]}})
    names = modules_for(busy)
    assert {"requests", "syndicate.providers.x", "syndicate.email.message", "syndicate.engine.poll"} <= set(names)


def test_signing_providers_by_name_are_the_classes_that_sign():
    signing = {name for name in providers.REGISTRY
               if issubclass(providers.get(name), (SmtpProvider, DirectSendProvider))}
    assert signing == providers.SIGNS_LINKS


def test_cancelled_timers_are_dropped_and_the_live_ones_still_run_in_order():
    from kombu.asynchronous.timer import Timer

    from workers.timers import purge

    timer, ran = Timer(), []
    # As the main process does per task: a soft time limit timer, cancelled when the task ends.
    finished = [timer.call_at(100.0 + n, ran.append, (f"finished {n}",)) for n in range(500)]
    for entry in finished:
        timer.cancel(entry)
    timer.call_at(2.0, ran.append, ("second",))
    timer.call_at(1.0, ran.append, ("first",))
    assert len(timer) == 502
    assert purge(timer) == 500 and len(timer) == 2
    assert purge(timer) == 0
    ticks = iter(timer)
    for _ in range(5):  # the timer yields (None, None) once nothing is due
        _, entry = next(ticks)
        if entry is not None:
            entry()
    assert ran == ["first", "second"]


def test_the_worker_runs_the_timer_purge():
    from workers.app import make_app
    from workers.timers import PurgeCancelledTimers

    assert PurgeCancelledTimers in make_app().steps["worker"]
