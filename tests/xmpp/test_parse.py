"""Reading stanzas: XHTML-IM to text, out-of-band links and HTTP uploads, chat states, receipts,
errors, and the key that makes a message idempotent."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from connectors.xmpp.parse import message_key, parse


def stanza(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def test_xhtml_im_is_reduced_to_text() -> None:
    p = parse(stanza(
        "<message xmlns='jabber:client' from='a@x.example/r' to='s@x.example' type='chat' id='1'>"
        "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>"
        "<p>Hello <strong>there</strong>,</p><p>my order <em>#12</em> &amp; invoice<br/>are late</p>"
        "</body></html></message>"))
    assert p.text == "Hello there,\nmy order #12 & invoice\nare late"
    assert p.kind == "chat" and p.bare == "a@x.example"


def test_plain_body_wins_over_xhtml() -> None:
    p = parse(stanza("<message xmlns='jabber:client' from='a@x.example' type='chat'><body>plain</body>"
                     "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>"
                     "<p>rich</p></body></html></message>"))
    assert p.text == "plain"


def test_out_of_band_links_and_http_uploads_become_links() -> None:
    url = "https://upload.x.example/abc/photo%201.jpg"
    p = parse(stanza(f"<message xmlns='jabber:client' from='a@x.example' type='chat'><body>{url}</body>"
                     f"<x xmlns='jabber:x:oob'><url>{url}</url></x></message>"))
    assert p.text == "" and [link.url for link in p.links] == [url] and p.links[0].name == "photo%201.jpg"
    p = parse(stanza("<message xmlns='jabber:client' from='a@x.example' type='chat'><body>see this</body>"
                     "<x xmlns='jabber:x:oob'><url>javascript:alert(1)</url></x>"
                     "<x xmlns='jabber:x:oob'><url>https://x.example/doc.pdf</url><desc>the doc</desc></x></message>"))
    assert p.text == "see this" and [(link.url, link.desc) for link in p.links] == [("https://x.example/doc.pdf",
                                                                                       "the doc")]


def test_chat_states_receipts_and_errors() -> None:
    p = parse(stanza("<message xmlns='jabber:client' from='a@x.example/r' type='chat'>"
                     "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"))
    assert p.chat_state == "composing" and p.text == ""
    p = parse(stanza("<message xmlns='jabber:client' from='a@x.example/r'>"
                     "<received xmlns='urn:xmpp:receipts' id='chub-7'/></message>"))
    assert p.receipt_for == "chub-7"
    p = parse(stanza("<message xmlns='jabber:client' from='a@x.example' type='error' id='chub-9'>"
                     "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                     "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>No such user</text></error></message>"))
    assert p.error == ("service-unavailable", "No such user") and p.stanza_id == "chub-9"


def test_keys_scope_ids_by_sender_and_derive_one_when_there_is_none() -> None:
    a = parse(stanza("<message xmlns='jabber:client' from='a@X.example/phone' type='chat' id='m1'><body>hi</body>"
                     "</message>"))
    b = parse(stanza("<message xmlns='jabber:client' from='b@x.example/phone' type='chat' id='m1'><body>hi</body>"
                     "</message>"))
    assert message_key(a) == "a@x.example/m1" and message_key(a) != message_key(b)
    origin = parse(stanza("<message xmlns='jabber:client' from='a@x.example/laptop' type='chat' id='rand'>"
                          "<origin-id xmlns='urn:xmpp:sid:0' id='stable'/><body>hi</body></message>"))
    assert message_key(origin) == "a@x.example/stable"
    bare1 = parse(stanza("<message xmlns='jabber:client' from='a@x.example/one' type='chat'><body>hi</body>"
                         "</message>"))
    # The same message re-delivered from another resource or from offline storage (delay) keeps a
    # key per delay stamp; a different text is a different message.
    bare2 = parse(stanza("<message xmlns='jabber:client' from='a@x.example/two' type='chat'><body>hi</body>"
                         "</message>"))
    other = parse(stanza("<message xmlns='jabber:client' from='a@x.example/one' type='chat'><body>hi!</body>"
                         "</message>"))
    delayed = parse(stanza("<message xmlns='jabber:client' from='a@x.example/one' type='chat'><body>hi</body>"
                           "<delay xmlns='urn:xmpp:delay' stamp='2026-12-07T10:00:00Z'/></message>"))
    assert message_key(bare1) == message_key(bare2) != message_key(other)
    assert message_key(delayed) != message_key(bare1) and "/d:" in message_key(delayed)
    assert len(message_key(parse(stanza(f"<message from='a@x.example' id='{'x' * 400}'><body>y</body></message>")))
               ) <= 255
