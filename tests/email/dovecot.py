"""A real IMAP server for the tests: Debian's dovecot (``dovecot-imapd``) run from a throw-away
configuration in a temporary folder, on a free loopback port.

Plaintext (``ssl = no``) with a passwd-file of plaintext passwords and maildir storage. The master
runs as root in the foreground (``-F``) as our child process, so stopping it is a signal and a
wait, and it can be started again on the same port with the same mail (a server restart). Mail is
added the way a delivery agent's would show up to a client: IMAP APPEND, through aioimaplib.

Tests that use it skip when ``/usr/sbin/dovecot`` is not installed (``skip_without_dovecot``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import aioimaplib
import pytest

from tests.servers import ThrowAwayServer, free_port

DOVECOT = "/usr/sbin/dovecot"

# Dovecot's own users: the master drops to these for its internal and login processes, and mail is
# stored as the internal one (mail processes never run as root).
INTERNAL_USER = "dovecot"
LOGIN_USER = "dovenull"


def skip_without_dovecot() -> None:
    if not os.path.exists(DOVECOT):
        pytest.skip(f"needs dovecot ({DOVECOT}, Debian's dovecot-imapd)")


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = channelhub-test-{port}
listen = 127.0.0.1
protocols = imap
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
# A wrong password is answered at once (the default waits 2 s, to slow down guessing).
auth_failure_delay = 0
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
log_path = {root}/dovecot.log
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={internal} gid={internal} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
{extra}
"""


class Dovecot(ThrowAwayServer):
    """One dovecot server. ``users`` maps user names to their passwords; ``capability`` replaces
    what the server announces after login (``imap_capability``), e.g. a list without IDLE."""

    name = "dovecot"

    def __init__(self, users: dict[str, str], *, capability: str | None = None, tls: bool = False) -> None:
        # Not pytest's tmp_path: its parents are 0700 root, and dovecot's unprivileged processes
        # must reach the passwd file and the mail.
        super().__init__(Path(tempfile.mkdtemp(prefix="channelhub-dovecot-")))
        self.users = dict(users)
        self.port = free_port()
        # With ``tls``: IMAPS on tls_port and STARTTLS on port, with a self-signed certificate for
        # 127.0.0.1 (``cert``: what a client must trust). Without: plaintext only (``ssl = no``).
        self.tls_port = free_port() if tls else 0
        self.root.chmod(0o755)
        mail = self.root / "mail"
        mail.mkdir()
        shutil.chown(mail, INTERNAL_USER, INTERNAL_USER)
        (self.root / "passwd").write_text("".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self.users.items()))
        (self.root / "passwd").chmod(0o644)
        extra = f"protocol imap {{\n  imap_capability = {capability}\n}}\n" if capability else ""
        self.cert = self.root / "cert.pem"
        if tls:
            key = self.root / "key.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", str(key), "-out", str(self.cert)], check=True, capture_output=True)
            ssl = f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{key}"
        else:
            ssl = "ssl = no"
        self.config = self.root / "dovecot.conf"
        self.config.write_text(CONFIG.format(root=self.root, port=self.port, tls_port=self.tls_port, ssl=ssl,
                                             internal=INTERNAL_USER, login=LOGIN_USER, extra=extra))

    @property
    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def argv(self) -> list[str]:
        return [DOVECOT, "-F", "-c", str(self.config)]

    async def ready(self) -> bool:
        """Up once it greets: the listener exists before the login processes answer."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 1)
        try:
            line = await asyncio.wait_for(reader.readline(), 2)
        finally:
            writer.close()
        return line.startswith(b"* OK")

    async def close(self) -> None:
        await super().close()
        shutil.rmtree(self.root, ignore_errors=True)

    async def client(self, user: str) -> aioimaplib.IMAP4:
        imap = aioimaplib.IMAP4(host=self.host, port=self.port, timeout=10)
        await imap.wait_hello_from_server()
        response = await imap.login(user, self.users[user])
        assert response.result == "OK", response
        return imap

    async def append(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver ``raw`` to the user's folder (IMAP APPEND, as a mail client or an MDA would)."""
        imap = await self.client(user)
        try:
            response = await imap.append(raw, mailbox=folder)
            assert response.result == "OK", response
        finally:
            with contextlib.suppress(Exception):
                await imap.logout()

    async def imap_command(self, user: str, name: str, *args: str) -> None:
        """A simple mailbox command (CREATE, DELETE) as the user."""
        imap = await self.client(user)
        try:
            response = await imap.protocol.simple_command(name, *args)
            assert response.result == "OK", response
        finally:
            with contextlib.suppress(Exception):
                await imap.logout()

    async def flags(self, user: str, folder: str = "INBOX") -> dict[int, set[str]]:
        """Each message's flags by UID (FETCH FLAGS does not change them)."""
        imap = await self.client(user)
        try:
            response = await imap.select(folder)
            assert response.result == "OK", response
            response = await imap.fetch("1:*", "(UID FLAGS)")
            found: dict[int, set[str]] = {}
            for line in response.lines:
                if not isinstance(line, bytes):
                    continue
                m = re.match(rb"\d+ FETCH \((.*)\)$", line)
                if m is None:
                    continue
                uid = re.search(rb"UID (\d+)", m.group(1))
                flags = re.search(rb"FLAGS \(([^)]*)\)", m.group(1))
                if uid and flags:
                    found[int(uid.group(1))] = set(flags.group(1).decode().split())
            return found
        finally:
            with contextlib.suppress(Exception):
                await imap.logout()


def message(n: int, *, subject: str | None = None, domain: str = "customer.example.org") -> bytes:
    """A small mail with a unique Message-ID, as a customer's client would send it."""
    return (
        f"From: Customer {n} <c{n}@{domain}>\r\n"
        f"To: support@acme.example.com\r\n"
        f"Subject: {subject or f'Question {n}'}\r\n"
        f"Message-ID: <m{n}.{os.getpid()}@{domain}>\r\n"
        f"Date: Mon, 07 Dec 2026 12:00:{n % 60:02d} +0000\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"\r\n"
        f"Hello, this is message {n}.\r\n"
    ).encode()
