"""A customer's XMPP client for the tests: slixmpp on the test's loop, plaintext to the loopback
prosody, with stream management, that keeps every message it receives."""

from __future__ import annotations

import asyncio
from typing import Any
from xml.etree import ElementTree as ET

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.xmpp.prosody import Prosody

NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_RECEIPTS = "urn:xmpp:receipts"


class Customer:
    def __init__(self, prosody: Prosody, user: str, password: str = "pw") -> None:
        self.prosody = prosody
        self.jid = prosody.jid(user)
        self.password = password
        self.received: list[Any] = []
        self.states: list[str] = []
        self.receipts: list[str] = []
        self.changed = asyncio.Condition()
        self.xmpp: Any = None
        self._tasks: set[asyncio.Future[None]] = set()

    async def connect(self) -> Customer:
        xmpp = slixmpp.ClientXMPP(f"{self.jid}/phone", self.password, plugin_config={
            "feature_mechanisms": {"unencrypted_plain": True, "unencrypted_scram": True}})
        xmpp.enable_plaintext, xmpp.enable_starttls, xmpp.enable_direct_tls = True, False, False
        xmpp.register_plugin("xep_0198")
        # Every message (slixmpp's "message" event has only those with a body).
        xmpp.register_handler(Callback("messages", MatchXPath(f"{{{xmpp.default_ns}}}message"), self._on_message))
        self.xmpp = xmpp
        xmpp.connect(self.prosody.host, self.prosody.c2s_port)
        await xmpp.wait_until("session_start", 15)
        xmpp.send_presence()
        return self

    def _on_message(self, msg: Any) -> None:
        el = msg.xml
        for name in ("composing", "paused", "active"):
            if el.find(f"{{{NS_CHATSTATES}}}{name}") is not None and not msg["body"]:
                self.states.append(name)
        received = el.find(f"{{{NS_RECEIPTS}}}received")
        if received is not None:
            self.receipts.append(received.get("id") or "")
        if msg["body"]:
            self.received.append(msg)
        task = asyncio.ensure_future(self._notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def send(self, to: str, body: str, *, stanza_id: str | None = None, mtype: str = "chat",
             extra: list[ET.Element] | None = None, receipt: bool = False) -> Any:
        msg = self.xmpp.make_message(mto=to, mbody=body, mtype=mtype)
        if stanza_id is not None:
            msg["id"] = stanza_id
        if receipt:
            ET.SubElement(msg.xml, f"{{{NS_RECEIPTS}}}request")
        for el in extra or []:
            msg.xml.append(el)
        msg.send()
        return msg

    def chat_state(self, to: str, state: str) -> None:
        msg = self.xmpp.make_message(mto=to, mtype="chat")
        ET.SubElement(msg.xml, f"{{{NS_CHATSTATES}}}{state}")
        msg.send()

    async def wait_for(self, predicate: Any, timeout: float = 15.0) -> Any:
        async def find() -> Any:
            async with self.changed:
                while True:
                    for m in self.received:
                        if predicate(m):
                            return m
                    await self.changed.wait()
        return await asyncio.wait_for(find(), timeout)

    async def wait_state(self, state: str, timeout: float = 15.0) -> None:
        async def find() -> None:
            async with self.changed:
                while state not in self.states:
                    await self.changed.wait()
        await asyncio.wait_for(find(), timeout)

    def bodies(self) -> list[str]:
        return [str(m["body"]) for m in self.received]

    async def close(self) -> None:
        if self.xmpp is not None:
            xmpp, self.xmpp = self.xmpp, None
            try:
                await asyncio.wait_for(xmpp.disconnect(wait=0.5), 3)
            except Exception:
                xmpp.abort()
