"""The Threads adapter against the local Threads fake: container, status poll, publish."""

from __future__ import annotations

import pytest
from fakes import start_fake
from test_providers_http import build, job

from syndicate.providers.base import AuthExpired, OutcomeUnknown, Permanent, RateLimited, Retryable

PAYLOAD = {"media_type": "TEXT", "text": "Coping with grief: five small steps for hard days. "
                                        "https://harborwellness.example/blog/grief/"}
POST_URL = "https://harborwellness.example/blog/grief/"


@pytest.fixture
def th():
    with start_fake("threads") as (_base, fake):
        yield fake


def test_create_poll_publish(make_settings, monkeypatch, th):
    th.in_progress_polls = 2
    provider = build(make_settings, monkeypatch, th, "threads")
    result = provider.send(job(PAYLOAD, kind="threads", post_url=POST_URL))
    create, publish = th.calls("POST")
    assert create["path"] == "/v1.0/me/threads"
    assert create["form"] == {**PAYLOAD, "link_attachment": POST_URL}
    assert create["headers"]["authorization"] == f"Bearer {th.TOKEN}"
    container = next(iter(th.containers))
    polls = th.calls("GET", rf"^/v1.0/{container}$")
    assert [p["query"]["fields"] for p in polls] == ["status,error_message"] * 3
    assert publish["path"] == "/v1.0/me/threads_publish" and publish["query"] == {"creation_id": container}
    assert result.ref in th.posts
    assert result.url.startswith("https://www.threads.net/@harborwellness/post/")
    assert result.details["container"] == container


def test_link_attachment_can_be_turned_off_and_user_id_set(make_settings, monkeypatch, th):
    provider = build(make_settings, monkeypatch, th, "threads", link_attachment=False, user_id=th.USER_ID)
    provider.send(job(PAYLOAD, post_url=POST_URL))
    create = th.calls("POST")[0]
    assert create["path"] == f"/v1.0/{th.USER_ID}/threads" and "link_attachment" not in create["form"]


def test_container_error_is_permanent_and_nothing_published(make_settings, monkeypatch, th):
    th.container_outcome = "ERROR"
    with pytest.raises(Permanent, match="Media processing failed"):
        build(make_settings, monkeypatch, th, "threads").send(job(PAYLOAD))
    assert th.calls("POST", "threads_publish") == [] and th.posts == {}


def test_container_still_in_progress_is_retryable(make_settings, monkeypatch, th):
    th.container_outcome = "IN_PROGRESS"
    provider = build(make_settings, monkeypatch, th, "threads", publish_wait=0.3, poll_interval=0.05)
    with pytest.raises(Retryable, match="still IN_PROGRESS") as err:
        provider.send(job(PAYLOAD))
    assert type(err.value) is Retryable
    assert th.calls("POST", "threads_publish") == []


def test_container_status_polls_back_off(make_settings, monkeypatch, th):
    """T4: reads of a container still IN_PROGRESS double their interval (Meta asks for few reads)."""
    import time

    real_sleep, slept = time.sleep, []
    monkeypatch.setattr(time, "sleep", lambda seconds: (slept.append(seconds), real_sleep(seconds)))
    th.in_progress_polls = 6
    build(make_settings, monkeypatch, th, "threads", poll_interval=0.05, publish_wait=20).send(job(PAYLOAD))
    container = next(iter(th.containers))
    assert len(th.calls("GET", rf"^/v1.0/{container}$")) == 7
    assert slept == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]


def test_lost_answer_creating_the_container_is_retryable(make_settings, monkeypatch, th):
    provider = build(make_settings, monkeypatch, th, "threads")
    provider.timeout = (1, 0.5)
    th.fail_next("stall", path=r"/threads$", delay=2)
    with pytest.raises(Retryable) as err:
        provider.send(job(PAYLOAD))
    assert type(err.value) is Retryable  # a container is not a post


def test_lost_answer_publishing_is_outcome_unknown(make_settings, monkeypatch, th):
    provider = build(make_settings, monkeypatch, th, "threads")
    provider.timeout = (1, 0.5)
    th.fail_next("stall", path="threads_publish", delay=2)
    with pytest.raises(OutcomeUnknown):
        provider.send(job(PAYLOAD))


@pytest.mark.parametrize("kind, error", [("401", AuthExpired), ("429", RateLimited), ("400", Permanent),
                                         ("500", OutcomeUnknown), ("503", OutcomeUnknown)])
def test_error_mapping(make_settings, monkeypatch, th, kind, error):
    th.fail_next(kind, path="threads_publish", retry_after=120)
    with pytest.raises(error):
        build(make_settings, monkeypatch, th, "threads").send(job(PAYLOAD))


def test_check(make_settings, monkeypatch, th):
    provider = build(make_settings, monkeypatch, th, "threads")
    assert provider.check() == f"Threads @harborwellness ({th.USER_ID}), API v1.0"
    th.expire_tokens()
    with pytest.raises(AuthExpired, match="Threads 400"):
        provider.check()


def test_a_host_that_reads_no_bearer_token_is_named_by_check(make_settings, monkeypatch, th):
    """T3: Meta documents only the access_token parameter; should graph.threads.net ever ignore
    the Bearer header, check (the same auth as the send) fails saying so, before any post."""
    provider = build(make_settings, monkeypatch, th, "threads")
    th.bearer_accepted = False
    with pytest.raises(AuthExpired, match=r"read no access token from the Authorization header \(scheme Bearer\)") as err:
        provider.check()
    assert th.TOKEN not in str(err.value)
    with pytest.raises(AuthExpired, match="Authorization header"):
        provider.send(job(PAYLOAD, kind="threads"))
    assert th.containers == {} and th.posts == {}
