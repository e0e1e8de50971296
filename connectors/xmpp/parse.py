"""Reading a message stanza: its text (XHTML-IM reduced to text when there is no plain body), its
links (XEP-0066 out-of-band data, HTTP uploads), the key that makes it idempotent, and the signals
it carries (chat states, XEP-0085; receipts, XEP-0184). Works on the stanza's XML element (an
``xml.etree`` element, as slixmpp gives it), so it needs no plugin and tests can feed it XML."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from xml.etree import ElementTree as ET

NS_CLIENT = "jabber:client"
NS_COMPONENT = "jabber:component:accept"
NS_XHTML_IM = "http://jabber.org/protocol/xhtml-im"
NS_XHTML = "http://www.w3.org/1999/xhtml"
NS_OOB = "jabber:x:oob"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_DELAY = "urn:xmpp:delay"
NS_SID = "urn:xmpp:sid:0"
NS_HINTS = "urn:xmpp:hints"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
CHAT_STATES = ("active", "composing", "paused", "inactive", "gone")
# What becomes the ticket message's text at the most (core refuses larger messages).
MAX_TEXT = 60_000
_FILE_NAME = re.compile(r"[^/?#]+$")


@dataclass(frozen=True)
class Link:
    url: str
    desc: str | None = None

    @property
    def name(self) -> str:
        m = _FILE_NAME.search(self.url.split("?", 1)[0].split("#", 1)[0])
        return (m.group(0) if m else "link")[:200]


@dataclass(frozen=True)
class Parsed:
    kind: str  # chat, normal, groupchat, headline, error
    sender: str  # full JID as given
    to: str
    stanza_id: str | None
    text: str
    links: tuple[Link, ...] = ()
    chat_state: str | None = None
    receipt_request: bool = False
    receipt_for: str | None = None
    delay: str | None = None
    thread: str | None = None
    error: tuple[str, str] | None = None  # (condition, text)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def bare(self) -> str:
        return bare(self.sender)


def bare(jid: str) -> str:
    """The bare JID, its domain lower-cased (local parts are case-insensitive too in practice, but
    RFC 7622 keeps their case; the domain is always case-insensitive)."""
    node = jid.split("/", 1)[0]
    local, at, domain = node.rpartition("@")
    return f"{local}{at}{domain.lower()}"


def _child(el: ET.Element, ns: str, name: str) -> ET.Element | None:
    return el.find(f"{{{ns}}}{name}")


def _body(el: ET.Element) -> str | None:
    for ns in (NS_CLIENT, NS_COMPONENT):
        found = el.find(f"{{{ns}}}body")
        if found is not None:
            return found.text or ""
    # A stanza parsed without the stream's default namespace (tests, raw XML).
    found = el.find("body")
    return None if found is None else (found.text or "")


class _Text(HTMLParser):
    BLOCKS = {"p", "div", "br", "li", "blockquote", "pre", "tr", "h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS and self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS - {"br"}:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def xhtml_text(html: ET.Element) -> str:
    """XHTML-IM (XEP-0071) as plain text: the markup dropped, paragraphs and line breaks kept."""
    body = html.find(f"{{{NS_XHTML}}}body")
    if body is None:
        return ""
    markup = ET.tostring(body, encoding="unicode")
    # ElementTree writes namespaced tags as ns0:p: the local names are what matter here.
    markup = re.sub(r"<(/?)[A-Za-z0-9_]+:", r"<\1", markup)
    parser = _Text()
    parser.feed(markup)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).split("\n")]
    return "\n".join(line for line in lines if line).strip()


def parse(el: ET.Element) -> Parsed:
    body = _body(el)
    text = body if body is not None else ""
    html = _child(el, NS_XHTML_IM, "html")
    if not text.strip() and html is not None:
        text = xhtml_text(html)
    links: list[Link] = []
    for oob in el.findall(f"{{{NS_OOB}}}x"):
        url = (oob.findtext(f"{{{NS_OOB}}}url") or "").strip()
        if url.startswith(("https://", "http://")) and len(url) <= 2000:
            links.append(Link(url, (oob.findtext(f"{{{NS_OOB}}}desc") or "").strip() or None))
    # An HTTP upload (XEP-0363) arrives as the URL in the body with the same URL as OOB data: the
    # file, not a text that only repeats its address.
    if links and text.strip() in {link.url for link in links}:
        text = ""
    state = next((name for name in CHAT_STATES if _child(el, NS_CHATSTATES, name) is not None), None)
    received = _child(el, NS_RECEIPTS, "received")
    delay = _child(el, NS_DELAY, "delay")
    origin = _child(el, NS_SID, "origin-id")
    stanza_id = (origin.get("id") if origin is not None else None) or el.get("id") or None
    error = None
    if el.get("type") == "error":
        err = el.find(f"{{{NS_CLIENT}}}error")
        if err is None:
            err = el.find(f"{{{NS_COMPONENT}}}error")
        if err is None:
            err = el.find("error")
        condition, reason = "undefined-condition", ""
        if err is not None:
            for child in err:
                if child.tag.startswith(f"{{{NS_STANZAS}}}"):
                    local = child.tag.split("}", 1)[1]
                    if local == "text":
                        reason = (child.text or "").strip()
                    else:
                        condition = local
        error = (condition, reason)
    thread = el.findtext(f"{{{NS_CLIENT}}}thread") or el.findtext(f"{{{NS_COMPONENT}}}thread")
    return Parsed(
        kind=el.get("type") or "normal", sender=el.get("from") or "", to=el.get("to") or "", stanza_id=stanza_id,
        text=text[:MAX_TEXT], links=tuple(links[:10]), chat_state=state,
        receipt_request=_child(el, NS_RECEIPTS, "request") is not None,
        receipt_for=received.get("id") if received is not None else None,
        delay=delay.get("stamp") if delay is not None else None, thread=thread, error=error)


def message_key(p: Parsed) -> str:
    """The ticket message's channel_message_id: the sender's stanza id (XEP-0359 origin-id, else the
    ``id`` attribute), scoped by the sender's bare JID (ids are the sender's own, unique only per
    sender). A stanza without an id gets a key derived from what it says: sender, thread, text,
    links and the server's delay stamp (a stanza re-delivered from offline storage carries the same
    stamp each time); two identical id-less messages without a stamp count as one."""
    if p.stanza_id:
        key = f"{p.bare}/{p.stanza_id}"
        if len(key) <= 255:
            return key
        return f"{p.bare[:150]}/h:{hashlib.sha256(p.stanza_id.encode()).hexdigest()[:40]}"
    digest = hashlib.sha256("\x00".join(
        [p.bare, p.thread or "", p.text, *(link.url for link in p.links), p.delay or ""]).encode()).hexdigest()
    return f"{p.bare[:200]}/d:{digest[:40]}"
