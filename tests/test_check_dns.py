"""`syndicate check --dns` against a real DNS server on the loopback (dnslib): good, missing and
misaligned SPF, DKIM and DMARC records, each missing one with the exact record to publish."""

from __future__ import annotations

import subprocess

import pytest
from dnsserver import DnsServer

from syndicate.cli import main
from syndicate.email import dkim
from syndicate.providers import sending_domain as sd


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[str, str]:
    made = []
    for name in ("ours", "other"):
        path = tmp_path_factory.mktemp("dkim") / f"{name}.pem"
        subprocess.run(["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)
        made.append(path.read_text())
    return made[0], made[1]


def _smtp(from_address: str, **options) -> dict:
    return {"kind": "email", "provider": "smtp", "from_address": from_address,
            "options": {"host": "mail.good.example", "security": "none", **options}}


def _records(keys) -> dict:
    ours, other = (dkim.public_record(dkim.read_key(k)) for k in keys)
    return {
        ("mail.good.example", "A"): ["192.0.2.25"],
        ("mail.good.example", "AAAA"): ["2001:db8::25"],
        # good.example: SPF through include and mx, DKIM key, DMARC: all in place.
        ("good.example", "TXT"): ["google-site-verification=abc", "v=spf1 mx include:_spf.good.example -all"],
        ("good.example", "MX"): ["mx.good.example."],
        ("mx.good.example", "A"): ["192.0.2.99"],
        ("_spf.good.example", "TXT"): ["v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/64 ~all"],
        ("s1._domainkey.good.example", "TXT"): [ours],
        ("_dmarc.good.example", "TXT"): ["v=DMARC1; p=quarantine; rua=mailto:d@good.example"],
        # wrongkey.example: everything there, but the DKIM record is another key, and SPF
        # permits only another network.
        ("wrongkey.example", "TXT"): ["v=spf1 ip4:198.51.100.0/24 -all"],
        ("s1._domainkey.wrongkey.example", "TXT"): [other],
        ("_dmarc.wrongkey.example", "TXT"): ["v=DMARC1; p=reject"],
        # misaligned.example: From there, but signed as (and bouncing to) other.example.
        ("_dmarc.misaligned.example", "TXT"): ["v=DMARC1; p=reject; adkim=s"],
        ("misaligned.example", "TXT"): ["v=spf1 -all"],
        ("other.example", "TXT"): ["v=spf1 a:mail.good.example -all"],
        ("s1._domainkey.other.example", "TXT"): [ours],
        # macro.example: an SPF this checker does not evaluate.
        ("macro.example", "TXT"): ["v=spf1 exists:%{i}.spf.macro.example -all"],
        ("_dmarc.macro.example", "TXT"): ["v=DMARC1; p=none"],
    }


@pytest.fixture
def run_check(make_settings, keys, monkeypatch, capsys):
    monkeypatch.setenv("OUR_DKIM_KEY", keys[0])

    def run(channels: dict) -> tuple[int, str, list[sd.Finding]]:
        with DnsServer(_records(keys)) as server:
            settings = make_settings(channels=channels, deliverability={"dns_nameservers": [server.address]})
            findings = sd.check(settings)
            path = settings.base_dir / "check.toml"
            _write(path, settings, server.address, channels)
            code = main(["--config", str(path), "check", "--dns"])
        return code, capsys.readouterr().out, findings

    return run


def _write(path, settings, nameserver, channels) -> None:
    import json

    lines = ['[site]', 'name = "Harbor"', 'url = "https://good.example"', '[deliverability]',
             f'dns_nameservers = ["{nameserver}"]']
    for name, ch in channels.items():
        lines.append(f"[channels.{name}]")
        for k, v in ch.items():
            if k != "options":
                lines.append(f"{k} = {json.dumps(v)}")
        lines.append(f"[channels.{name}.options]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in ch["options"].items()]
    path.write_text("\n".join(lines) + "\n")


def _by(findings, domain, check):
    return [f for f in findings if f.domain == domain and f.check == check]


def test_a_domain_with_everything_in_place(run_check):
    code, out, findings = run_check({"news": _smtp("news@good.example", dkim_selector="s1",
                                                   dkim_private_key_env="OUR_DKIM_KEY")})
    assert {f.check: f.status for f in findings} == {"SPF": "ok", "DKIM": "ok", "DMARC": "ok", "alignment": "ok"}
    assert code == 0 and "FAIL" not in out and "add:" not in out
    assert "permits mail.good.example (192.0.2.25, 2001:db8::25)" in out


def test_a_domain_with_nothing_gets_each_record_to_add(run_check, keys):
    code, out, findings = run_check({"news": _smtp("news@missing.example", dkim_selector="s1",
                                                   dkim_private_key_env="OUR_DKIM_KEY")})
    assert code == 1
    spf, = _by(findings, "missing.example", "SPF")
    assert spf.status == "fail" and spf.add == 'missing.example. TXT "v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 ~all"'
    key, = _by(findings, "missing.example", "DKIM")
    public = dkim.public_key(dkim.read_key(keys[0]))
    assert key.status == "fail" and key.add.startswith('s1._domainkey.missing.example. TXT "v=DKIM1; k=rsa; p=')
    assert key.add.replace('" "', "").endswith(public + '"')  # split into 255-byte strings, the key whole
    dmarc, = _by(findings, "missing.example", "DMARC")
    assert dmarc.status == "fail"
    assert dmarc.add == '_dmarc.missing.example. TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@missing.example"'
    assert out.count("add: ") == 3 and "FAIL missing.example SPF" in out


def test_a_wrong_key_and_an_spf_that_leaves_the_host_out(run_check, keys):
    code, out, findings = run_check({"news": _smtp("news@wrongkey.example", dkim_selector="s1",
                                                   dkim_private_key_env="OUR_DKIM_KEY")})
    assert code == 1
    key, = _by(findings, "wrongkey.example", "DKIM")
    assert key.status == "fail" and "not the public half" in key.detail
    assert key.add and dkim.public_key(dkim.read_key(keys[0])) in key.add.replace('" "', "")
    spf, = _by(findings, "wrongkey.example", "SPF")
    assert spf.status == "fail"
    assert spf.add == 'wrongkey.example. TXT "v=spf1 ip4:198.51.100.0/24 ip4:192.0.2.25 ip6:2001:db8::25 -all"'
    assert _by(findings, "wrongkey.example", "alignment")[0].status == "ok"


def test_misaligned_dkim_and_return_path(run_check):
    code, out, findings = run_check({"news": _smtp("news@misaligned.example", dkim_selector="s1",
                                                   dkim_domain="other.example", envelope_from="bounce@other.example",
                                                   dkim_private_key_env="OUR_DKIM_KEY")})
    # Each record is fine on its own: the key is at other.example, SPF there permits the host ...
    assert _by(findings, "other.example", "DKIM")[0].status == "ok"
    assert _by(findings, "other.example", "SPF")[0].status == "ok"
    # ... but DMARC checks From against d= and the return path, and neither matches.
    alignment, = _by(findings, "misaligned.example", "alignment")
    assert alignment.status == "fail" and "DKIM d=other.example NOT aligned" in alignment.detail
    assert "return path @other.example NOT aligned" in alignment.detail
    assert code == 1


def test_strict_alignment_refuses_a_subdomain_and_relaxed_accepts_it():
    assert sd.aligned("mail.good.example", "good.example", strict=False)
    assert not sd.aligned("mail.good.example", "good.example", strict=True)
    assert sd.organizational("news.practice.co.uk") == "practice.co.uk"
    assert not sd.aligned("practice.co.uk", "other.co.uk", strict=False)


def test_what_it_cannot_evaluate_is_said_so_and_api_providers_are_checked_for_their_include(run_check):
    code, out, findings = run_check({
        "news": _smtp("news@macro.example"),
        "api": {"kind": "email", "provider": "postmark", "from_address": "news@good.example",
                "options": {"server_token_env": "PM"}}})
    spf, = _by(findings, "macro.example", "SPF")
    assert spf.status == "can't tell" and spf.add is None
    assert _by(findings, "macro.example", "DKIM")[0].status == "fail"  # not signing at all
    assert _by(findings, "macro.example", "alignment")[0].status == "warn"  # return path only
    pm, = _by(findings, "good.example", "SPF")
    assert pm.status == "warn" and pm.add == \
        'good.example. TXT "v=spf1 mx include:_spf.good.example include:spf.mtasv.net -all"'


def test_a_silent_nameserver_is_cant_tell_not_missing(make_settings, keys, monkeypatch):
    import socket

    monkeypatch.setenv("OUR_DKIM_KEY", keys[0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    sock.bind(("127.0.0.1", 0))
    try:
        settings = make_settings(channels={"news": _smtp("news@good.example", dkim_selector="s1",
                                                         dkim_private_key_env="OUR_DKIM_KEY")},
                                 deliverability={"dns_nameservers": [f"127.0.0.1:{sock.getsockname()[1]}"]})
        findings = sd.check(settings, sd.Dns(settings.deliverability.dns_nameservers, lifetime=0.5))
    finally:
        sock.close()
    assert {f.check for f in findings} == {"SPF", "DKIM", "DMARC"}
    assert all(f.status == "can't tell" and f.add is None for f in findings)
