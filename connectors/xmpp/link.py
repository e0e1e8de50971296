"""One account's connection to its XMPP server, held by one process at a time.

**The lease.** A :class:`Link` takes its account's lease with one conditional UPDATE on
``xmpp_accounts`` (no owner, itself, or a lease that ran out) and renews it a third of the way
through while it runs; one that does not get it connects nothing and tries again. A process that
stalls past its lease notices at its next renewal and drops the connection; stopping releases the
lease, and a process that died leaves a lease that runs out after ``lease_seconds``.

**Sessions.** Each session is a fresh slixmpp stream (``ClientXMPP`` or ``ComponentXMPP``) on the
hub's loop: connected, authenticated, presence sent, then it runs until the server or the network
drops it. Failures (refused, a wrong password, a server restart) reconnect after a back-off of 1 s
doubling to 5 min, with jitter, which starts over after a session that came up. A fresh stream per
session means nothing slixmpp queued in a dead one goes out behind the outbox's back.

**Inbound, nothing lost.** A chat or normal message with text or links is stored through the inbox
(``Inbox.ingest``, keyed by the stanza id: :func:`connectors.xmpp.parse.message_key`). With stream
management (XEP-0198) the server learns that we handled a stanza only once it is stored: the count
we answer an ack request with stops before the oldest stanza not yet committed, so a stanza the hub
had not stored when the stream died is one the server still holds, and sends again (from offline
storage) after the reconnect; storing it again is a no-op. A stanza that cannot be stored at all
drops the session for the same reason. A delivery receipt the customer asked for (XEP-0184) is sent
after the commit.

**Outbound, acknowledged.** :meth:`send` writes the reply's stanzas and waits for the server's
acknowledgement: with stream management, the ``<a/>`` that covers them; without it (components,
servers without XEP-0198), the answer to a ping sent after them, which the server processes in
order. Only then is the reply delivered (the outbox records it); a stream lost before that fails the
send as retryable, and the outbox sends it again on the next session. An error stanza the server
returns for it before the ack fails it for good with the server's reason; one that comes later
marks it failed after the fact (``core.outbox.mark_failed_after_send``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

import slixmpp
from slixmpp.componentxmpp import ComponentXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath
from sqlalchemy import func, select, update

from connectors.xmpp import parse as xp
from connectors.xmpp import store as xstore
from connectors.xmpp.models import XmppAccount
from connectors.xmpp.store import AccountConfig
from core import live
from core.channels import Attachment, InboundMessage
from core.errors import Busy, DeliveryError
from core.events import EventKind, tenant_topic
from core.leases import RowLease
from core.models import Agent, Presence, table_of, utcnow

if TYPE_CHECKING:
    from connectors.xmpp.connector import XmppConnector

logger = logging.getLogger(__name__)

_table = table_of(XmppAccount)
MAX_ERROR_CHARS = 300
NS_SM = "urn:xmpp:sm:3"
NS_PING = "urn:xmpp:ping"
NS_MUC = "http://jabber.org/protocol/muc"
# How many times a message is tried against the inbox before the session is dropped (the server
# then keeps it and sends it again).
STORE_TRIES = 8


class LeaseLost(Exception):
    pass


class SessionFailed(Exception):
    """The session could not come up (its text is what the admin sees)."""


def stanza_id(message_id: int, part: int = 0) -> str:
    return f"chub-{message_id}" if part == 0 else f"chub-{message_id}-{part}"


def message_of(stanza_id_: str) -> int | None:
    if not stanza_id_.startswith("chub-"):
        return None
    head = stanza_id_[5:].split("-", 1)[0]
    return int(head) if head.isdigit() else None


class Link:
    def __init__(self, connector: XmppConnector, account: AccountConfig, owner: str, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.connector = connector
        self.hub = connector.hub
        self.settings = connector.settings
        self.account = account
        self.owner = owner
        self.clock = clock
        self.xmpp: Any = None
        self.ready = False  # a session is up: sends go out now
        self._task: asyncio.Task[None] | None = None
        self._lease = RowLease(self.hub.db, _table, self._row, owner_column="lease_owner", until_column="lease_until",
                               owner=owner, seconds=self.settings.lease_seconds, clock=lambda: self.clock(),
                               label=str(account), takeable=lambda: _table.c.active.is_(True),
                               on_release={"connected": False})
        self._failures = 0
        self._pending_acks: dict[str, asyncio.Future[None]] = {}
        self._sm = False
        # Inbound stanzas counted by stream management but not stored yet (their sequence numbers).
        self._unstored: set[int] = set()
        self._peers: set[tuple[str, str]] = set()
        self._talked: dict[str, str] = {}  # customer bare JID → our address (component presence)
        self._presence: str | None = None
        self._subs: list[Any] = []
        self._bg: set[asyncio.Task[Any]] = set()
        self._session_lost: asyncio.Future[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def holds_lease(self) -> bool:
        return self._lease.held

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"xmpp {self.account}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
            if not done:
                logger.warning("%s: the link did not stop in time", self.account)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _run(self) -> None:
        try:
            await self._lease.hold_while(self._hold, retry_seconds=self.settings.lease_seconds / 3)
        finally:
            await self._close_session()
            with contextlib.suppress(Exception):
                await self._lease.release()

    # --- the lease ---------------------------------------------------------------------------------
    def _row(self) -> Any:
        return (_table.c.id == self.account.id) & (_table.c.tenant_id == self.account.tenant_id)

    async def _status(self, *, connected: bool, error: str | None) -> None:
        try:
            async with self.hub.db.connection() as conn:
                await conn.execute(update(_table).where(self._lease.mine())
                                   .values(connected=connected, error=error, checked_at=self.clock()))
        except Exception as exc:
            logger.warning("%s: could not record its status: %s", self.account, self._short(exc))

    async def _hold(self) -> None:
        """While the lease is held: the sessions, one after the other, and the bus topics this
        account answers (cancelled by the lease when it is lost)."""
        self._subs = [
            self.hub.bus.subscribe(live.live_topic(self.account.tenant_id), self._on_live),
            self.hub.bus.subscribe(tenant_topic(self.account.tenant_id), self._on_event),
            self.hub.bus.subscribe(self.connector.send_topic(self.account.id), self._on_relay),
        ]
        try:
            await self._sessions()
        finally:
            for sub in self._subs:
                sub.close()
            self._subs = []
            await self._close_session()

    # --- sessions ----------------------------------------------------------------------------------
    async def _sessions(self) -> None:
        while True:
            try:
                await self._session()
                self._failures = 0
                delay = self._backoff(1)
                logger.info("%s: the server closed the stream; reconnecting in %.2g s", self.account, delay)
                await self._status(connected=False, error="disconnected")
            except Exception as exc:
                self._failures += 1
                delay = self._backoff(self._failures)
                text = self._short(exc)
                logger.warning("%s: %s; trying again in %.2g s", self.account, text, delay)
                await self._status(connected=False, error=text)
            await asyncio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        s = self.settings
        base = min(s.max_backoff_seconds, s.backoff_seconds * 2 ** min(failures - 1, 30))
        return float(min(s.max_backoff_seconds, base * random.uniform(0.8, 1.2)))

    def _make(self) -> Any:
        a = self.account
        if a.kind == "component":
            xmpp: Any = ComponentXMPP(a.jid, a.secret, a.host, a.port)
        else:
            plaintext = a.security == "none"
            xmpp = slixmpp.ClientXMPP(f"{a.jid}/channelhub", a.secret, plugin_config={
                "feature_mechanisms": {"unencrypted_plain": plaintext, "unencrypted_scram": plaintext}})
            xmpp.enable_plaintext = plaintext
            xmpp.enable_starttls = a.security == "starttls"
            xmpp.enable_direct_tls = a.security == "tls"
            xmpp.register_plugin("xep_0198", {"window": 1_000_000})
            # Customers who add the account see its presence.
            xmpp.auto_authorize = True
        return xmpp

    async def _session(self) -> None:
        a = self.account
        if a.security == "none" and a.host not in self.settings.plaintext_hosts:
            raise SessionFailed(f"plaintext to {a.host} is not allowed (CHANNELHUB_XMPP_PLAINTEXT_HOSTS)")
        loop = asyncio.get_running_loop()
        xmpp = self._make()
        up: asyncio.Future[None] = loop.create_future()
        lost: asyncio.Future[None] = loop.create_future()

        def fail(why: str) -> Callable[[Any], None]:
            def handler(event: Any) -> None:
                if not up.done():
                    up.set_exception(SessionFailed(f"{why}: {event}" if why != "authentication failed" else why))
                if not lost.done():
                    lost.set_result(None)
            return handler

        def started(_: Any) -> None:
            if not up.done():
                up.set_result(None)

        xmpp.add_event_handler("session_start", started)
        xmpp.add_event_handler("failed_auth", fail("authentication failed"))
        xmpp.add_event_handler("connection_failed", fail("cannot connect"))
        xmpp.add_event_handler("disconnected", fail("disconnected"))
        xmpp.add_event_handler("stream_error", lambda e: logger.warning("%s: stream error %s", a, e))
        # Every message stanza, not slixmpp's "message" event (only those with a body): chat
        # states, receipts and errors come without one.
        xmpp.register_handler(Callback("channelhub messages", MatchXPath(f"{{{xmpp.default_ns}}}message"),
                                       self._on_message))
        xmpp.add_event_handler("stanza_acked", self._on_acked)
        xmpp.add_event_handler("sm_enabled", self._on_sm)
        xmpp.add_event_handler("presence_probe", self._on_probe)
        self.xmpp, self._sm, self._unstored, self._presence = xmpp, False, set(), None
        self._session_lost = lost
        sm = xmpp.plugin.get("xep_0198", None) if a.kind == "client" else None
        if sm is not None:
            # Acknowledge only what is stored (see the module's docstring).
            sm.send_ack = lambda: self._send_ack(sm)
        try:
            xmpp.connect(a.host, a.port)
            try:
                await asyncio.wait_for(asyncio.shield(up), timeout=30)
            except TimeoutError:
                raise SessionFailed(f"{a.host}:{a.port} did not open a session within 30 s") from None
            self.ready = True
            self._failures = 0
            logger.info("%s: connected", a)
            await self._status(connected=True, error=None)
            for room in a.muc_rooms:
                pres = xmpp.make_presence(pto=f"{room}/{self._nick()}")
                x = ET.SubElement(pres.xml, f"{{{NS_MUC}}}x")
                ET.SubElement(x, f"{{{NS_MUC}}}history", maxstanzas="0")
                pres.send()
            await self._update_presence(force=True)
            await lost
        finally:
            self.ready = False
            self._fail_pending(DeliveryError("the connection to the XMPP server was lost before it acknowledged "
                                             "the reply", retry=True, code="xmpp_not_acknowledged"))
            await self._close_session()

    def _nick(self) -> str:
        return (self.account.name or "Support")[:50]

    async def _close_session(self) -> None:
        xmpp, self.xmpp = self.xmpp, None
        self.ready = False
        if xmpp is None:
            return
        with contextlib.suppress(Exception):
            xmpp.cancel_connection_attempt()
        if xmpp.transport is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(xmpp.disconnect(wait=1.0), 3)
        with contextlib.suppress(Exception):
            xmpp.abort()
        if self._session_lost is not None and not self._session_lost.done():
            self._session_lost.set_result(None)

    def _drop(self, why: str) -> None:
        logger.warning("%s: dropping the session: %s", self.account, why)
        if self._session_lost is not None and not self._session_lost.done():
            self._session_lost.set_result(None)

    # --- stream management: acks both ways ----------------------------------------------------------
    def _on_sm(self, _: Any) -> None:
        self._sm = True

    def _send_ack(self, sm: Any) -> None:
        xmpp = self.xmpp
        if xmpp is None or xmpp.transport is None:
            return
        h = (min(self._unstored) - 1) % (1 << 32) if self._unstored else sm.handled
        xmpp.send_raw(f"<a xmlns='{NS_SM}' h='{h}'/>")

    def _on_acked(self, stanza: Any) -> None:
        fut = self._pending_acks.pop(stanza["id"], None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _fail_pending(self, error: DeliveryError) -> None:
        pending, self._pending_acks = self._pending_acks, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)

    # --- inbound -----------------------------------------------------------------------------------
    def _on_message(self, msg: Any) -> None:
        try:
            p = xp.parse(msg.xml)
        except Exception:
            logger.exception("%s: unreadable message stanza", self.account)
            return
        a = self.account
        if p.kind == "error":
            self._on_error(p)
            return
        if p.kind == "headline":
            return
        if p.kind == "groupchat":
            room = p.bare
            if room not in a.muc_rooms or p.delay or p.sender.partition("/")[2] in ("", self._nick()):
                return  # not configured, history, the room's own notices, or our own echo
        elif p.kind not in ("chat", "normal"):
            return
        if p.receipt_for:
            self._spawn(self._receipt(p))
        if not (p.text.strip() or p.links):
            if p.chat_state and p.kind == "chat":
                state = "composing" if p.chat_state == "composing" else "paused"
                self._spawn(self._typing(p.bare, state))
            return
        seq = None
        sm = self.xmpp.plugin.get("xep_0198", None) if self.xmpp is not None and a.kind == "client" else None
        if sm is not None and getattr(sm, "enabled_in", False):
            seq = sm.handled
            self._unstored.add(seq)
        self._spawn(self._store(p, seq, self.xmpp))

    async def _store(self, p: xp.Parsed, seq: int | None, xmpp: Any) -> None:
        a = self.account
        groupchat = p.kind == "groupchat"
        customer = p.bare
        local = a.jid if a.kind == "client" else (xp.bare(p.to) or a.jid)
        attachments = tuple(Attachment(name=link.name, content_type="application/octet-stream", url=link.url)
                            for link in p.links)
        msg = InboundMessage(
            tenant_id=a.tenant_id, channel=xstore.CHANNEL, external_id=customer, text=p.text,
            channel_message_id=xp.message_key(p), attachments=attachments,
            customer_name=p.sender.partition("/")[2] if groupchat else None,
            subject=None, customer_attributes={"xmpp_to": local})
        stored = False
        for attempt in range(STORE_TRIES):
            try:
                peer = (customer, local)
                if peer not in self._peers:
                    # Marked before the write: a burst from one customer writes the row once.
                    self._peers.add(peer)
                    try:
                        await xstore.remember_peer(self.hub, a.tenant_id, a.id, customer, local)
                    except BaseException:
                        self._peers.discard(peer)
                        raise
                await self.hub.inbox.ingest(msg)
                stored = True
                break
            except Busy:
                await asyncio.sleep(0.1 * 2 ** attempt)
            except Exception:
                logger.exception("%s: storing a message from %s failed (try %d)", a, customer, attempt + 1)
                with contextlib.suppress(Exception):
                    # The landing path: the drainer makes the ticket message later.
                    await self.hub.inbox.accept([msg])
                    stored = True
                    break
                await asyncio.sleep(0.1 * 2 ** attempt)
        if not stored:
            # Never acknowledged: the server keeps it and sends it again on the next session.
            self._drop(f"a message from {customer} could not be stored")
            return
        if seq is not None:
            self._unstored.discard(seq)
        if not groupchat:
            self._talked[customer] = local
        if p.receipt_request and p.stanza_id and xmpp is not None and xmpp is self.xmpp and not groupchat:
            reply = xmpp.make_message(mto=p.sender, mfrom=local if a.kind == "component" else None)
            ET.SubElement(reply.xml, f"{{{xp.NS_RECEIPTS}}}received", id=p.stanza_id)
            reply.send()

    async def _receipt(self, p: xp.Parsed) -> None:
        try:
            await xstore.record_receipt(self.hub, self.account.tenant_id, p.receipt_for or "", p.bare)
        except Exception as exc:
            logger.warning("%s: could not record a receipt: %s", self.account, self._short(exc))

    async def _typing(self, customer: str, state: str) -> None:
        try:
            await live.customer_typing(self.hub, self.account.tenant_id, xstore.CHANNEL, customer, state)
        except Exception as exc:
            logger.info("%s: typing from %s not passed on: %s", self.account, customer, self._short(exc))

    def _on_error(self, p: xp.Parsed) -> None:
        condition, reason = p.error or ("undefined-condition", "")
        text = f"the XMPP server refused the reply: {condition}" + (f" ({reason})" if reason else "")
        error = DeliveryError(text[:500], retry=False, code="xmpp_error")
        fut = self._pending_acks.pop(p.stanza_id or "", None)
        if fut is not None and not fut.done():
            fut.set_exception(error)
            return
        message_id = message_of(p.stanza_id or "")
        if message_id is not None:
            from core.outbox import mark_failed_after_send

            self._spawn(mark_failed_after_send(self.hub, self.account.tenant_id, message_id, error))

    def _on_probe(self, pres: Any) -> None:
        if self.xmpp is None or self._presence is None:
            return
        self._send_presence(str(pres["from"].bare), str(pres["to"].bare) or None)

    # --- outbound ----------------------------------------------------------------------------------
    async def send(self, to: str, local: str, text: str, links: list[str], message_id: int) -> str:
        xmpp = self.xmpp
        if not self.ready or xmpp is None:
            raise DeliveryError(f"{self.account.jid} is not connected to its XMPP server", retry=True,
                                code="xmpp_not_connected")
        a = self.account
        groupchat = to in a.muc_rooms
        parts: list[tuple[str, str | None]] = []
        if text.strip() or not links:
            parts.append((text, None))
        parts.extend((url, url) for url in links)
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        ids: list[str] = []
        use_sm = self._sm and a.kind == "client"
        for n, (body, url) in enumerate(parts):
            sid = stanza_id(message_id, n)
            ids.append(sid)
            msg = xmpp.make_message(mto=to, mbody=body, mtype="groupchat" if groupchat else "chat",
                                    mfrom=local if a.kind == "component" else None)
            msg["id"] = sid
            ET.SubElement(msg.xml, f"{{{xp.NS_SID}}}origin-id", id=sid)
            if not groupchat:
                ET.SubElement(msg.xml, f"{{{xp.NS_RECEIPTS}}}request")
                ET.SubElement(msg.xml, f"{{{xp.NS_CHATSTATES}}}active")
            if url is not None:
                x = ET.SubElement(msg.xml, f"{{{xp.NS_OOB}}}x")
                ET.SubElement(x, f"{{{xp.NS_OOB}}}url").text = url
            fut: asyncio.Future[None] = loop.create_future()
            self._pending_acks[sid] = fut
            waits.append(fut)
            msg.send()
        try:
            if use_sm:
                xmpp.send(f"<r xmlns='{NS_SM}'/>")
                await asyncio.wait_for(asyncio.gather(*waits), self.settings.ack_timeout)
            else:
                await self._barrier(xmpp, local)
                # An error the server returned for a part came before the ping's answer.
                await asyncio.sleep(0)
                for sid, fut in zip(ids, waits, strict=True):
                    if fut.done():
                        fut.result()
                    else:
                        fut.set_result(None)
                        self._pending_acks.pop(sid, None)
        except TimeoutError:
            raise DeliveryError("the XMPP server did not acknowledge the reply in time", retry=True,
                                code="xmpp_not_acknowledged") from None
        finally:
            for sid in ids:
                left = self._pending_acks.pop(sid, None)
                if left is not None and not left.done():
                    left.cancel()
        for sid in ids:
            with contextlib.suppress(Exception):
                await xstore.record_ack(self.hub, a.tenant_id, message_id, a.id, sid, to)
        return ids[0]

    async def _barrier(self, xmpp: Any, local: str) -> None:
        """A ping to the server, answered after everything sent before it was processed."""
        a = self.account
        server = a.jid.partition(".")[2] if a.kind == "component" else a.jid.rpartition("@")[2]
        iq = xmpp.make_iq_get(ito=server or a.jid, ifrom=local if a.kind == "component" else None)
        ET.SubElement(iq.xml, f"{{{NS_PING}}}ping")
        try:
            await iq.send(timeout=self.settings.ack_timeout)
        except IqError:
            pass  # an error answer is an answer: the server got this far
        except IqTimeout:
            raise TimeoutError from None

    def _on_relay(self, request: dict[str, Any]) -> None:
        self._spawn(self.connector.serve_relay(self, request))

    # --- presence and typing -----------------------------------------------------------------------
    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("kind") == EventKind.AGENT_PRESENCE:
            self._spawn(self._update_presence())

    async def _update_presence(self, *, force: bool = False) -> None:
        try:
            async with self.hub.db.read(self.account.tenant_id) as session:
                online = (await session.execute(
                    select(func.count()).select_from(Agent)
                    .where(Agent.active.is_(True), Agent.status == Presence.ONLINE))).scalar_one()
        except Exception as exc:
            logger.info("%s: presence not updated: %s", self.account, self._short(exc))
            return
        show = "available" if online else "away"
        if show == self._presence and not force:
            return
        self._presence = show
        if self.xmpp is None or not self.ready:
            return
        if self.account.kind == "client":
            self._send_presence(None, None)
        else:
            for customer, local in list(self._talked.items()):
                self._send_presence(customer, local)

    def _send_presence(self, to: str | None, local: str | None) -> None:
        xmpp = self.xmpp
        if xmpp is None:
            return
        kwargs: dict[str, Any] = {"pstatus": self.account.name or None}
        if self._presence == "away":
            kwargs["pshow"] = "away"
        if to is not None:
            kwargs["pto"] = to
        if local is not None and self.account.kind == "component":
            kwargs["pfrom"] = local
        xmpp.send_presence(**kwargs)

    def _on_live(self, signal: dict[str, Any]) -> None:
        if (signal.get("kind") != "typing" or signal.get("channel") != xstore.CHANNEL
                or (signal.get("by") or {}).get("type") != "agent" or not signal.get("external_id")):
            return
        self._spawn(self._agent_typing(str(signal["external_id"]), str(signal.get("state"))))

    async def _agent_typing(self, customer: str, state: str) -> None:
        xmpp = self.xmpp
        if xmpp is None or not self.ready:
            return
        found = await self.connector.peer_of(self.account.tenant_id, customer)
        if found is None or found[0] != self.account.id or customer in self.account.muc_rooms:
            return
        msg = xmpp.make_message(mto=customer, mtype="chat",
                                mfrom=found[1] if self.account.kind == "component" else None)
        ET.SubElement(msg.xml, f"{{{xp.NS_CHATSTATES}}}{'composing' if state == 'composing' else 'paused'}")
        ET.SubElement(msg.xml, f"{{{xp.NS_HINTS}}}no-store")
        msg.send()

    # --- errors as the admin sees them ---------------------------------------------------------------
    def _short(self, exc: BaseException) -> str:
        if isinstance(exc, SessionFailed):
            text = str(exc)
        elif isinstance(exc, ConnectionRefusedError):
            text = f"connection refused by {self.account.host}:{self.account.port}"
        elif isinstance(exc, OSError):
            text = f"cannot connect to {self.account.host}:{self.account.port}: {exc.strerror or exc}"
        else:
            text = f"{type(exc).__name__}: {exc}"
        if self.account.secret:
            text = text.replace(self.account.secret, "***")
        text = " ".join(text.split())
        return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
