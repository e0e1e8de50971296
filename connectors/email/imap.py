"""Following tenants' mailboxes over IMAP: mail that lands in a folder is handed, raw, to the channel.

A mailbox with an IMAP account (``EmailMailbox.imap_host``) is followed by one :class:`ImapFollower`
in one process at a time; :class:`ImapFollowers`, which the email connector owns, keeps one
follower per such mailbox running in every ``channelhub serve`` process, and the database lease
decides which of them reads.

**The lease.** A follower first takes the mailbox's lease with one conditional UPDATE on
``email_mailboxes`` (no owner, itself, or a lease that ran out) and renews it while it runs; one
that does not get it reads nothing and tries again every lease period. The cursor is written under
the same condition (``imap_lease_owner = me``), so a process that stalled past its lease and lost it
to another notices at its next write and stops instead of reading on beside the new owner. Stopping
releases the lease, so another process takes over at its next try; a process that died leaves a
lease that runs out after ``lease_seconds``.

**The cursor.** What has been read is (UIDVALIDITY, last UID) in the mailbox's row. Each round is
``UID SEARCH UID last+1:*`` (which always answers at least the folder's highest UID, even when it is
not above ``last``: those are dropped), then for each new UID in ascending order ``UID FETCH uid
(BODY.PEEK[])`` (PEEK: reading does not mark the mail read), ``deliver(raw)``, the cursor written,
and only then ``UID STORE uid +FLAGS.SILENT (\\Seen)``: the flag is for the people who also look at
the mailbox; the cursor is what counts for us. A crash between ``deliver`` and the cursor delivers
that mail again, which ingest, idempotent on the Message-ID, turns into nothing. A UIDVALIDITY that
changed means the server renumbered the folder: the cursor starts over at 0 and everything present
is delivered again (a warning is logged; repeats are harmless for the same reason).

The first run (no UIDVALIDITY stored) takes every message in the folder, read or not: a support
address connected to the hub should not lose what a colleague already opened in a mail client.

**Failures.** ``deliver`` sets aside mail it cannot read by itself and raises only for transient
failures (the database busy or down); the round stops at that mail, without advancing past it, and
is tried again after a back-off. Any failure of the connection (refused, lost, a server restart, a
command that does not answer in ``timeout``, TLS, a wrong password) closes it and reconnects after a
back-off of 1 s doubling to 5 min, with jitter; the back-off starts over once a whole round has
worked. The last failure is kept, short and without the password, in ``imap_error`` with the time
in ``imap_checked_at`` (cleared again after a round that worked), for the admin to see. Nothing a
server or a mailbox does stops the hub.

**Waiting.** With the IDLE capability the follower idles and reads again when the server pushes
anything, re-issuing IDLE every ``idle_seconds`` (servers drop clients idle for 30 min); without
it, it polls every ``poll_seconds``. aioimaplib does not fail a command in flight when the
connection drops (it only calls ``conn_lost_cb``), so every command here races the connection's loss.

Security: ``none`` (plaintext, for loopback and tests), ``tls`` (IMAPS, port 993) or ``starttls``
(upgraded after the greeting, before the password is sent; a server without STARTTLS is refused).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import aioimaplib
from sqlalchemy import select, update

from connectors.email.models import EmailMailbox
from core import secrets
from core.config import Settings
from core.db import Database
from core.leases import RowLease
from core.models import table_of, utcnow
from core.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

T = TypeVar("T")

SECURITIES = ("none", "tls", "starttls")
DEFAULT_PORTS = {"none": 143, "starttls": 143, "tls": 993}

# What imap_error keeps of a failure: enough for an admin to act on.
MAX_ERROR_CHARS = 300

_table = table_of(EmailMailbox)


@dataclass(frozen=True)
class ImapAccount:
    """Where and as whom one mailbox is read. Equal accounts need no new connection: a follower
    whose mailbox's account changed (host, password, folder...) is restarted."""

    mailbox_id: int
    tenant_id: int
    host: str
    port: int
    security: str
    username: str
    password: str
    folder: str = "INBOX"

    def __repr__(self) -> str:
        # Accounts end up in log lines and tracebacks: never with the password.
        return (f"ImapAccount(mailbox_id={self.mailbox_id}, tenant_id={self.tenant_id}, host={self.host!r}, "
                f"port={self.port}, security={self.security!r}, username={self.username!r}, "
                f"password='***', folder={self.folder!r})")

    def __str__(self) -> str:
        return f"mailbox {self.mailbox_id} ({self.username}@{self.host}:{self.port}/{self.folder})"


def account_of(settings: Settings, row: EmailMailbox) -> ImapAccount:
    """The IMAP account of a mailbox row, its password decrypted. Raises ``ValueError`` for a row
    without an IMAP host or with an unknown security, ``core.secrets.SecretError`` for a password
    the configured key cannot decrypt."""
    if not row.imap_host:
        raise ValueError(f"mailbox {row.id} has no IMAP account")
    security = row.imap_security or "tls"
    if security not in SECURITIES:
        raise ValueError(f"mailbox {row.id}: unknown IMAP security {security!r}")
    password = secrets.decrypt(settings, row.imap_password_enc) if row.imap_password_enc else ""
    return ImapAccount(
        mailbox_id=row.id,
        tenant_id=row.tenant_id,
        host=row.imap_host,
        port=row.imap_port or DEFAULT_PORTS[security],
        security=security,
        username=row.imap_username or row.address,
        password=password,
        folder=row.imap_folder or "INBOX",
    )


class ImapError(Exception):
    """A failure the server answered (a refused login, a folder that does not exist...). Its text
    is what imap_error shows."""


class AuthenticationFailed(ImapError):
    pass


class ConnectionLost(ImapError):
    pass


class DeliveryFailed(Exception):
    """``deliver`` raised for one mail (the cause is chained): the round stops at it."""

    def __init__(self, uid: int) -> None:
        super().__init__(uid)
        self.uid = uid


class LeaseLost(Exception):
    """Another process holds the mailbox's lease now: this one stops reading."""


def imap_utf7(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3): "收件箱" is ``&ZTZO9nux-``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode()
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _server_text(response: Any) -> str:
    """The server's words in a tagged answer (its last line), e.g. ``[AUTHENTICATIONFAILED] ...``."""
    lines = getattr(response, "lines", None) or []
    return _text(lines[-1]).strip() if lines else ""


class _Connection:
    """One IMAP connection and the future that its loss completes."""

    def __init__(self, account: ImapAccount, timeout: float, ssl_context: ssl.SSLContext | None) -> None:
        self.account = account
        self.timeout = timeout
        # The system's trusted authorities unless told otherwise (a test's own certificate).
        self.ssl_context = ssl_context or (ssl.create_default_context() if account.security != "none" else None)
        loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[None] = loop.create_future()
        # aioimaplib's IMAP4_SSL takes no conn_lost_cb; IMAP4 with an SSL context is the same thing.
        self.client = aioimaplib.IMAP4(
            host=account.host, port=account.port, timeout=timeout, conn_lost_cb=self._on_lost,
            ssl_context=self.ssl_context if account.security == "tls" else None)

    def _on_lost(self, _exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    async def call(self, awaitable: Awaitable[T], timeout: float | None = -1.0) -> T:
        """Await an aioimaplib call, failing with ConnectionLost when the connection drops first and
        TimeoutError after ``timeout`` (the connection's by default; None: the command's own)."""
        task = asyncio.ensure_future(awaitable)
        waiters: set[asyncio.Future[Any]] = {task, self.lost}
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED,
                                         timeout=self.timeout if timeout == -1.0 else timeout)
        finally:
            if not task.done():
                task.cancel()
        if task in done:
            return task.result()
        if self.lost in done:
            raise ConnectionLost("connection lost")
        raise TimeoutError

    async def open(self) -> None:
        """Greeting, STARTTLS when asked for, LOGIN, the capabilities the server has after it."""
        await self.call(self.client.wait_hello_from_server(), None)
        protocol = self.client.protocol
        if self.account.security == "starttls":
            if "STARTTLS" not in protocol.capabilities:
                # Never fall back to sending the password in clear.
                raise ImapError("the server does not offer STARTTLS")
            response = await self.call(protocol.execute(
                aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)))
            if response.result != "OK":
                raise ImapError(f"STARTTLS refused: {_server_text(response)}")
            loop = asyncio.get_running_loop()
            context = self.ssl_context or ssl.create_default_context()
            transport = await self.call(loop.start_tls(protocol.transport, protocol, context,
                                                       server_hostname=self.account.host))
            protocol.transport = transport
            # What was announced before TLS may have been tampered with (RFC 3501 6.2.1).
            await self.call(protocol.capability())
        await self._login()
        # Servers announce more after login (dovecot: IDLE or not per its imap_capability).
        await self.call(protocol.capability())

    async def _login(self) -> None:
        # Not aioimaplib's login(): it leaves the user name unquoted and scrubs the password from
        # its debug log only as given, not as quoted on the wire (a password with " or \ would show).
        protocol = self.client.protocol
        secret = aioimaplib.quoted(self.account.password)
        command = aioimaplib.Command("LOGIN", protocol.new_tag(), aioimaplib.quoted(self.account.username),
                                     secret, loop=protocol.loop)
        response = await self.call(protocol.execute(command, scrub=secret))
        if response.result != "OK":
            raise AuthenticationFailed(f"authentication failed: {_server_text(response)}")
        protocol.state = aioimaplib.AUTH

    async def select(self, folder: str) -> int:
        """SELECT the folder; its UIDVALIDITY."""
        response = await self.call(self.client.select(aioimaplib.quoted(imap_utf7(folder))))
        if response.result != "OK":
            raise ImapError(f"cannot open folder {folder!r}: {_server_text(response)}")
        for line in response.lines:
            m = re.search(rb"\[UIDVALIDITY (\d+)\]", bytes(line))
            if m:
                return int(m.group(1))
        raise ImapError(f"the server gave no UIDVALIDITY for folder {folder!r}")

    async def uids_after(self, last: int) -> list[int]:
        """The folder's UIDs above ``last``, ascending."""
        response = await self.call(self.client.uid_search("UID", f"{last + 1}:*", charset=None))
        if response.result != "OK":
            raise ImapError(f"UID SEARCH failed: {_server_text(response)}")
        found: set[int] = set()
        # aioimaplib strips "SEARCH" from the untagged answer: number lines, then the tagged text.
        for line in response.lines[:-1]:
            if isinstance(line, bytes) and re.fullmatch(rb"[\d ]*", line):
                found.update(int(n) for n in line.split())
        # "N:*" always names the highest UID, even one at or below N.
        return sorted(uid for uid in found if uid > last)

    async def fetch(self, uid: int) -> bytes | None:
        """The whole mail of ``uid`` without setting \\Seen; None when it is gone (expunged)."""
        # No overall deadline (a big mail on a slow link takes long): aioimaplib's timer on the
        # command runs out only when no data comes for ``timeout``.
        response = await self.call(self.client.uid("fetch", str(uid), "(BODY.PEEK[])"), None)
        if response.result != "OK":
            raise ImapError(f"UID FETCH {uid} failed: {_server_text(response)}")
        lines = response.lines
        for i, line in enumerate(lines[:-1]):
            if isinstance(line, bytes) and re.search(rb"BODY\[\] \{\d+\}$", line) and \
                    isinstance(lines[i + 1], bytes | bytearray):
                return bytes(lines[i + 1])
        return None

    async def mark_seen(self, uid: int) -> None:
        response = await self.call(self.client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Seen)"))
        if response.result != "OK":
            # The cursor is what counts: a folder we may not flag in is still read once.
            logger.info("%s: could not flag UID %s as seen: %s", self.account, uid, _server_text(response))

    async def wait_idle(self, seconds: float) -> None:
        """IDLE until the server pushes something or ``seconds`` pass."""
        idle = await self.call(self.client.idle_start(timeout=seconds))
        try:
            with contextlib.suppress(TimeoutError):
                # idle_start's timer ends the wait after ``seconds``; ours is a safety net.
                await self.call(self.client.wait_server_push(timeout=seconds + self.timeout), None)
        finally:
            if not self.lost.done():
                self.client.idle_done()
        await self.call(idle)

    async def close(self) -> None:
        client = self.client
        if not self.lost.done() and client.protocol.state in (aioimaplib.AUTH, aioimaplib.SELECTED):
            with contextlib.suppress(Exception):
                await self.call(client.logout(), min(self.timeout, 2.0))
        transport = client.protocol.transport
        if transport is not None:
            transport.close()
        # aioimaplib's own helper tasks (the greeting, IDLE) would wait for answers that never come.
        pending = [t for t in (*client.tasks, *client.protocol.tasks) if not t.done()]
        if not client._client_task.done():
            pending.append(client._client_task)
        for task in pending:
            task.cancel()
        if pending:
            # Bounded: a task that does not end on its cancellation must not hold up a stop.
            await asyncio.wait(pending, timeout=min(self.timeout, 5.0))


class ImapFollower:
    """Follows one mailbox: takes its lease, reads what is new, hands each mail to ``deliver``,
    waits for more (IDLE or polling) and reconnects after failures, until stopped."""

    def __init__(
        self,
        db: Database,
        account: ImapAccount,
        deliver: Callable[[bytes], Awaitable[None]],
        *,
        owner: str,
        poll_seconds: float = 60,
        idle_seconds: float = 25 * 60,
        lease_seconds: float = 90,
        clock: Callable[[], datetime] = utcnow,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 300.0,
        timeout: float = 30.0,
        use_idle: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.db = db
        self.account = account
        self.deliver = deliver
        self.owner = owner
        self.poll_seconds = poll_seconds
        self.idle_seconds = idle_seconds
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.timeout = timeout
        self.use_idle = use_idle
        self.ssl_context = ssl_context
        self._task: asyncio.Task[None] | None = None
        self._lease = RowLease(db, _table, self._row, owner_column="imap_lease_owner",
                               until_column="imap_lease_until", owner=owner, seconds=lease_seconds,
                               clock=lambda: self.clock(), label=str(account))
        self._uidvalidity: int | None = None
        self._last_uid = 0
        self._failures = 0

    @property
    def holds_lease(self) -> bool:
        return self._lease.held

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"imap {self.account}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # A mail being handed over may take up to ``timeout`` to finish (see _read_new); past
            # that (and a little), cancel again rather than wait for ever on a stuck connection.
            done, _ = await asyncio.wait({task}, timeout=self.timeout + 5.0)
            if not done:
                logger.warning("%s: the follower did not stop in time; cancelling it again", self.account)
                task.cancel()
                await asyncio.wait({task}, timeout=5.0)
            if task.done() and not task.cancelled() and (failure := task.exception()) is not None:
                logger.warning("%s: the follower ended with %s", self.account, self._short(failure))
        try:
            await self._lease.release()
        except Exception as exc:
            # It runs out by itself after lease_seconds.
            logger.warning("%s: could not release the lease: %s", self.account, self._short(exc))

    # -- the lease ---------------------------------------------------------------------------------

    def _row(self) -> Any:
        return (_table.c.id == self.account.mailbox_id) & (_table.c.tenant_id == self.account.tenant_id)

    async def _write(self, **values: Any) -> None:
        """Write the mailbox's row, only while this process holds the lease (else LeaseLost)."""
        async with self.db.connection() as conn:
            result = await conn.execute(
                update(_table).where(self._lease.mine()).values(**values))
        if result.rowcount != 1:
            raise LeaseLost

    async def _run(self) -> None:
        await self._lease.hold_while(self._read_loop, retry_seconds=self.lease_seconds)

    # -- reading -----------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        """Sessions, one after the other, with a back-off between failures. Returns only when the
        lease was lost."""
        while True:
            try:
                await self._session()
            except LeaseLost:
                logger.warning("%s: lost the lease; stopping here", self.account)
                return
            except Exception as exc:
                self._failures += 1
                text = self._short(exc)
                delay = self._backoff()
                if isinstance(exc, DeliveryFailed):
                    logger.warning("%s: delivering UID %s failed; trying again in %.2g s", self.account,
                                   exc.uid, delay, exc_info=exc.__cause__)
                else:
                    logger.warning("%s: %s; trying again in %.2g s", self.account, text, delay)
                try:
                    await self._write(imap_error=text, imap_checked_at=self.clock())
                except LeaseLost:
                    return
                except Exception as db_exc:
                    logger.warning("%s: could not record the error: %s", self.account, self._short(db_exc))
                await asyncio.sleep(delay)

    def _backoff(self) -> float:
        base = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** min(self._failures - 1, 30))
        # Jitter, so the mailboxes of one server that went down do not all come back at once.
        return float(min(self.max_backoff_seconds, base * random.uniform(0.8, 1.2)))

    async def _session(self) -> None:
        conn = _Connection(self.account, self.timeout, self.ssl_context)
        try:
            await conn.open()
            uidvalidity = await conn.select(self.account.folder)
            await self._load_cursor(uidvalidity)
            while True:
                await self._read_new(conn)
                self._failures = 0
                await self._write(imap_error=None, imap_checked_at=self.clock())
                if self.use_idle and conn.client.has_capability("IDLE"):
                    await conn.wait_idle(self.idle_seconds)
                else:
                    await conn.call(asyncio.sleep(self.poll_seconds), None)
        finally:
            await conn.close()

    async def _load_cursor(self, uidvalidity: int) -> None:
        # Read from the row each session: another process may have read on while we did not hold
        # the lease.
        async with self.db.read() as session:
            row = (await session.execute(
                select(_table.c.imap_uidvalidity, _table.c.imap_last_uid).where(self._row()))).one_or_none()
        if row is None:
            raise LeaseLost  # the mailbox is gone
        stored, last = row
        if stored == uidvalidity:
            self._uidvalidity, self._last_uid = uidvalidity, int(last or 0)
            return
        if stored is not None:
            logger.warning("%s: UIDVALIDITY changed from %s to %s: the server renumbered the folder; "
                           "reading it again from the start", self.account, stored, uidvalidity)
        self._uidvalidity, self._last_uid = uidvalidity, 0
        await self._write(imap_uidvalidity=uidvalidity, imap_last_uid=0)

    async def _read_new(self, conn: _Connection) -> None:
        # Until a search finds nothing new: mail that arrived during the round is announced in
        # answers we do not listen to, so the last command before IDLE must be a search.
        while True:
            uids = await conn.uids_after(self._last_uid)
            if not uids:
                return
            for uid in uids:
                raw = await conn.fetch(uid)
                step = asyncio.ensure_future(self._hand_over(conn, uid, raw))
                try:
                    await asyncio.shield(step)
                except asyncio.CancelledError:
                    # Stopping (or the lease lost) while a mail is being handed over: finish it,
                    # cursor included, within ``timeout``, so that a restart does not hand it over
                    # again. Past that it is cancelled; the next reader delivers it once more.
                    if not step.done():
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(step, self.timeout)
                    elif not step.cancelled():
                        step.exception()  # retrieved: it is the cancellation that goes on
                    raise

    async def _hand_over(self, conn: _Connection, uid: int, raw: bytes | None) -> None:
        """deliver, then the cursor, then \\Seen: in that order, so a failure never skips a mail."""
        if raw is None:
            logger.info("%s: UID %s vanished before it was read", self.account, uid)
        else:
            try:
                await self.deliver(raw)
            except Exception as exc:
                raise DeliveryFailed(uid) from exc
        await self._write(imap_last_uid=uid)
        self._last_uid = uid
        if raw is not None:
            await conn.mark_seen(uid)

    def _short(self, exc: BaseException) -> str:
        """A failure as imap_error shows it: short, and never with the password."""
        if isinstance(exc, DeliveryFailed):
            cause = exc.__cause__
            text = f"delivering UID {exc.uid} failed: " + (
                f"{type(cause).__name__}: {cause}" if cause is not None else "unknown error")
        elif isinstance(exc, ImapError):
            text = str(exc)
        elif isinstance(exc, ConnectionRefusedError):
            text = f"connection refused by {self.account.host}:{self.account.port}"
        elif isinstance(exc, ssl.SSLError):
            text = f"TLS failed: {exc.reason or exc}"
        elif isinstance(exc, TimeoutError | aioimaplib.CommandTimeout):
            text = f"{self.account.host}:{self.account.port} did not answer within {self.timeout:g} s"
        elif isinstance(exc, OSError):
            text = f"cannot connect to {self.account.host}:{self.account.port}: {exc.strerror or exc}"
        elif isinstance(exc, aioimaplib.AioImapException):
            text = f"IMAP error: {exc}"
        else:
            text = f"{type(exc).__name__}: {exc}"
        password = self.account.password
        if password:
            for form in (aioimaplib.quoted(password), password):
                text = text.replace(form, "***")
        text = " ".join(text.split())
        return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class ImapFollowers:
    """One follower per active mailbox with an IMAP account, over all tenants, kept in step with
    the rows: ``refresh`` (and, every ``refresh_seconds``, the manager itself) starts followers for
    new mailboxes, stops those of mailboxes removed or made inactive, and restarts one whose account
    changed. ``deliver_for(account)`` gives the callable that takes that mailbox's raw mail.
    ``options`` are passed to every :class:`ImapFollower` (poll_seconds, lease_seconds...)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        deliver_for: Callable[[ImapAccount], Callable[[bytes], Awaitable[None]]],
        owner: str,
        *,
        refresh_seconds: float = 30.0,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.deliver_for = deliver_for
        self.owner = owner
        self.refresh_seconds = refresh_seconds
        self.options = dict(options or {})
        self.followers: dict[int, ImapFollower] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="imap followers")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        async with self._lock:
            followers, self.followers = list(self.followers.values()), {}
            await asyncio.gather(*(f.stop() for f in followers))

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                logger.exception("reading the IMAP mailboxes failed; trying again in %g s", self.refresh_seconds)
            await asyncio.sleep(self.refresh_seconds)

    async def refresh(self) -> None:
        async with self._lock:
            # Every tenant's mailboxes: an unscoped read, by construction only of this table.
            async with self.db.read() as session:
                rows = (await session.execute(
                    select(EmailMailbox).where(EmailMailbox.active.is_(True), EmailMailbox.imap_host.is_not(None))
                )).scalars().all()
            wanted: dict[int, ImapAccount] = {}
            for row in rows:
                try:
                    wanted[row.id] = account_of(self.settings, row)
                except (ValueError, secrets.SecretError) as exc:
                    await self._unusable(row, str(exc))
            for mailbox_id, follower in list(self.followers.items()):
                if wanted.get(mailbox_id) != follower.account:
                    del self.followers[mailbox_id]
                    await follower.stop()
            for mailbox_id, account in wanted.items():
                if mailbox_id not in self.followers:
                    try:
                        deliver = self.deliver_for(account)
                    except Exception:
                        logger.exception("%s: no delivery for it; not followed", account)
                        continue
                    follower = ImapFollower(self.db, account, deliver, owner=self.owner, **self.options)
                    self.followers[mailbox_id] = follower
                    follower.start()

    async def _unusable(self, row: EmailMailbox, text: str) -> None:
        # No follower can run for it: say why where the admin looks (once, not every refresh).
        if row.imap_error == text:
            return
        logger.warning("mailbox %s cannot be followed: %s", row.id, text)
        async with self.db.connection() as conn:
            await conn.execute(update(_table).where(_table.c.id == row.id, _table.c.tenant_id == row.tenant_id)
                               .values(imap_error=text, imap_checked_at=utcnow()))
