"""The XMPP connector: one link per tenant account (client or component) on the hub's own loop, and
replies through the outbox, delivered once the server has acknowledged them.

Every ``channelhub serve`` process runs a :class:`Link` for every active account of every tenant;
the account's lease decides which one connects (connectors/xmpp/link.py). Accounts run side by side:
each link is its own task with its own back-off, so a server that is down or a wrong password holds
up nothing but that account.

A reply is delivered by the process that holds its account: the one that claims the outbox row, if
it does; otherwise the row's process asks the holder over the bus (``xmpp:send:<account id>``) and
waits for its answer (``xmpp:sent:<process>``), and a holder that does not answer in time leaves the
row to be retried (at least once, as every outbox delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from functools import partial
from typing import Any

from connectors.xmpp import store as xstore
from connectors.xmpp.link import Link
from connectors.xmpp.settings import XmppSettings
from core import attachments
from core.bus import Subscription
from core.cache import TTLCache
from core.channels import Connector, OutboundMessage
from core.errors import DeliveryError
from core.hub import Hub
from core.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

CONFIG_TTL = 10.0


class XmppConnector(Connector):
    kind = "xmpp"

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.settings = hub.settings.channel(self.kind, XmppSettings)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.links: dict[int, Link] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._peers: TTLCache[tuple[int, str], tuple[int, str]] = TTLCache(CONFIG_TTL)
        self._accounts: TTLCache[int, tuple[tuple[int, str, str, bool], ...]] = TTLCache(CONFIG_TTL)
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reply_sub: Subscription | None = None
        self._refresh: asyncio.Future[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._reply_sub = self.hub.bus.subscribe(f"xmpp:sent:{self.owner}", self._on_reply)
        if self.hub.inbound and self.settings.connect and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run(), name="xmpp links")

    async def stop(self) -> None:
        task, self._task = self._task, None
        refresh, self._refresh = self._refresh, None
        await cancel_and_wait(task)
        if refresh is not None:
            refresh.cancel()
        async with self._lock:
            links, self.links = list(self.links.values()), {}
        await asyncio.gather(*(link.stop() for link in links))
        if self._reply_sub is not None:
            self._reply_sub.close()
            self._reply_sub = None

    def forget(self) -> None:
        """After a change through the API: match the links to the accounts now."""
        self._accounts.clear()
        self._peers.clear()
        if self._task is not None and not self._task.done():
            self._refresh = asyncio.ensure_future(self._safe_refresh())

    async def _safe_refresh(self) -> None:
        try:
            await self.refresh()
        except Exception:
            logger.exception("xmpp: refreshing the links failed; they look again on their own")

    async def _run(self) -> None:
        while True:
            await self._safe_refresh()
            await asyncio.sleep(self.settings.refresh_seconds)

    async def refresh(self) -> None:
        async with self._lock:
            wanted: dict[int, xstore.AccountConfig] = {}
            for found in await xstore.load_active(self.hub):
                if isinstance(found, xstore.AccountConfig):
                    wanted[found.id] = found
                else:
                    logger.warning("xmpp account %s cannot be connected: %s", found[0].id, found[1])
            for account_id, link in list(self.links.items()):
                if wanted.get(account_id) != link.account:
                    del self.links[account_id]
                    await link.stop()
            for account_id, account in wanted.items():
                if account_id not in self.links:
                    link = Link(self, account, self.owner)
                    self.links[account_id] = link
                    link.start()

    # --- who a customer talks to ------------------------------------------------------------------
    async def peer_of(self, tenant_id: int, jid: str) -> tuple[int, str] | None:
        return await self._peers.get((tenant_id, jid), partial(xstore.peer, self.hub, tenant_id, jid))

    async def _route(self, tenant_id: int, jid: str) -> tuple[int, str]:
        """The account and address a reply to ``jid`` goes out from: where the customer last wrote,
        else the tenant's first active account (a ticket an agent opened by hand)."""
        found = await self.peer_of(tenant_id, jid)
        if found is not None:
            return found
        accounts = await self._accounts.get(tenant_id, lambda: self._tenant_accounts(tenant_id)) or ()
        for account_id, kind, account_jid, active in accounts:
            if active:
                return account_id, account_jid if kind == "client" else f"support@{account_jid}"
        raise DeliveryError("the tenant has no XMPP account to send from", retry=False, code="no_xmpp_account")

    async def _tenant_accounts(self, tenant_id: int) -> tuple[tuple[int, str, str, bool], ...]:
        return tuple(await xstore.tenant_accounts(self.hub, tenant_id))

    def send_topic(self, account_id: int) -> str:
        return f"xmpp:send:{account_id}"

    # --- outbound ----------------------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> str:
        account_id, local = await self._route(message.tenant_id, message.external_id)
        links = []
        for a in message.attachments:
            if a.id is not None:
                links.append(await attachments.public_url(self.hub, message.tenant_id, a.id))
            elif a.url and a.url.startswith(("https://", "http://")):
                links.append(a.url)
        link = self.links.get(account_id)
        if link is not None and link.holds_lease:
            return await link.send(message.external_id, local, message.text, links, message.message_id)
        return await self._relay(account_id, {"to": message.external_id, "local": local, "text": message.text,
                                              "links": links, "message_id": message.message_id,
                                              "tenant_id": message.tenant_id})

    async def _relay(self, account_id: int, payload: dict[str, Any]) -> str:
        request_id = uuid.uuid4().hex
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = fut
        try:
            await self.hub.bus.publish(self.send_topic(account_id),
                                       {**payload, "request_id": request_id, "reply_to": self.owner})
            answer = await asyncio.wait_for(fut, self.settings.ack_timeout + 5)
        except TimeoutError:
            raise DeliveryError("no hub process holds the XMPP account's connection right now", retry=True,
                                code="xmpp_not_connected") from None
        finally:
            self._replies.pop(request_id, None)
        if answer.get("ok"):
            return str(answer["channel_message_id"])
        err = answer.get("error") or {}
        raise DeliveryError(str(err.get("message") or "delivery failed"), retry=bool(err.get("retry", True)),
                            code=str(err.get("code") or "xmpp_error"))

    def _on_reply(self, answer: dict[str, Any]) -> None:
        fut = self._replies.get(str(answer.get("request_id")))
        if fut is not None and not fut.done():
            fut.set_result(answer)

    async def serve_relay(self, link: Link, request: dict[str, Any]) -> None:
        """Deliver a reply another process asked for (the holder of ``link``'s account)."""
        answer: dict[str, Any] = {"request_id": request.get("request_id")}
        try:
            if request.get("tenant_id") != link.account.tenant_id:
                raise DeliveryError("not this account's tenant", retry=False, code="xmpp_error")
            answer["channel_message_id"] = await link.send(
                str(request["to"]), str(request["local"]), str(request.get("text") or ""),
                [str(u) for u in request.get("links") or []], int(request["message_id"]))
            answer["ok"] = True
        except DeliveryError as exc:
            answer["ok"] = False
            answer["error"] = {"code": exc.code, "message": exc.message, "retry": exc.retry}
        except Exception as exc:
            answer["ok"] = False
            answer["error"] = {"code": "xmpp_error", "message": f"{type(exc).__name__}: {exc}", "retry": True}
        with contextlib.suppress(Exception):
            await self.hub.bus.publish(f"xmpp:sent:{request.get('reply_to')}", answer)
