"""Following mailboxes over IMAP (connectors/email/imap.py) against a real dovecot on loopback.

``deliver`` here collects the raw mail it is handed: it is the boundary between the follower and
the channel, whose ingest is tested on its own. Timings are shortened through the follower's
parameters (leases of a second, back-offs of a few hundredths); nothing here waits for a fixed
time and then judges, it polls for the state it expects (``eventually``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select, update

from connectors.email.imap import ImapAccount, ImapFollower, ImapFollowers, account_of
from connectors.email.models import EmailMailbox
from core import secrets
from core.config import Settings
from core.db import Database
from tests.conftest import TenantInfo, eventually
from tests.email.conftest import IMAP_PASSWORD, IMAP_USER
from tests.email.dovecot import Dovecot, message, skip_without_dovecot

USER, PASSWORD = IMAP_USER, IMAP_PASSWORD

# Short everything: a test never waits out a production timing.
FAST: dict[str, Any] = dict(poll_seconds=0.2, idle_seconds=10, lease_seconds=1.0, backoff_seconds=0.05,
                            max_backoff_seconds=0.3, timeout=3.0)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url)
    yield database
    await database.dispose()


class Collector:
    """The ``deliver`` of the tests: keeps what it is handed; raises while ``failing`` is set."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.calls: list[int] = []
        self.failing = 0  # raise for the next N calls

    async def __call__(self, raw: bytes) -> None:
        n = number(raw)
        self.calls.append(n)
        if self.failing:
            self.failing -= 1
            raise RuntimeError("database is busy")
        self.raw.append(raw)

    @property
    def numbers(self) -> list[int]:
        return [number(raw) for raw in self.raw]


def number(raw: bytes) -> int:
    m = re.search(rb"Message-ID: <m(\d+)\.", raw)
    assert m, raw
    return int(m.group(1))


class Mailboxes:
    """Rows of email_mailboxes for one test's tenant, written the way the admin API would."""

    def __init__(self, settings: Settings, db: Database, tenant: TenantInfo) -> None:
        self.settings, self.db, self.tenant = settings, db, tenant
        self.ids: list[int] = []

    async def add(self, dovecot: Dovecot, *, password: str = PASSWORD, folder: str = "INBOX") -> ImapAccount:
        async with self.db.session(self.tenant.id) as session:
            row = EmailMailbox(
                tenant_id=self.tenant.id, address=f"support-{uuid.uuid4().hex[:8]}@{self.tenant.domain}",
                name="Support", imap_host=dovecot.host, imap_port=dovecot.port, imap_security="none",
                imap_username=USER, imap_password_enc=secrets.encrypt(self.settings, password),
                imap_folder=folder)
            session.add(row)
            await session.flush()
            self.ids.append(row.id)
            return account_of(self.settings, row)

    async def row(self, mailbox_id: int) -> EmailMailbox:
        async with self.db.read(self.tenant.id) as session:
            return (await session.execute(select(EmailMailbox).where(EmailMailbox.id == mailbox_id))).scalar_one()

    async def set(self, mailbox_id: int, **values: Any) -> None:
        async with self.db.session(self.tenant.id) as session:
            await session.execute(update(EmailMailbox).where(EmailMailbox.id == mailbox_id).values(**values))

    async def deactivate_all(self) -> None:
        # Other tests' managers read every tenant's mailboxes: leave none of ours behind active.
        for mailbox_id in self.ids:
            await self.set(mailbox_id, active=False)


@pytest.fixture
async def mailboxes(settings: Settings, db: Database, tenant: TenantInfo) -> AsyncIterator[Mailboxes]:
    boxes = Mailboxes(settings, db, tenant)
    yield boxes
    await boxes.deactivate_all()


class Followers:
    """Followers made by a test, stopped at its end whatever happened."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.running: list[ImapFollower] = []

    def start(self, account: ImapAccount, deliver: Collector, *, owner: str = "process-1",
              **options: Any) -> ImapFollower:
        follower = ImapFollower(self.db, account, deliver, owner=owner, **{**FAST, **options})
        follower.start()
        self.running.append(follower)
        return follower

    async def stop_all(self) -> None:
        for follower in self.running:
            await follower.stop()


@pytest.fixture
async def followers(db: Database) -> AsyncIterator[Followers]:
    made = Followers(db)
    yield made
    await made.stop_all()


async def delivered(inbox: Collector, expected: list[int], timeout: float = 10.0) -> None:
    async def check() -> bool:
        return inbox.numbers == expected
    try:
        await eventually(check, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"delivered {inbox.numbers}, expected {expected}") from None


async def test_existing_mail_is_delivered_once_in_order_and_flagged_seen_after(
        dovecot: Dovecot, mailboxes: Mailboxes, followers: Followers) -> None:
    for n in (1, 2, 3):
        await dovecot.append(USER, message(n))
    # One already read by a colleague in a mail client: taken all the same.
    await dovecot.append(USER, message(4))
    account = await mailboxes.add(dovecot)
    flags_at_delivery: list[set[str]] = []

    class Checking(Collector):
        async def __call__(self, raw: bytes) -> None:
            flags_at_delivery.append((await dovecot.flags(USER))[number(raw)])
            await super().__call__(raw)

    inbox = Checking()
    follower = followers.start(account, inbox)
    await delivered(inbox, [1, 2, 3, 4])
    assert all("\\Seen" not in flags for flags in flags_at_delivery), flags_at_delivery

    async def all_seen() -> bool:
        return all("\\Seen" in f for f in (await dovecot.flags(USER)).values())
    await eventually(all_seen)
    row = await mailboxes.row(account.mailbox_id)
    assert row.imap_uidvalidity is not None and row.imap_last_uid == 4
    assert row.imap_error is None and row.imap_checked_at is not None
    assert row.imap_lease_owner == "process-1"
    await follower.stop()
    assert inbox.numbers == [1, 2, 3, 4]
    row = await mailboxes.row(account.mailbox_id)
    assert row.imap_lease_owner is None  # released on stop


async def test_new_mail_arrives_by_idle(dovecot: Dovecot, mailboxes: Mailboxes, followers: Followers) -> None:
    account = await mailboxes.add(dovecot)
    inbox = Collector()
    # Polling and re-issued IDLE both far beyond the wait below: only the server's push can deliver.
    followers.start(account, inbox, poll_seconds=60, idle_seconds=60)

    async def following() -> bool:
        return (await mailboxes.row(account.mailbox_id)).imap_checked_at is not None
    await eventually(following)
    await dovecot.append(USER, message(1))
    await delivered(inbox, [1], timeout=5)
    await dovecot.append(USER, message(2))
    await delivered(inbox, [1, 2], timeout=5)


async def test_new_mail_arrives_by_polling_without_idle(mailboxes: Mailboxes, followers: Followers) -> None:
    skip_without_dovecot()
    server = Dovecot({USER: PASSWORD}, capability="IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE "
                                                  "SORT SEARCHRES UIDPLUS NAMESPACE")
    await server.start()
    try:
        client = await server.client(USER)
        await client.protocol.capability()
        assert not client.has_capability("IDLE")
        await client.logout()
        account = await mailboxes.add(server)
        inbox = Collector()
        followers.start(account, inbox, poll_seconds=0.2, idle_seconds=60)

        async def following() -> bool:
            return (await mailboxes.row(account.mailbox_id)).imap_checked_at is not None
        await eventually(following)
        await server.append(USER, message(1))
        await delivered(inbox, [1], timeout=5)
    finally:
        await followers.stop_all()
        await server.close()


async def test_a_restarted_follower_neither_misses_nor_repeats(
        dovecot: Dovecot, mailboxes: Mailboxes, followers: Followers) -> None:
    account = await mailboxes.add(dovecot)
    for n in (1, 2):
        await dovecot.append(USER, message(n))
    first = Collector()
    follower = followers.start(account, first)
    await delivered(first, [1, 2])
    await follower.stop()
    # Arrives while nobody follows the mailbox.
    for n in (3, 4):
        await dovecot.append(USER, message(n))
    second = Collector()
    followers.start(account, second, owner="process-2")
    await delivered(second, [3, 4])
    await dovecot.append(USER, message(5))
    await delivered(second, [3, 4, 5])
    assert first.numbers == [1, 2]
    assert (await mailboxes.row(account.mailbox_id)).imap_last_uid == 5


async def test_dovecot_restarted_while_following(dovecot: Dovecot, mailboxes: Mailboxes, followers: Followers) -> None:
    account = await mailboxes.add(dovecot)
    await dovecot.append(USER, message(1))
    inbox = Collector()
    followers.start(account, inbox)
    await delivered(inbox, [1])

    await dovecot.stop()

    async def error_recorded() -> str | None:
        return (await mailboxes.row(account.mailbox_id)).imap_error
    error = await eventually(error_recorded)
    assert PASSWORD not in error

    await dovecot.start()
    await dovecot.append(USER, message(2))
    await delivered(inbox, [1, 2])

    async def error_cleared() -> bool:
        return (await mailboxes.row(account.mailbox_id)).imap_error is None
    await eventually(error_cleared)
    assert inbox.calls == [1, 2]  # nothing handed over twice


async def test_a_failing_delivery_is_retried_not_skipped_nor_flagged(
        dovecot: Dovecot, mailboxes: Mailboxes, followers: Followers) -> None:
    account = await mailboxes.add(dovecot)
    for n in (1, 2):
        await dovecot.append(USER, message(n))
    inbox = Collector()
    inbox.failing = 1_000_000  # until the "database" is back
    followers.start(account, inbox)

    async def retried() -> bool:
        return len(inbox.calls) >= 3
    await eventually(retried)
    # The round stops at the mail that failed: the one after it is not even tried.
    assert set(inbox.calls) == {1}
    assert all("\\Seen" not in f for f in (await dovecot.flags(USER)).values())
    row = await mailboxes.row(account.mailbox_id)
    assert row.imap_last_uid == 0
    assert row.imap_error is not None and "delivering UID 1 failed" in row.imap_error

    inbox.failing = 0
    await delivered(inbox, [1, 2])

    async def all_seen() -> bool:
        return all("\\Seen" in f for f in (await dovecot.flags(USER)).values())
    await eventually(all_seen)
    assert (await mailboxes.row(account.mailbox_id)).imap_error is None


async def test_a_delivery_failing_once_is_delivered_on_the_next_attempt(
        dovecot: Dovecot, mailboxes: Mailboxes, followers: Followers) -> None:
    account = await mailboxes.add(dovecot)
    for n in (1, 2):
        await dovecot.append(USER, message(n))
    inbox = Collector()
    inbox.failing = 1
    followers.start(account, inbox)
    await delivered(inbox, [1, 2])
    assert inbox.calls == [1, 1, 2]


async def test_a_changed_uidvalidity_reads_the_folder_again(
        dovecot: Dovecot, mailboxes: Mailboxes, followers: Followers, caplog: pytest.LogCaptureFixture) -> None:
    await dovecot.imap_command(USER, "CREATE", "Support")
    for n in (1, 2):
        await dovecot.append(USER, message(n), folder="Support")
    account = await mailboxes.add(dovecot, folder="Support")
    first = Collector()
    follower = followers.start(account, first)
    await delivered(first, [1, 2])
    await follower.stop()
    old = (await mailboxes.row(account.mailbox_id)).imap_uidvalidity

    # The folder is made anew: its new mail has UIDs 1 and 2 again, at or below the stored cursor.
    await dovecot.imap_command(USER, "DELETE", "Support")
    await dovecot.imap_command(USER, "CREATE", "Support")
    for n in (3, 4):
        await dovecot.append(USER, message(n), folder="Support")
    second = Collector()
    with caplog.at_level(logging.WARNING, logger="connectors.email.imap"):
        followers.start(account, second)
        await delivered(second, [3, 4])
    row = await mailboxes.row(account.mailbox_id)
    assert row.imap_uidvalidity != old and row.imap_last_uid == 2
    assert "UIDVALIDITY changed" in caplog.text


async def test_a_wrong_stored_uidvalidity_reads_everything_again(
        dovecot: Dovecot, mailboxes: Mailboxes, followers: Followers) -> None:
    account = await mailboxes.add(dovecot)
    for n in (1, 2):
        await dovecot.append(USER, message(n))
    first = Collector()
    follower = followers.start(account, first)
    await delivered(first, [1, 2])
    await follower.stop()
    real = (await mailboxes.row(account.mailbox_id)).imap_uidvalidity
    assert real is not None
    await mailboxes.set(account.mailbox_id, imap_uidvalidity=real + 1)
    await dovecot.append(USER, message(3))
    second = Collector()
    followers.start(account, second)
    # Everything again (ingest drops the repeats by Message-ID); nothing lost.
    await delivered(second, [1, 2, 3])
    row = await mailboxes.row(account.mailbox_id)
    assert (row.imap_uidvalidity, row.imap_last_uid) == (real, 3)


async def test_one_process_follows_a_mailbox_and_another_takes_over(
        dovecot: Dovecot, mailboxes: Mailboxes, followers: Followers) -> None:
    account = await mailboxes.add(dovecot)
    for n in (1, 2):
        await dovecot.append(USER, message(n))
    one, two = Collector(), Collector()
    first = followers.start(account, one, owner="process-1")

    async def leased_to_first() -> bool:
        return (await mailboxes.row(account.mailbox_id)).imap_lease_owner == "process-1"
    await eventually(leased_to_first)
    second = followers.start(account, two, owner="process-2")
    await delivered(one, [1, 2])
    await dovecot.append(USER, message(3))
    await delivered(one, [1, 2, 3])
    assert two.calls == [] and not second.holds_lease

    await first.stop()
    await dovecot.append(USER, message(4))
    # The second tries again every lease period (1 s here).
    await delivered(two, [4], timeout=5)
    assert one.numbers == [1, 2, 3]
    assert (await mailboxes.row(account.mailbox_id)).imap_lease_owner == "process-2"


async def test_a_wrong_password_is_recorded_without_the_password(
        dovecot: Dovecot, mailboxes: Mailboxes, followers: Followers, caplog: pytest.LogCaptureFixture) -> None:
    wrong = 'not-"the\\password-42'
    account = await mailboxes.add(dovecot, password=wrong)
    assert wrong not in repr(account)
    inbox = Collector()
    caplog.set_level(logging.DEBUG)
    follower = followers.start(account, inbox)

    async def recorded() -> str | None:
        return (await mailboxes.row(account.mailbox_id)).imap_error
    error = await eventually(recorded)
    assert "authentication failed" in error.lower()

    # It keeps trying, with its back-off. (Dovecot delays its answers to an address that failed
    # before, so later attempts may time out rather than be refused.)
    async def retried() -> bool:
        return caplog.text.count("trying again") >= 2
    await eventually(retried)
    assert follower.running  # still trying, not crashed
    await follower.stop()
    assert inbox.calls == []
    escaped = wrong.replace("\\", "\\\\").replace('"', '\\"')
    for form in (wrong, escaped, "the\\password", "password-42"):
        assert form not in caplog.text
        assert form not in error


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_tls_and_starttls(security: str, mailboxes: Mailboxes, followers: Followers) -> None:
    skip_without_dovecot()
    server = Dovecot({USER: PASSWORD}, tls=True)
    await server.start()
    try:
        account = replace(await mailboxes.add(server), security=security,
                          port=server.tls_port if security == "tls" else server.port)
        await server.append(USER, message(1))
        # The server's certificate is its own: a follower that trusts only the usual authorities
        # refuses it (and says why), one that trusts it reads.
        untrusting = followers.start(account, Collector(), owner="untrusting")

        async def refused() -> str | None:
            error = (await mailboxes.row(account.mailbox_id)).imap_error
            return error if error and "CERTIFICATE_VERIFY_FAILED" in error else None
        await eventually(refused)
        await untrusting.stop()
        inbox = Collector()
        followers.start(account, inbox, ssl_context=ssl.create_default_context(cafile=str(server.cert)))
        await delivered(inbox, [1])

        async def cleared() -> bool:
            return (await mailboxes.row(account.mailbox_id)).imap_error is None
        await eventually(cleared)
        assert "TLS" in server.log, server.log
    finally:
        await followers.stop_all()
        await server.close()


async def test_starttls_is_never_skipped(dovecot: Dovecot, mailboxes: Mailboxes, followers: Followers,
                                         caplog: pytest.LogCaptureFixture) -> None:
    # A server without STARTTLS (ssl = no): the password is not sent in clear instead.
    account = replace(await mailboxes.add(dovecot), security="starttls")
    caplog.set_level(logging.DEBUG, logger="aioimaplib")
    followers.start(account, Collector())

    async def refused() -> str | None:
        return (await mailboxes.row(account.mailbox_id)).imap_error
    assert await eventually(refused) == "the server does not offer STARTTLS"
    assert " LOGIN " not in caplog.text  # the command never went out


async def test_the_manager_follows_the_rows(
        settings: Settings, db: Database, dovecot: Dovecot, mailboxes: Mailboxes) -> None:
    inboxes: dict[int, Collector] = {}

    def deliver_for(account: ImapAccount) -> Collector:
        return inboxes.setdefault(account.mailbox_id, Collector())

    account = await mailboxes.add(dovecot)
    await dovecot.append(USER, message(1))
    manager = ImapFollowers(db, settings, deliver_for, f"manager-{uuid.uuid4().hex[:6]}", options=FAST)
    manager.start()
    try:
        async def followed() -> bool:
            box = inboxes.get(account.mailbox_id)
            return box is not None and box.numbers == [1]
        await eventually(followed)

        # A new password (here a wrong one) restarts that mailbox's follower with it.
        before = manager.followers[account.mailbox_id]
        await mailboxes.set(account.mailbox_id, imap_password_enc=secrets.encrypt(settings, "changed"))
        await manager.refresh()
        assert manager.followers[account.mailbox_id] is not before
        assert manager.followers[account.mailbox_id].account.password == "changed"

        async def refused() -> bool:
            error = (await mailboxes.row(account.mailbox_id)).imap_error
            return error is not None and "authentication failed" in error
        await eventually(refused)

        await mailboxes.set(account.mailbox_id, active=False)
        await manager.refresh()
        assert account.mailbox_id not in manager.followers
    finally:
        await manager.stop()
    assert manager.followers == {}
    await asyncio.sleep(0)
