"""Per-recipient messages from a MessageTemplate: the same bytes as the email package's
``build_message``, and the same message (headers, parts, encodings) as before templates."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from test_render_support import demo_post, demo_settings, sensitive_post
from test_smtp_support import SECRET

from syndicate.audience import subscribers
from syndicate.email.lint import lint_file, site_hosts
from syndicate.email.message import MessageTemplate, PersonalizedMessage, _personalize_slow, personalize
from syndicate.render import email as render_email
from syndicate.render.payloads import digest_payload, email_payload

WHEN = datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
TOKENS = ["InJlYWRlcjBAZXhhbXBsZS5vcmci.xJ3k2mVfb5PzB7yqYVZ_jXq0Yg8", "tok", "a<&>\"b'", "x" * 300, "ü-tök"]
RECIPIENTS = ["reader@example.org", '"Zoë Müller" <zoe@example.org>', "Ana <ana@example.org>",
              "a.very.long.local.part.for.folding.purposes.only@subdomain.of.a.long.domain.example.org"]
MESSAGE_IDS = ["<d-42.0123456789abcdef@wellness.example>",
               "<" + "k" * 70 + ".0123456789abcdef@harborwellness.example>", "not a message id"]


def _payload(post=None, **changes) -> dict:
    settings = demo_settings()
    payload = email_payload(post or demo_post(), settings, "newsletter", settings.channels["newsletter"])
    return {**payload, **changes}


def _digest() -> dict:
    settings = demo_settings()
    edition = {"key": "e1", "since": "2024-03-01T00:00:00+00:00", "until": "2024-03-08T00:00:00+00:00",
               "at": "2024-03-08T09:00:00+00:00", "posts": [1, 2]}
    return digest_payload([demo_post(), sensitive_post()], settings, "newsletter", edition)


LONG_LINE = "Breathe in slowly, hold, and breathe out; " * 6
VARIANTS = {
    "post": _payload(),
    "sensitive": _payload(sensitive_post()),
    "digest": _digest(),
    "non-ascii subject and sender": _payload(subject="Grüße aus der Praxis — ein ruhiger Start in die Woche, "
                                                     "mit Übungen für jeden Tag 🌿",
                                             **{"from": '"Praxis Müller & Söhne — Beratung" <news@wellness.example>'}),
    "long lines, token late": {**_payload(), "text": "\n".join([LONG_LINE] * 12) + "\nLeave: "
                               "https://wellness.example/unsubscribe?u={token}\n"},
    "token in the first lines": {**_payload(), "text": "Leave: https://wellness.example/unsubscribe?u={token}\n"
                                 + "\n".join([LONG_LINE] * 12) + "\n"},
    "short ascii (7bit)": {**_payload(), "text": "Hello.\nLeave: https://wellness.example/u/{token}\n",
                           "html": "<p>Hi</p>\n<a href=\"https://wellness.example/u/{token}\">x</a>",
                           "unsubscribe_https": "https://wellness.example/u/{token}"},
    "short non-ascii (8bit)": {**_payload(), "text": "Grüße.\nhttps://wellness.example/u/{token}\n",
                               "html": "<p>Grüße</p>",
                               "unsubscribe_https": "https://wellness.example/u/{token}"},
    "mostly non-latin (base64)": {**_payload(), "text": ("Καλημέρα σας, αυτή είναι μια μεγάλη γραμμή κειμένου "
                                                          "στα ελληνικά για δοκιμή. " * 4 + "\n") * 14
                                  + "https://wellness.example/unsubscribe?u={token}\n"},
    "token deep in long lines": {**_payload(), "text": "".join(
        f"{'é=x ' * n}https://wellness.example/unsubscribe?u={{token}} {'ü ' * n}\t\n" for n in range(0, 90, 7)),
        "html": "".join(f"<p>{'a=é' * n}<a href=\"https://wellness.example/unsubscribe?u={{token}}\">"
                        f"{'z' * n} </a></p> " for n in range(0, 200, 13))},
    "http unsubscribe": _payload(unsubscribe_https="http://wellness.example/u/{token}"),
    "mailto with token": _payload(unsubscribe_mailto="mailto:leave+{token}@wellness.example"),
    "mailto with its own subject": _payload(unsubscribe_mailto="mailto:leave@wellness.example?subject=stop"),
    "no mailto, From's address": _payload(unsubscribe_mailto=None, reply_to=None),
    "no web link": _payload(unsubscribe_https=None),
    "web link without token": _payload(unsubscribe_https="https://wellness.example/preferences"),
    "url with query (escaped in html)": {**_payload(), "unsubscribe_https": "https://wellness.example/u?a=1&t={token}",
                                         "html": '<a href="https://wellness.example/u?a=1&amp;t={token}">x</a> '
                                                 "https://wellness.example/u?a=1&t={token}",
                                         "text": "https://wellness.example/u?a=1&t={token}\n"},
    "preferences link only (no unsubscribe token)": _payload(unsubscribe_https="https://wellness.example/leave"),
    "no preferences link": _payload(preferences_https=None),
    "both links on one line": {**_payload(), "text": "Leave https://wellness.example/unsubscribe?u={token} or "
                               "choose https://wellness.example/preferences/{token}\n" + LONG_LINE * 3 + "\n"},
}


def _model(payload, recipient, token, message_id, boundary):
    model = _personalize_slow(payload, recipient, token, message_id=message_id, date=WHEN)
    model.set_boundary(boundary)
    return model


@pytest.mark.parametrize("name", list(VARIANTS))
def test_template_writes_the_email_packages_bytes(name):
    payload = VARIANTS[name]
    template = MessageTemplate.from_payload(payload)
    for recipient in RECIPIENTS:
        for token in TOKENS:
            for message_id in MESSAGE_IDS:
                expected = _model(payload, recipient, token, message_id, template.boundary.decode())
                got = template.for_recipient(recipient, token, message_id, date=WHEN)
                assert got == expected.as_bytes(policy=policy.SMTP), (recipient, token, message_id)


def _parsed(data: bytes):
    msg = message_from_bytes(data, policy=policy.default)
    # Stripped: the old folding could put a value on its own line (a leading space when parsed).
    headers = [(k, str(v).strip()) for k, v in msg.items() if k.lower() not in {"content-type"}]
    parts = [(p.get_content_type(), p.get_content_charset(), p["Content-Transfer-Encoding"],
              [(k, str(v)) for k, v in p.items()], p.get_content()) for p in msg.iter_parts()]
    return msg.get_content_type(), headers, parts


@pytest.mark.parametrize("name", list(VARIANTS))
def test_same_message_as_before_templates(name, monkeypatch):
    """Against build_message as it was (the email package's default policy, List-Unsubscribe
    RFC 2047-encoded when long): the parsed headers and decoded parts are the same."""
    payload = VARIANTS[name]
    template = MessageTemplate.from_payload(payload)
    for recipient in RECIPIENTS[:2]:
        for token in TOKENS[:3]:
            got = _parsed(template.for_recipient(recipient, token, MESSAGE_IDS[0], date=WHEN))
            with monkeypatch.context() as patch:
                patch.setattr(render_email, "MESSAGE_POLICY", policy.default)
                before = _personalize_slow(payload, recipient, token, message_id=MESSAGE_IDS[0], date=WHEN)
            assert got == _parsed(before.as_bytes(policy=policy.SMTP))
            assert got[0] == "multipart/alternative"
            assert [p[0] for p in got[2]] == ["text/plain", "text/html"]


def test_the_encodings_are_all_exercised():
    seen = set()
    for payload in VARIANTS.values():
        data = MessageTemplate.from_payload(payload).for_recipient("a@example.org", "tok", date=WHEN)
        seen |= {p["Content-Transfer-Encoding"] for p in message_from_bytes(data, policy=policy.default).iter_parts()}
    assert seen == {"7bit", "8bit", "quoted-printable", "base64"}


def test_tokens_land_in_headers_and_both_parts():
    payload = VARIANTS["url with query (escaped in html)"]
    msg = message_from_bytes(bytes(personalize(payload, "ana@example.org", "a<b")), policy=policy.default)
    assert msg["List-Unsubscribe"].startswith("<https://wellness.example/u?a=1&t=a<b>")
    html = msg.get_body(("html",)).get_content()
    assert 'href="https://wellness.example/u?a=1&amp;t=a&lt;b"' in html and "u?a=1&t=a<b" in html
    assert msg.get_body(("plain",)).get_content() == "https://wellness.example/u?a=1&t=a<b\n"


def test_the_preferences_link_carries_the_same_token_in_both_parts():
    payload = _payload()
    assert payload["preferences_https"] == "https://wellness.example/preferences/{token}"
    for message in (personalize(payload, "ana@example.org", "a<b"),
                    message_from_bytes(MessageTemplate.from_payload(payload).for_recipient("ana@example.org", "a<b"),
                                       policy=policy.default)):
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert '<a href="https://wellness.example/preferences/a&lt;b">Manage your preferences</a>' in html
        assert "Manage your preferences: https://wellness.example/preferences/a<b" in text.splitlines()
        assert "{token}" not in html + text


def test_list_unsubscribe_is_never_rfc2047_encoded():
    token = TOKENS[0]
    data = personalize(_payload(), "ana@example.org", token).as_bytes(policy=policy.SMTP)
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    field = head[head.index("List-Unsubscribe:"):head.index("List-Unsubscribe-Post:")]
    assert "=?" not in field
    assert field.replace("\r\n ", " ").strip() == (f"List-Unsubscribe: <https://wellness.example/unsubscribe?u={token}>, "
                                                   f"<mailto:newsletter@wellness.example?subject=unsubscribe%20{token}>")
    assert all(len(line) <= 998 for line in head.split("\r\n"))


def test_personalized_message_behaves_like_an_email_message():
    payload = _payload()
    msg = personalize(payload, "ana@example.org", "tok", message_id="<m-1@wellness.example>")
    assert isinstance(msg, PersonalizedMessage)
    assert msg["Message-ID"] == "<m-1@wellness.example>" and msg["To"] == "ana@example.org"
    assert msg["Subject"] == payload["subject"] and msg["X-Nope"] is None
    assert "tok" in msg["List-Unsubscribe"] and msg.get("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    fast, crlf = bytes(msg), msg.as_bytes(policy=policy.SMTP)
    assert crlf == fast.replace(b"\n", b"\r\n")
    assert "_headers" not in msg.__dict__  # no MIME work so far
    assert msg.get_body(("plain",)).get_content().count("u=tok") >= 1  # builds the full message
    assert bytes(msg) == fast and msg.as_bytes(policy=policy.SMTP) == crlf and msg.as_string()
    del msg["Message-ID"]
    assert b"Message-ID" not in bytes(msg)


def test_header_injection_is_still_refused():
    with pytest.raises(ValueError):
        personalize(_payload(), "a@example.org\r\nBcc: everyone@example.org", "tok")
    with pytest.raises(ValueError):
        personalize(_payload(), "a@example.org", "tok\r\nBcc: everyone@example.org")
    with pytest.raises(ValueError):
        MessageTemplate.from_payload(_payload()).for_recipient("a@example.org\nBcc: x@example.org", "tok")


def test_each_message_has_its_own_date_and_message_id():
    template = MessageTemplate.from_payload(_payload())
    one, two = (message_from_bytes(template.for_recipient("a@example.org", "t"), policy=policy.default)
                for _ in range(2))
    assert one["Message-ID"] != two["Message-ID"] and one["Message-ID"].endswith("@wellness.example>")
    assert one["Date"].datetime.tzinfo is not None


def test_templates_are_cached_per_payload_content():
    payload = _payload()
    assert MessageTemplate.for_payload(payload) is MessageTemplate.for_payload(dict(payload))
    changed = {**payload, "html": payload["html"] + "<p>more</p>"}
    assert MessageTemplate.for_payload(changed) is not MessageTemplate.for_payload(payload)
    assert b"<p>more</p>" in bytes(personalize(changed, "a@example.org", "t"))


def test_personalized_messages_are_lint_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)
    settings = demo_settings(channels={"newsletter": {"kind": "email",
                                                      "unsubscribe_url": "https://wellness.example/u/{token}",
                                                      "unsubscribe_mailto": "leave@wellness.example"}})
    payload = email_payload(demo_post(), settings, "newsletter", settings.channels["newsletter"])
    for i, address in enumerate(["ana@example.org", "Zoë <zoe@example.org>"]):
        path = tmp_path / f"m{i}.eml"
        path.write_bytes(personalize(payload, address, subscribers.unsubscribe_token(settings, "ana@example.org"))
                         .as_bytes(policy=policy.SMTP))
        assert lint_file(path, site_hosts(settings)) == []
