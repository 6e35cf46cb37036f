"""The Pinterest adapter against the local Pinterest fake, bodies checked against the v5 OpenAPI."""

from __future__ import annotations

import pytest
from fakes import start_fake
from test_providers_http import build, job, spec_validator

from syndicate.providers.base import AuthExpired, OutcomeUnknown, Permanent, RateLimited, Retryable

BOARD = "549755885175"
PAYLOAD = {
    "board_id": BOARD,
    "link": "https://harborwellness.example/blog/grief/",
    "title": "Coping with grief: five small steps",
    "description": "Five small steps for hard days, from the Harbor Wellness blog.",
    "alt_text": "A lighthouse at dusk",
    "media_source": {"source_type": "image_url", "url": "https://harborwellness.example/uploads/lighthouse.jpg"},
}


@pytest.fixture
def pin():
    with start_fake("pinterest") as (_base, fake):
        yield fake


def test_create_pin(make_settings, monkeypatch, pin):
    result = build(make_settings, monkeypatch, pin, "pinterest").send(job(PAYLOAD, kind="pinterest"))
    (call,) = pin.calls("POST")
    assert call["path"] == "/v5/pins" and call["json"] == PAYLOAD
    assert call["headers"]["authorization"] == f"Bearer {pin.TOKEN}"
    assert result.ref in pin.pins
    assert result.url == f"https://www.pinterest.com/pin/{result.ref}/"


def test_body_and_answer_match_the_official_openapi(make_settings, monkeypatch, pin):
    validator = spec_validator("pinterest-v5-openapi.yaml", "PinCreate")
    result = build(make_settings, monkeypatch, pin, "pinterest").send(job(PAYLOAD))
    validator.validate(pin.calls("POST")[0]["json"])
    spec_validator("pinterest-v5-openapi.yaml", "Pin").validate(pin.pins[result.ref]["pin"])
    with pytest.raises(Exception):  # noqa: B017 - the validator really rejects a wrong body
        validator.validate({**PAYLOAD, "title": "x" * 101})


@pytest.mark.parametrize("kind, error", [("401", AuthExpired), ("429", RateLimited), ("400", Permanent),
                                         ("500", Retryable), ("stall", OutcomeUnknown), ("drop", OutcomeUnknown)])
def test_error_mapping(make_settings, monkeypatch, pin, kind, error):
    provider = build(make_settings, monkeypatch, pin, "pinterest")
    provider.timeout = (1, 0.5)
    pin.fail_next(kind, retry_after=45, delay=2)
    with pytest.raises(error) as err:
        provider.send(job(PAYLOAD))
    assert str(err.value).startswith("Pinterest")


def test_unknown_board_is_permanent_with_pinterests_message(make_settings, monkeypatch, pin):
    with pytest.raises(Permanent, match="Pinterest 404: Board not found"):
        build(make_settings, monkeypatch, pin, "pinterest").send(job({**PAYLOAD, "board_id": "1"}))


def test_check(make_settings, monkeypatch, pin):
    provider = build(make_settings, monkeypatch, pin, "pinterest")
    assert provider.check().startswith(f"Pinterest business harborwellness, board Wellness Blog ({BOARD}); "
                                       f"if pins fail with code 29, this app has Trial access")
    with pytest.raises(Permanent, match="Board not found"):
        build(make_settings, monkeypatch, pin, "pinterest", board_id="42").check()
    bad = build(make_settings, monkeypatch, pin, "pinterest")
    monkeypatch.setenv("SYN_FAKE_PIN_TOKEN", "expired")
    with pytest.raises(AuthExpired, match="Authentication failed"):
        bad.check()


def test_trial_access_code_29_says_to_use_the_sandbox(make_settings, monkeypatch, pin):
    pin.trial_access = True
    with pytest.raises(AuthExpired, match='code 29|Trial access') as err:
        build(make_settings, monkeypatch, pin, "pinterest").send(job(PAYLOAD))
    assert 'api_base = "https://api-sandbox.pinterest.com"' in str(err.value)
    assert "Standard access" in str(err.value)

