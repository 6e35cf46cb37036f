"""`syndicate users add|list|remove`, and `syndicate serve` naming the desk."""

from __future__ import annotations

import io
import json

import pytest

from syndicate.cli import build_parser, main
from syndicate.engine.runner import ledger
from syndicate.web import auth


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text(f'''
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
timezone = "America/New_York"
[store]
url = "sqlite:///{tmp_path / 'ledger.db'}"
''')
    return str(path)


def run(config, *args, stdin: str = "", monkeypatch=None):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["--config", config, *args])


def test_add_list_and_remove_accounts(config, monkeypatch, capsys):
    assert run(config, "users", "add", "Ana", "--password-stdin", stdin="a long password 1\n",
               monkeypatch=monkeypatch) == 0
    assert "ana (admin) can now sign in to the preview desk" in capsys.readouterr().out
    from syndicate.settings import load

    factory = ledger(load(config))
    assert auth.authenticate(factory, "ana", "a long password 1") is not None
    assert run(config, "users", "list", "--json", monkeypatch=monkeypatch) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [u["name"] for u in listed] == ["ana"] and listed[0]["last_login_at"]
    assert run(config, "users", "list", monkeypatch=monkeypatch) == 0
    assert "ana" in capsys.readouterr().out
    # A second account of the same name is refused; --reset sets a new password.
    assert run(config, "users", "add", "ana", "--password-stdin", stdin="another password 2\n",
               monkeypatch=monkeypatch) == 2
    assert "already an account named 'ana'" in capsys.readouterr().err
    assert run(config, "users", "add", "ana", "--password-stdin", "--reset", stdin="another password 2\n",
               monkeypatch=monkeypatch) == 0
    assert auth.authenticate(factory, "ana", "a long password 1") is None
    assert auth.authenticate(factory, "ana", "another password 2") is not None
    assert run(config, "users", "remove", "ana", monkeypatch=monkeypatch) == 0
    assert run(config, "users", "remove", "ana", monkeypatch=monkeypatch) == 2
    assert "no account named 'ana'" in capsys.readouterr().err
    assert run(config, "users", "list", monkeypatch=monkeypatch) == 0
    assert "no staff accounts yet" in capsys.readouterr().out


@pytest.mark.parametrize("name, password, message", [
    ("ana", "short\n", "too short"),
    ("ana", "", "nothing on standard input"),
    ("a b", "a long password 1\n", "not a usable name"),
    ("ana", " padded password \n", "starts or ends with a space"),
])
def test_bad_names_and_passwords_are_refused_in_one_line(config, monkeypatch, capsys, name, password, message):
    assert run(config, "users", "add", name, "--password-stdin", stdin=password, monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_without_a_terminal_the_password_must_come_on_stdin(config, monkeypatch, capsys):
    assert run(config, "users", "add", "ana", stdin="", monkeypatch=monkeypatch) == 2
    assert "--password-stdin" in capsys.readouterr().err


def test_serve_mentions_the_desk():
    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    assert "preview desk" in serve.description
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
