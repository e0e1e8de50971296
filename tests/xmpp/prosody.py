"""A real XMPP server for the tests: Debian's prosody run from a throw-away configuration in a
temporary folder, on free loopback ports (c2s and the XEP-0114 component port).

Plaintext on loopback (``c2s_require_encryption = false``, PLAIN allowed, passwords stored plain),
its own data folder, no s2s. It runs as our child process (``run_as_root``: the tests run as root;
as any other user it runs as that user), so stopping it is a signal and a wait, and it starts again
on the same ports with the same data (a server restart). Users are made with ``prosodyctl
register`` before it starts or while it runs. Stream management (XEP-0198, mod_smacks) is a core
module since prosody 0.12 and is loaded here; so are offline storage and receipts' prerequisites.

Tests that use it skip when ``/usr/bin/prosody`` is not installed (``skip_without_prosody``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.servers import ThrowAwayServer, free_port

PROSODY = "/usr/bin/prosody"
PROSODYCTL = "/usr/bin/prosodyctl"
COMPONENT_SECRET = "comp-s3cret"


def skip_without_prosody() -> None:
    if not os.path.exists(PROSODY):
        pytest.skip(f"needs prosody ({PROSODY}, Debian's prosody)")


CONFIG = """\
run_as_root = true
daemonize = false
pidfile = "{root}/prosody.pid"
data_path = "{root}/data"
plugin_paths = {{}}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
component_ports = {{ {component_port} }}
component_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{}}
http_ports = {{}}
https_ports = {{}}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "presence"; "message"; "offline";
                     "smacks"; "posix"; "register"; "carbons" }}
modules_disabled = {{ {disabled} }}
{tls}
allow_registration = false
smacks_hibernation_time = 30
-- Clients reconnect at once in the tests: no limits on how fast they may.
limits = {{}}
log = {{ {{ levels = {{ min = "{level}" }}, to = "file", filename = "{root}/prosody.log" }} }}
VirtualHost "{host}"
Component "{component}"
    component_secret = "{secret}"
"""


class Prosody(ThrowAwayServer):
    """One prosody server; ``users`` maps local parts to passwords (registered at start)."""

    name = "prosody"

    def __init__(self, users: dict[str, str] | None = None, *, log_level: str = "info", tls: bool = False) -> None:
        super().__init__(Path(tempfile.mkdtemp(prefix="channelhub-prosody-")))
        self.users = dict(users or {})
        # A domain of its own: account JIDs are unique over the whole hub (and the test database).
        self.domain = f"x{uuid.uuid4().hex[:10]}.test"
        self.component = f"support.{self.domain}"
        self.component_secret = COMPONENT_SECRET
        self.c2s_port = free_port()
        self.component_port = free_port()
        (self.root / "data").mkdir()
        (self.root / "certs").mkdir()
        # With ``tls``: STARTTLS offered (not required) with a self-signed certificate for the domain,
        # for clients that refuse to authenticate in plaintext (go-sendxmpp; connect with -n).
        tls_config, disabled = "", '"s2s"; "tls"'
        self.tls_port = 0
        if tls:
            key, cert = self.root / "key.pem", self.root / "cert.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-subj", f"/CN={self.domain}", "-addext", f"subjectAltName=DNS:{self.domain}",
                            "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
            self.tls_port = free_port()
            tls_config = (f'ssl = {{ certificate = "{cert}"; key = "{key}" }}\n'
                          f'c2s_direct_tls_ports = {{ {self.tls_port} }}\n'
                          f'c2s_direct_tls_ssl = {{ certificate = "{cert}"; key = "{key}" }}')
            disabled = '"s2s"'
        self.config = self.root / "prosody.cfg.lua"
        self.config.write_text(CONFIG.format(
            root=self.root, c2s_port=self.c2s_port, component_port=self.component_port, host=self.domain,
            component=self.component, secret=COMPONENT_SECRET, level=log_level, tls=tls_config, disabled=disabled))
        self._registered: set[str] = set()

    @property
    def log(self) -> str:
        path = self.root / "prosody.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def jid(self, user: str) -> str:
        return f"{user}@{self.domain}"

    def register(self, user: str, password: str) -> None:
        """Make an account (works whether or not the server runs: prosodyctl writes the data files)."""
        self.users[user] = password
        result = subprocess.run([PROSODYCTL, "--config", str(self.config), "register", user, self.domain, password],
                                capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"prosodyctl register {user} failed: {result.stdout}{result.stderr}")
        self._registered.add(user)

    def write_accounts(self, users: dict[str, str]) -> None:
        """Make many accounts at once (the benchmark's hundreds) by writing prosody's own account files
        (``internal_plain``: ``data/<host, . as %2e>/accounts/<user>.dat``), as ``prosodyctl register``
        does one process at a time. Only before :meth:`start` (a running server caches accounts)."""
        assert self.proc is None, "write accounts before starting the server"
        folder = self.root / "data" / self.domain.replace(".", "%2e") / "accounts"
        folder.mkdir(parents=True, exist_ok=True)
        for user, password in users.items():
            quoted = password.replace("\\", "\\\\").replace('"', '\\"')
            (folder / f"{user}.dat").write_text(f'return {{\n\t["password"] = "{quoted}";\n}};\n')
            self.users[user] = password
            self._registered.add(user)

    async def before_start(self) -> None:
        for user, password in self.users.items():
            if user not in self._registered:
                await asyncio.to_thread(self.register, user, password)

    def argv(self) -> list[str]:
        return [PROSODY, "--config", str(self.config)]

    async def ready(self) -> bool:
        """Up once both listeners take a connection."""
        for port in (self.c2s_port, self.component_port):
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, port), 1)
            writer.close()
        return True

    async def close(self) -> None:
        await self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
