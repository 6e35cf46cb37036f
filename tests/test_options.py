"""Channel options are validated per provider (syndicate/options.py): a typo is an error naming
the key with a "did you mean", and every option the code reads is declared (newcomer probe #10)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from syndicate import options
from syndicate import settings as settings_mod
from syndicate.cli import main
from syndicate.providers import REGISTRY
from tests.conftest import REPO

SITE = {"name": "Harbor", "url": "https://harbor.example"}


def load(channel: dict) -> settings_mod.Settings:
    return settings_mod.from_dict({"site": SITE, "channels": {"ch": channel}}, source="settings.toml")


def error(channel: dict) -> str:
    with pytest.raises(settings_mod.SettingsError) as caught:
        load(channel)
    return str(caught.value)


@pytest.mark.parametrize("provider,kind,typo,meant", [
    ("mastodon", "mastodon", "api_bse", "api_base"),
    ("mastodon", "mastodon", "tokn_env", "token_env"),
    ("mastodon", "mastodon", "max_charactrs", "max_characters"),
    ("mastodon", "mastodon", "instanse", "instance"),
    ("x", "x", "rate_limt", "rate_limit"),
    ("x", "x", "timout", "timeout"),
    ("smtp", "email", "pasword_env", "password_env"),
    ("outbox", "linkedin", "author_ur", "author_urn"),
    ("outbox", "email", "audiense", "audience"),
])
def test_a_misspelt_option_is_one_line_with_the_closest_known_one(provider, kind, typo, meant):
    message = error({"kind": kind, "provider": provider, "options": {typo: "1"}})
    assert message == f"settings.toml: channels.ch.options.{typo}: unknown option; did you mean {meant!r}?"


def test_the_cli_refuses_a_misspelt_option_with_exit_2(tmp_path, capsys):
    config = tmp_path / "settings.toml"
    config.write_text('[site]\nname = "H"\nurl = "https://h.example"\n[channels.x]\nkind = "x"\nprovider = "x"\n'
                      'options = { tokn_env = "X_TOKEN" }\n')
    assert main(["--config", str(config), "status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("channels.x.options.tokn_env: unknown option; did you mean 'token_env'?")
    assert len(err.splitlines()) == 1


def test_unknown_options_without_a_close_match_wrong_types_and_nested_tables():
    assert error({"kind": "x", "provider": "x", "options": {"zzz": 1}}).endswith("options.zzz: unknown option")
    assert "options.timeout: Input should be a valid number" in error(
        {"kind": "x", "provider": "x", "options": {"timeout": "soon"}})
    assert "options.max_characters: Input should be greater than or equal to 1" in error(
        {"kind": "mastodon", "provider": "mastodon", "options": {"max_characters": 0}})
    assert "options.audience: Input should be 'subscribers' or 'to'" in error(
        {"kind": "email", "provider": "smtp", "options": {"host": "h", "audience": "subscriber"}})
    assert error({"kind": "email", "provider": "postmark", "options": {"test_smtp": {"hst": "h"}}}).endswith(
        "options.test_smtp.hst: unknown option; did you mean 'host'?")
    # An option of another provider is unknown here too (a Mailchimp key on a Mastodon channel).
    assert error({"kind": "mastodon", "provider": "mastodon", "options": {"audience_id": "1"}}).endswith(
        "options.audience_id: unknown option")
    # The secret check still comes first.
    assert "looks like a secret" in error({"kind": "x", "provider": "x", "options": {"token": "abc"}})


def test_valid_options_load_as_written_with_types_checked():
    ch = load({"kind": "email", "provider": "smtp",
               "options": {"host": "smtp.example", "port": 587, "security": "STARTTLS", "audience": "subscribers",
                           "rate_limit": "10/1m"}}).channels["ch"]
    assert ch.options == {"host": "smtp.example", "port": 587, "security": "starttls", "audience": "subscribers",
                          "rate_limit": "10/1m"}  # only what was written: the adapters' defaults apply
    pin = load({"kind": "pinterest", "provider": "outbox", "options": {"board_id": 549755885175}}).channels["ch"]
    assert pin.options == {"board_id": 549755885175}
    # The outbox takes the options of any real email provider, so switching provider is painless.
    load({"kind": "email", "provider": "outbox", "options": {"host": "h", "api_key_env": "K", "batch_size": 10}})


def test_every_provider_has_an_options_model():
    assert set(options.PROVIDERS) | {"outbox"} == set(REGISTRY)
    for kind in settings_mod.KINDS:
        assert options.model_for("outbox", kind) is not None


# Where an option is read -> the providers whose model must declare it.
_READ = re.compile(r"""(?:options\.get|options\.setdefault|self\.option|self\.secret|setdefault)\(\s*['"](\w+)['"]"""
                   r"""|options\[['"](\w+)['"]\]|token_option(?::[^=]*)?=\s*['"](\w+)['"]""")


def _shared_readers() -> dict[str, list[str]]:
    http = [p for p in options.PROVIDERS if p != "smtp"]
    email = list(options.EMAIL_PROVIDERS)
    return {
        "syndicate/providers/http.py": http,
        "syndicate/providers/batching.py": ["sendgrid", "postmark", "mailgun", "ses"],
        "syndicate/providers/campaign.py": ["mailchimp", "buttondown", "sendgrid_singlesend"],
        "syndicate/engine/ratelimit.py": list(options.PROVIDERS),
        "syndicate/render/payloads.py": email,
        "syndicate/render/textlength.py": ["mastodon"],
        "syndicate/web/desk/testmail.py": ["smtp"],  # test_smtp (every email model) and its envelope_from
    }


def _per_kind_readers() -> dict[str, list[str]]:
    """Modules that read each option for one kind only: each name must be declared by one of them."""
    return {"syndicate/render/social.py": list(settings_mod.SOCIAL_KINDS),
            "syndicate/web/desk/previews.py": list(settings_mod.SOCIAL_KINDS)}


def _provider_readers() -> dict[str, list[str]]:
    by_module: dict[str, list[str]] = {}
    for name, target in REGISTRY.items():
        if name != "outbox":
            path = "/".join(target.partition(":")[0].split(".")) + ".py"
            by_module.setdefault(path, []).append(name)
    return by_module


def test_every_option_the_code_reads_is_declared_for_its_providers():
    readers = {**_provider_readers(), **_per_kind_readers(), **_shared_readers()}
    missing = []
    for path, providers in readers.items():
        names = {a or b or c for a, b, c in _READ.findall((REPO / path).read_text())}
        names -= {"allow_redirects", "media_type"}  # setdefault on requests' arguments and a payload
        shared = path in _shared_readers()  # there every provider listed reads every name
        for provider in providers:
            fields = set(options.PROVIDERS[provider].model_fields)
            if not shared:  # several providers in one module (sendgrid.py): each name is one's
                fields = set().union(*(options.PROVIDERS[p].model_fields for p in providers))
            missing += [f"{path}: {provider} lacks {n}" for n in sorted(names - fields)]
    assert not missing, missing
    # The scan finds what it should (it must be able to fail).
    assert "token_env" in {a or b or c for a, b, c in _READ.findall(Path(REPO / "syndicate/providers/x.py").read_text())}


def test_credential_options_for_rate_limits_are_declared():
    from syndicate.engine.ratelimit import CREDENTIAL_OPTIONS

    declared = set().union(*(m.model_fields for m in options.PROVIDERS.values()))
    assert set(CREDENTIAL_OPTIONS) <= declared


def test_every_option_is_documented():
    doc = (REPO / "docs" / "settings.md").read_text()
    names = set().union(*(m.model_fields for m in [*options.PROVIDERS.values(), *options.OUTBOX.values()]))
    assert not [n for n in sorted(names) if f"`{n}`" not in doc and f"`{n} =" not in doc]
