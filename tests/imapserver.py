"""A private Dovecot IMAP server for the bounce-mailbox tests: Debian's dovecot-imapd
(scripts/services.sh installs it) started with a generated configuration on a free loopback port,
one passwd-file user and a Maildir in a temporary directory. It never touches the system's
Dovecot. If it cannot start, the test fails and says why (never a skip)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.cluster import free_port

USER, PASSWORD = "bounces", "bounce-box-test-password"


class DovecotError(RuntimeError):
    pass


class Dovecot:
    def __init__(self):
        self.binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not Path(self.binary).exists():
            raise DovecotError("dovecot is not installed: run scripts/services.sh (apt-get install dovecot-imapd)")
        # Dovecot's unprivileged processes must reach the files: a directory of our own in /tmp,
        # not pytest's (mode 0700 under /tmp/pytest-of-USER).
        self.root = Path(tempfile.mkdtemp(prefix="syndicate-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        if os.geteuid() == 0:
            # Root runs the master; logins must not run as root, and mail may not be owned by uid 0.
            login, internal, mail_user = "dovenull", "dovecot", pwd.getpwnam("dovecot")
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            login = internal = me
            mail_user = pwd.getpwuid(os.getuid())
        self.mail_uid, self.mail_gid = mail_user.pw_uid, mail_user.pw_gid
        home = self.root / "home"
        home.mkdir()
        os.chown(home, self.mail_uid, self.mail_gid)
        (self.root / "run").mkdir()
        (self.root / "state").mkdir()
        passwd = self.root / "passwd"
        passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        passwd.chmod(0o644)
        self.maildir = home / USER / "Maildir"
        self.log = self.root / "dovecot.log"
        self.config = self.root / "dovecot.conf"
        self.config.write_text(f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 0
mail_location = maildir:{home}/%u/Maildir
default_login_user = {login}
default_internal_user = {internal}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={self.mail_uid} gid={self.mail_gid} home={home}/%u
}}
""")

    def start(self) -> Dovecot:
        self.process = subprocess.Popen([self.binary, "-F", "-c", str(self.config)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DovecotError(f"dovecot exited ({self.process.returncode}): {self._output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(200).startswith(b"* OK"):
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise DovecotError(f"dovecot did not answer on 127.0.0.1:{self.port} within 20 s: {self._output()}")

    def _output(self) -> str:
        text = ""
        if self.process is not None and self.process.stdout is not None and self.process.poll() is not None:
            text += self.process.stdout.read().decode("utf-8", "replace")
        if self.log.exists():
            text += self.log.read_text(errors="replace")[-2000:]
        return " ".join(text.split())[-2000:] or "(no output)"

    def deliver(self, data: bytes) -> Path:
        """Put a message into the Maildir's new/ the way an MTA's local delivery does."""
        for sub in ("new", "cur", "tmp"):
            path = self.maildir / sub
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, self.mail_uid, self.mail_gid)
        for path in (self.maildir.parent, self.maildir):
            os.chown(path, self.mail_uid, self.mail_gid)
        name = f"{time.time_ns()}.P{os.getpid()}.syndicate-test"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(data)
        os.chown(tmp, self.mail_uid, self.mail_gid)
        final = self.maildir / "new" / name
        tmp.rename(final)
        return final

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
