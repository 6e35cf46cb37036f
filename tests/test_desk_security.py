"""Sign-in and session hardening (security probe F1-F4 and its low findings): parallel guesses
against a real `syndicate serve`, a lockout that reveals no names and locks nobody out from
elsewhere, server-side sign-out, an absolute session lifetime, the signing key's strength and
rotation, and the request-level checks (Host, Origin, Secure/HSTS, CR/LF in next, huge ids)."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
from datetime import date, timedelta

import pytest
import requests
from sqlalchemy import delete, select
from test_desk import PASSWORD, SECRET, make_desk, sign_in, text_of, token
from test_smtp_support import free_port, wait_for

from syndicate.audience import subscribers
from syndicate.engine.runner import ledger
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Event, SignInThrottle, StaffUser
from syndicate.settings import SettingsError, signing_secret
from syndicate.web import auth, create_app

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD_SECRET = "bJ0q3Xr2kQ9vYc7mN4tLw8eHs5uAo1Pz6iGd"
OLD_SECRET = "Old-kEy-7hR2mX9qL4vB8nC3wZ6tY1pF5sJ0"


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)
    monkeypatch.delenv("SYNDICATE_SECRET_OLD", raising=False)


@pytest.fixture
def desk1(make_settings, demo_feed_path):
    return make_desk(make_settings, demo_feed_path)


# ---------------------------------------------------------------- F1: parallel guesses, real server


def _serve(tmp_path, store_url: str, env_extra: dict | None = None, web: str = ""):
    port = free_port()
    config = tmp_path / "serve.toml"
    config.write_text(f'''
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
[store]
url = "{store_url}"
[web]
{web}
''')
    env = {**os.environ, "SYNDICATE_SECRET": GOOD_SECRET, **(env_extra or {})}
    proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli", "--config", str(config), "serve", "--port",
                             str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}", config


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.timeout(240)
@pytest.mark.parametrize("guesses", [40])
def test_parallel_wrong_guesses_are_counted_exactly_and_none_past_the_limit_is_checked(
        tmp_path, store_url, make_settings, guesses):
    settings = make_settings(store_url=store_url)
    factory = ledger(settings)
    with transaction(factory) as s:  # PostgreSQL keeps rows between tests: start clean
        s.execute(delete(StaffUser))
        s.execute(delete(SignInThrottle))
        s.execute(delete(Event))
    auth.add_user(factory, "racer", "another long passphrase racer")
    proc, base, _ = _serve(tmp_path, settings.store_url)
    try:
        wait_for(lambda: _up(f"{base}/healthz"), 60, "syndicate serve to answer")
        clients = []
        for _ in range(guesses):  # each guess its own session and CSRF token, as an attacker would
            client = requests.Session()
            page = client.get(f"{base}/desk/sign-in", timeout=10).text
            clients.append((client, re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)))
        start, answers = threading.Barrier(guesses), [None] * guesses

        def guess(i: int) -> None:
            client, csrf = clients[i]
            start.wait()
            answers[i] = client.post(f"{base}/desk/sign-in", timeout=120, allow_redirects=False, data={
                "name": "racer", "password": f"wrong guess number {i}", "csrf_token": csrf}).text

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(guesses)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(150)
        checked = sum("do not match" in a for a in answers)
        throttled = sum("Too many tries" in a for a in answers)
        assert (checked, throttled) == (auth.MAX_FAILURES, guesses - auth.MAX_FAILURES)
        with transaction(factory) as s:
            counts = dict(s.execute(select(SignInThrottle.key, SignInThrottle.attempts)).all())
            refused = s.scalar(select(Event.id).where(Event.action == "sign-in refused").order_by(Event.id.desc()))
            n_refused = len(s.scalars(select(Event.id).where(Event.action == "sign-in refused")).all())
        assert counts == {"name:racer|127.0.0.1": guesses, "client:127.0.0.1": guesses}
        assert refused is not None and n_refused == auth.MAX_FAILURES  # exactly five passwords were checked
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------- F3: no name enumeration, no lockout DoS


def test_unknown_names_are_answered_and_timed_like_real_ones(desk1):
    answers = {}
    timings = {"ana": [], "ghost-nonexistent": []}
    for name, addr in (("ana", "10.0.0.1"), ("ghost-nonexistent", "10.0.0.2")):
        client = desk1.app.test_client()
        for attempt in range(auth.MAX_FAILURES + 2):
            csrf = token(client, "/desk/sign-in")
            began = time.perf_counter()
            response = client.post("/desk/sign-in", data={"name": name, "password": "wrong password!",
                                                          "csrf_token": csrf}, environ_base={"REMOTE_ADDR": addr})
            if attempt < auth.MAX_FAILURES:
                timings[name].append(time.perf_counter() - began)
            answers.setdefault(name, []).append((response.status_code,
                                                 re.search(r'role="alert">([^<]+)', text_of(response))
                                                 .group(1).strip()))
    assert answers["ana"] == answers["ghost-nonexistent"]
    assert "Too many tries" in answers["ana"][-1][1] and "do not match" in answers["ana"][0][1]
    known, unknown = statistics.median(timings["ana"]), statistics.median(timings["ghost-nonexistent"])
    assert unknown > 0.4 * known, (known, unknown)  # the dummy hash: an unknown name is not answered faster


def test_guesses_from_one_address_never_lock_the_staff_member_out_elsewhere(desk1):
    attacker = desk1.app.test_client()
    for _ in range(auth.MAX_FAILURES * 3):
        sign_in(attacker, password="not the password", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert sign_in(attacker, environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 401  # right password, held
    staff = desk1.app.test_client()
    assert sign_in(staff, environ_base={"REMOTE_ADDR": "198.51.100.4"}).status_code == 302


def test_one_address_spraying_many_names_is_throttled(desk1):
    client = desk1.app.test_client()
    answers = [sign_in(client, name=f"user{i}", password="Spring2026!!", environ_base={"REMOTE_ADDR": "203.0.113.7"})
               for i in range(auth.CLIENT_MAX + 1)]
    assert all("do not match" in text_of(a) for a in answers[:auth.CLIENT_MAX])
    assert "Too many tries" in text_of(answers[-1])


def test_passwords_use_owasps_scrypt_cost_and_older_hashes_are_redone(desk1, monkeypatch):
    assert auth.OWASP_SCRYPT == "scrypt:131072:8:1"
    with transaction(desk1.factory) as s:  # made at the cheaper (test) cost by the fixture
        assert not s.scalar(select(StaffUser.password_hash)).startswith(auth.OWASP_SCRYPT + "$")
    monkeypatch.setattr(auth, "PASSWORD_METHOD", auth.OWASP_SCRYPT)
    client = desk1.app.test_client()
    assert sign_in(client).status_code == 302
    with transaction(desk1.factory) as s:
        assert s.scalar(select(StaffUser.password_hash)).startswith("scrypt:131072:8:1$")
    assert client.get("/desk/").status_code == 200  # the session made after the rehash stays valid


# ---------------------------------------------------------------- F2: sessions end server-side


def test_a_copied_cookie_stops_working_after_sign_out(desk1):
    client = desk1.client()
    assert client.get("/desk/").status_code == 200
    stolen = client.get_cookie("syndicate_desk").value
    response = client.post("/desk/sign-out", data={"csrf_token": token(client)})
    assert response.status_code == 302
    thief = desk1.app.test_client()
    thief.set_cookie("syndicate_desk", stolen)
    assert thief.get("/desk/").status_code == 302
    assert sign_in(desk1.app.test_client()).status_code == 302  # signing in again works


def test_sessions_have_an_absolute_lifetime_besides_the_idle_one(make_settings, demo_feed_path):
    desk = make_desk(make_settings, demo_feed_path, web={"public_url": "https://harborwellness.example/news",
                                                        "session_idle_hours": 2, "session_max_hours": 8})
    assert desk.app.permanent_session_lifetime == timedelta(hours=2)
    client = desk.client()
    with client.session_transaction() as session:
        session["signed_in_at"] -= 7 * 3600  # busy all day: still within the cap
    assert client.get("/desk/").status_code == 200
    with client.session_transaction() as session:
        session["signed_in_at"] -= 3600 + 60  # more than 8 hours since signing in
    assert client.get("/desk/").status_code == 302


# ---------------------------------------------------------------- F4: the signing key


@pytest.mark.parametrize("value", ["a", "desk-test-signing-key", "x" * 48, "abababababababababababababababab"])
def test_a_weak_signing_key_is_refused_with_how_to_make_one(monkeypatch, value, make_settings):
    monkeypatch.setenv("SYNDICATE_SECRET", value)
    settings = make_settings()
    with pytest.raises(SettingsError) as refused:
        signing_secret(settings.web)
    message = str(refused.value)
    assert "\n" not in message and "SYNDICATE_SECRET" in message and (len(value) < 4 or value not in message)
    assert "secrets.token_urlsafe(32)" in message
    with pytest.raises(SettingsError):
        create_app(settings)


def test_serve_refuses_to_start_with_a_weak_key(tmp_path):
    proc, _, _ = _serve(tmp_path, f"sqlite:///{tmp_path / 'l.db'}", {"SYNDICATE_SECRET": "hunter2"})
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode != 0 and "too weak" in output and "token_urlsafe(32)" in output
    assert "hunter2" not in output and "Traceback" not in output


def test_without_a_key_the_unsubscribe_page_says_what_to_do_instead_of_failing(desk1, monkeypatch):
    token_value = subscribers.unsubscribe_token(desk1.settings, "dana@example.org")
    monkeypatch.delenv("SYNDICATE_SECRET")
    response = desk1.app.test_client().post(f"/unsubscribe/{token_value}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 503 and "reply to one of them" in text_of(response)


def test_rotation_accepts_the_old_key_until_the_stated_date(make_settings, monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", OLD_SECRET)
    settings = make_settings(web={"old_secret_until": "2999-01-01"})
    old_unsub = subscribers.unsubscribe_token(settings, "ana@example.org")
    old_confirm = subscribers.confirm_token(settings, "ana@example.org")
    monkeypatch.setenv("SYNDICATE_SECRET", GOOD_SECRET)
    monkeypatch.setenv("SYNDICATE_SECRET_OLD", OLD_SECRET)
    assert subscribers.read_unsubscribe_token(settings, old_unsub) == "ana@example.org"
    assert subscribers.read_confirm_token(settings, old_confirm) == "ana@example.org"
    past = make_settings(web={"old_secret_until": (date.today() - timedelta(days=1)).isoformat()})
    with pytest.raises(subscribers.BadToken):
        subscribers.read_unsubscribe_token(past, old_unsub)
    without = make_settings()
    with pytest.raises(subscribers.BadToken):
        subscribers.read_unsubscribe_token(without, old_unsub)


def test_desk_sessions_survive_a_key_rotation_while_the_old_key_is_accepted(make_settings, demo_feed_path,
                                                                            monkeypatch):
    web = {"public_url": "https://harborwellness.example/news", "old_secret_until": "2999-01-01"}
    monkeypatch.setenv("SYNDICATE_SECRET", OLD_SECRET)
    desk = make_desk(make_settings, demo_feed_path, web=web)
    cookie = desk.client().get_cookie("syndicate_desk").value
    monkeypatch.setenv("SYNDICATE_SECRET", GOOD_SECRET)
    monkeypatch.setenv("SYNDICATE_SECRET_OLD", OLD_SECRET)
    assert create_app(desk.settings).test_client().get("/desk/").status_code == 302  # sanity: no cookie
    app = create_app(desk.settings)
    client = app.test_client()
    client.set_cookie("syndicate_desk", cookie)
    assert client.get("/desk/").status_code == 200
    monkeypatch.delenv("SYNDICATE_SECRET_OLD")
    client = create_app(desk.settings).test_client()
    client.set_cookie("syndicate_desk", cookie)
    assert client.get("/desk/").status_code == 302


def test_unsubscribe_tokens_are_opaque_and_old_style_tokens_still_work(desk1):
    import base64

    from itsdangerous import URLSafeSerializer

    address = "victim1@example.org"
    token_value = subscribers.unsubscribe_token(desk1.settings, address)
    payload = token_value.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert b"victim1" not in decoded and "victim1" not in token_value
    assert subscribers.read_unsubscribe_token(desk1.settings, token_value) == address
    legacy = URLSafeSerializer(SECRET, salt="syndicate.unsubscribe").dumps(address)  # in emails already sent
    assert subscribers.read_unsubscribe_token(desk1.settings, legacy) == address
    tampered = token_value[:3] + ("A" if token_value[3] != "A" else "B") + token_value[4:]
    with pytest.raises(subscribers.BadToken):
        subscribers.read_unsubscribe_token(desk1.settings, tampered)


# ---------------------------------------------------------------- low findings


def test_cr_lf_in_next_and_a_huge_id_are_not_server_errors(desk1):
    client = desk1.app.test_client()
    response = client.post("/desk/sign-in?next=/desk%0d%0aX-Injected:%201", data={
        "name": "ana", "password": PASSWORD, "csrf_token": token(client, "/desk/sign-in")})
    assert response.status_code == 302 and response.headers["Location"] == "/desk/"
    assert "X-Injected" not in response.headers
    assert client.get("/desk/post/99999999999999999999999").status_code == 404
    assert client.get("/desk/delivery/99999999999999999999999").status_code == 404


def test_a_forged_host_header_is_not_echoed_in_redirects(desk1):
    client = desk1.app.test_client()
    assert client.get("/desk", headers={"Host": "evil.example"}).status_code == 400
    response = client.get("/desk", headers={"Host": "harborwellness.example"})
    assert response.status_code == 308 and "evil" not in response.headers["Location"]


def test_a_desk_post_from_another_origin_is_refused_even_with_its_token(desk1):
    client = desk1.client()
    csrf = token(client)
    response = client.post("/desk/sign-out", data={"csrf_token": csrf}, headers={"Origin": "https://evil.example"})
    assert response.status_code == 400 and client.get("/desk/").status_code == 200
    # Our own forms under Referrer-Policy: no-referrer come with "Origin: null" (Chromium).
    response = client.post("/desk/sign-out", data={"csrf_token": csrf}, headers={"Origin": "null"})
    assert response.status_code == 302


def test_over_https_behind_the_proxy_the_cookie_is_secure_and_hsts_is_sent(make_settings, demo_feed_path):
    desk = make_desk(make_settings, demo_feed_path, web={"public_url": "https://harborwellness.example/news",
                                                        "proxy_hops": 1})
    client = desk.app.test_client()
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "harborwellness.example",
               "X-Forwarded-For": "198.51.100.20"}
    page = client.get("/desk/sign-in", headers=headers)
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    response = client.post("/desk/sign-in", headers=headers, data={"name": "ana", "password": PASSWORD,
                                                                    "csrf_token": csrf})
    assert "Secure" in response.headers["Set-Cookie"]
    with transaction(desk.factory) as s:  # the client's address came from the proxy's header
        assert "from 198.51.100.20" in s.scalar(select(Event.detail).where(Event.action == "sign in"))
    plain = desk.app.test_client().get("/desk/sign-in")
    assert "Strict-Transport-Security" not in plain.headers and "Secure" not in plain.headers["Set-Cookie"]


def test_the_desk_csp_lets_staff_browsers_load_images_only_from_the_practice(desk1):
    csp = desk1.client().get("/desk/").headers["Content-Security-Policy"]
    images = re.search(r"img-src ([^;]+)", csp).group(1).split()
    assert "https:" not in images and "'self'" in images
    assert "https://harborwellness.example" in images



def test_test_emails_are_limited_per_person_per_hour(desk1):
    from test_desk import GROUNDING, act

    from syndicate.web.desk import testmail

    client = desk1.client()
    row = desk1.delivery(GROUNDING, "newsletter")
    for n in range(testmail.TESTS_PER_HOUR):
        assert "Test email sent" in text_of(act(client, row.id, "test-email", address=f"me{n}@example.org"))
    page = text_of(act(client, row.id, "test-email", address="one-more@example.org"))
    assert "is the limit" in page
    written = list((desk1.settings.outbox_dir / "newsletter" / "tests").glob("*.eml"))
    assert len(written) == testmail.TESTS_PER_HOUR
