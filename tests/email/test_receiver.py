"""The hub's own SMTP receiver, as mail servers and clients use it: Python's smtplib, aiosmtplib and
Debian's swaks on loopback, against a real `channelhub` app. Which recipients it takes, the size
limit, STARTTLS, answering 250 only once the mail is stored (and a retried delivery stored once),
the loop guards, the flood limit, and mail that cannot be read."""

# ruff: noqa: RUF001 - Chinese mail is written with full-width punctuation; these are its texts.
from __future__ import annotations

import asyncio
import datetime
import shutil
import smtplib
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiosmtplib
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from connectors.email.models import EmailOriginal
from connectors.email.settings import EmailSettings
from core import inbox
from core.config import Settings
from core.db import Database
from core.models import Message, StoredAttachment
from tests.conftest import Server, TenantInfo, eventually, make_tenant, start_server
from tests.email.conftest import Mailbox, make_mailbox
from tests.email.support import Sink, fixture, mail, new_message_id
from tests.support import undocumented


async def _count(db_url: str, model: type, tenant_id: int) -> int:
    db = Database(db_url)
    try:
        async with db.read() as session:
            return int((await session.execute(
                select(func.count()).select_from(model).where(model.tenant_id == tenant_id))).scalar_one())  # type: ignore[attr-defined]
    finally:
        await db.dispose()


async def test_smtplib_delivers_a_mail_that_becomes_a_ticket(mailbox: Mailbox) -> None:
    raw = mail(sender="li.na@customers.example.cn", name="李娜", to=mailbox.address, subject="发票 / invoice",
               text="请把发票寄给我。\n\nLi Na", html="<p>请把发票寄给我。</p><script>alert(1)</script>"
               "<img src='https://tracker.example.net/p.gif'><a href='javascript:alert(1)'>x</a>",
               files=[("收据.pdf", "application/pdf", b"%PDF-1.4 receipt")])

    def deliver() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", mailbox.server.smtp_port, timeout=30) as client:
            client.ehlo("client.example.cn")
            assert client.has_extn("size") and client.has_extn("8bitmime")
            return client.sendmail("li.na@customers.example.cn", [mailbox.address], raw)

    assert await asyncio.to_thread(deliver) == {}
    ticket = await mailbox.ticket_with("请把发票寄给我。")
    assert ticket["ticket"]["subject"] == "发票 / invoice"
    assert ticket["ticket"]["customer"]["name"] == "李娜"
    [message] = ticket["messages"]
    assert message["text"] == "请把发票寄给我。\n\nLi Na"
    [attachment] = message["attachments"]
    assert attachment["name"] == "收据.pdf" and attachment["content_type"] == "application/pdf"
    assert attachment["size"] == len(b"%PDF-1.4 receipt")
    answer = await mailbox.admin.api("GET", f"/api/v1/email/messages/{message['id']}/original")
    # The mail's answers are as the OpenAPI document says (a channel's attachment has no id).
    assert not undocumented("GET", "/api/v1/email/messages/{message_id}/original", 200, answer)
    assert not undocumented("GET", "/api/v1/tickets/{ticket_id}", 200, ticket)
    original = answer["original"]
    html = original["html"]
    assert "请把发票寄给我" in html and "<script" not in html and "javascript:" not in html
    assert "tracker.example.net" not in html  # remote images: dropped, as clients block them


async def test_an_inline_image_is_an_attachment_its_html_points_at(mailbox: Mailbox) -> None:
    code, _ = await mailbox.deliver(fixture("inline_image_cid.eml").replace(b"support@acme.example.com",
                                                                         mailbox.address.encode()))
    assert code == 250

    async def stored() -> list[dict[str, object]] | None:
        for t in await mailbox.tickets():
            detail = await mailbox.ticket(t["id"])
            if detail["messages"][0]["attachments"]:
                return list(detail["messages"])
        return None

    [message] = await eventually(stored)
    [image] = message["attachments"]
    assert image["content_type"].startswith("image/")
    original = (await mailbox.admin.api("GET", f"/api/v1/email/messages/{message['id']}/original"))["original"]
    assert f'src="/api/v1/attachments/{image["id"]}"' in original["html"]
    assert "cid:" not in original["html"]


@pytest.mark.skipif(shutil.which("swaks") is None, reason="Debian's swaks is not installed (.ci/run installs it)")
async def test_swaks_delivers_chinese_mail(mailbox: Mailbox, tmp_path: Path) -> None:
    eml = tmp_path / "gbk.eml"
    eml.write_bytes(fixture("charset_gb2312_label_gbk_bytes.eml"))
    proc = await asyncio.create_subprocess_exec(
        "swaks", "--server", "127.0.0.1", "--port", str(mailbox.server.smtp_port), "--from", "wang@example.cn",
        "--to", mailbox.address, "--data", f"@{eml}", "--helo", "client.example.cn",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")
    assert b"250 2.0.0 OK stored" in out
    ticket = await mailbox.ticket_with("朱镕基同志的发票还没有收到")
    assert ticket["ticket"]["subject"] == "发票问题（朱镕基）"
    assert ticket["ticket"]["customer"]["name"] == "王芳"


async def test_unknown_recipients_are_refused_at_rcpt(mailbox: Mailbox, other_tenant: TenantInfo) -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=mailbox.server.smtp_port, start_tls=False)
    await client.connect()
    try:
        await client.ehlo()
        await client.mail("someone@example.org")
        for address in (f"nobody@{mailbox.tenant.domain}", "support@elsewhere.example.com",
                        f"support@{other_tenant.domain}"):
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await client.rcpt(address)
            assert refused.value.code == 550
        # The support address, and its plus addresses, are taken.
        assert (await client.rcpt(mailbox.address)).code == 250
        local, _, domain = mailbox.address.partition("@")
        assert (await client.rcpt(f"{local}+anything@{domain}")).code == 250
    finally:
        await client.quit()
    assert await mailbox.tickets() == []


async def test_a_retried_delivery_is_stored_once(mailbox: Mailbox) -> None:
    raw = mail(sender="retry@customers.example.org", to=mailbox.address, subject="Twice", text="Sent twice",
               files=[("a.txt", "text/plain", b"file")])
    for _ in range(3):
        assert (await mailbox.deliver(raw, mail_from="retry@customers.example.org"))[0] == 250
    ticket = await mailbox.ticket_with("Sent twice")
    await asyncio.sleep(0.5)  # any second copy would have been drained by now
    assert len(ticket["messages"]) == 1 and len(await mailbox.tickets()) == 1
    settings = mailbox.tenant.settings
    assert await _count(settings.database_url, EmailOriginal, mailbox.tenant.id) == 1
    assert await _count(settings.database_url, StoredAttachment, mailbox.tenant.id) == 1
    assert await _count(settings.database_url, Message, mailbox.tenant.id) == 1


@pytest.mark.parametrize("name", ["auto_reply_auto_submitted", "auto_reply_precedence_bulk", "auto_reply_x_autoreply",
                                  "list_mail"])
async def test_automatic_mail_never_opens_a_ticket(mailbox: Mailbox, name: str) -> None:
    code, answer = await mailbox.deliver(fixture(f"{name}.eml"))
    assert code == 250 and "automatic" in answer
    # A person's mail sent after it is taken, and it is the only ticket.
    await mailbox.write("person@customers.example.org", "hello", "A person wrote this")
    await mailbox.ticket_with("A person wrote this")
    assert len(await mailbox.tickets()) == 1


async def test_mail_from_our_own_address_is_a_loop_and_dropped(mailbox: Mailbox) -> None:
    raw = mail(sender=mailbox.address, to=mailbox.address, subject="Re: loop [#1]", text="looping")
    code, answer = await mailbox.deliver(raw, mail_from=mailbox.address)
    assert code == 250 and "own" in answer
    await mailbox.write("person@customers.example.org", "hello", "After the loop")
    await mailbox.ticket_with("After the loop")
    assert len(await mailbox.tickets()) == 1


async def test_malformed_mime_is_read_as_far_as_it_goes(mailbox: Mailbox) -> None:
    for name in ("malformed_mime_no_closing_boundary", "malformed_mime_bad_base64_and_headers"):
        code, _ = await mailbox.deliver(fixture(f"{name}.eml").replace(b"support@acme.example.com",
                                                                      mailbox.address.encode()))
        assert code == 250, name
    await eventually(lambda: _tickets(mailbox, 2))


async def _tickets(mailbox: Mailbox, count: int) -> bool:
    return len(await mailbox.tickets()) >= count


async def test_unreadable_mail_is_set_aside_once(mailbox: Mailbox) -> None:
    raw = b"\r\n\r\nthis is not a mail: no headers at all\r\n"
    for _ in range(2):  # a retry is the same row
        code, answer = await mailbox.deliver(raw)
        assert code == 250 and "unreadable" in answer
    db = Database(mailbox.tenant.settings.database_url)
    try:
        rows = [r for r in await inbox.failed(db, limit=1000) if r["tenant_id"] == mailbox.tenant.id]
    finally:
        await db.dispose()
    assert len(rows) == 1 and rows[0]["channel"] == "email" and "no headers" in rows[0]["last_error"]
    assert await mailbox.tickets() == []


# --- servers of their own: a small size limit, a flood limit, STARTTLS ------------------------------------
@pytest.fixture
async def strict_server(settings: Settings) -> AsyncIterator[Server]:
    email = EmailSettings(max_message_bytes=20_000, flood_limit=3, flood_window=600)
    srv = await start_server(replace(settings, channels={**settings.channels, "email": email}))
    yield srv
    await srv.runner.cleanup()


async def test_the_size_limit_is_announced_and_enforced(strict_server: Server, sink: Sink) -> None:
    tenant = await make_tenant(strict_server.settings, strict_server)
    try:
        mb = await make_mailbox(tenant, sink)
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=strict_server.smtp_port, start_tls=False)
        await client.connect()
        try:
            await client.ehlo()
            assert client.esmtp_extensions["size"] == "20000"
        finally:
            await client.quit()
        big = mail(sender="big@customers.example.org", to=mb.address, subject="big", text="x" * 30_000)
        code, answer = await mb.deliver(big, mail_from="big@customers.example.org")
        assert code == 552, answer
        assert await mb.tickets() == []
    finally:
        await tenant.close()


async def test_one_senders_flood_is_deferred_and_others_still_get_through(strict_server: Server, sink: Sink) -> None:
    tenant = await make_tenant(strict_server.settings, strict_server)
    try:
        mb = await make_mailbox(tenant, sink)
        answers = []
        for i in range(5):
            raw = mail(sender="flood@customers.example.org", to=mb.address, subject=f"n{i}", text=f"flood {i}")
            answers.append((await mb.deliver(raw, mail_from="flood@customers.example.org"))[0])
        assert answers == [250, 250, 250, 451, 451]  # deferred: the sending server tries again later
        await mb.write("calm@customers.example.org", "hi", "not a flood")
        await mb.ticket_with("not a flood")
        await eventually(lambda: _tickets(mb, 4))
        assert len(await mb.tickets()) == 4
    finally:
        await tenant.close()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.channelhub.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_starttls_when_a_certificate_is_configured(settings: Settings, sink: Sink, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    email = EmailSettings(tls_cert=str(cert), tls_key=str(key))
    srv = await start_server(replace(settings, channels={**settings.channels, "email": email}))
    tenant = await make_tenant(srv.settings, srv)
    try:
        mb = await make_mailbox(tenant, sink)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.smtp_port, start_tls=False, tls_context=context)
        await client.connect()
        try:
            await client.ehlo()
            assert client.supports_extension("starttls")
            await client.starttls()
            assert client.get_transport_info("sslcontext") is not None
            raw = mail(sender="tls@customers.example.org", to=mb.address, subject="secure", text="over TLS",
                       message_id=new_message_id())
            await client.sendmail("tls@customers.example.org", [mb.address], raw)
        finally:
            await client.quit()
        await mb.ticket_with("over TLS")
    finally:
        await tenant.close()
        await srv.runner.cleanup()


# --- DATA as it travels: dot-stuffing, the terminator, pipelining -------------------------------------
async def _raw_session(port: int, script: bytes) -> list[bytes]:
    """Send ``script`` on one SMTP connection (after the greeting) and read every answer line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        greeting = await reader.readline()
        assert greeting.startswith(b"220"), greeting
        writer.write(script)
        await writer.drain()
        answers: list[bytes] = []
        async with asyncio.timeout(15):
            while not answers or not answers[-1].startswith(b"221"):
                line = await reader.readline()
                assert line, answers
                if not line[3:4] == b"-":  # the last line of a multi-line answer
                    answers.append(line.rstrip())
        return answers
    finally:
        writer.close()


async def test_data_dot_stuffing_and_pipelined_mails_on_one_connection(mailbox: Mailbox) -> None:
    """Two mails pipelined in one write, one with dot-stuffed lines, a lone-dot-looking line and a
    line far over 1,000 bytes; the exact texts arrive."""
    first = (b"From: dots@customers.example.org\r\nTo: " + mailbox.address.encode() + b"\r\n"
             b"Subject: dots\r\nMessage-ID: <dots-1@customers.example.org>\r\n\r\n"
             b"..leading dot was stuffed\r\n"
             b". a dot and more\r\n"
             b"...\r\n"
             b"end of first\r\n")
    long_line = b"x" * 3000
    second = (b"From: long@customers.example.org\r\nTo: " + mailbox.address.encode() + b"\r\n"
              b"Subject: long\r\nMessage-ID: <long-1@customers.example.org>\r\n\r\n" + long_line + b"\r\n")
    rcpt = b"RCPT TO:<" + mailbox.address.encode() + b">\r\n"
    script = (b"EHLO client.example.org\r\n"
              b"MAIL FROM:<dots@customers.example.org>\r\n" + rcpt + b"DATA\r\n" + first + b".\r\n"
              b"MAIL FROM:<long@customers.example.org>\r\n" + rcpt + b"DATA\r\n" + second + b".\r\n"
              b"QUIT\r\n")
    answers = await _raw_session(mailbox.server.smtp_port, script)
    codes = [a[:3] for a in answers]
    assert codes == [b"250", b"250", b"250", b"354", b"250", b"250", b"250", b"354", b"250", b"221"], answers
    dots = await mailbox.ticket_with("leading dot was stuffed")
    assert dots["messages"][0]["text"] == ".leading dot was stuffed\n a dot and more\n..\nend of first"
    long = await mailbox.ticket_with("xxxx")
    assert long["messages"][0]["text"] == long_line.decode()


async def test_an_empty_mail_and_one_over_the_limit_leave_the_connection_usable(strict_server: Server,
                                                                                sink: Sink) -> None:
    tenant = await make_tenant(strict_server.settings, strict_server)
    try:
        mb = await make_mailbox(tenant, sink)
        rcpt = b"RCPT TO:<" + mb.address.encode() + b">\r\n"
        big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 40  # 40 KB against a 20 KB limit
        ok = (b"From: after@customers.example.org\r\nSubject: after\r\n"
              b"Message-ID: <after-1@customers.example.org>\r\n\r\nStill here\r\n")
        script = (b"EHLO client.example.org\r\n"
                  b"MAIL FROM:<a@customers.example.org>\r\n" + rcpt + b"DATA\r\n.\r\n"
                  b"MAIL FROM:<b@customers.example.org>\r\n" + rcpt + b"DATA\r\n" + big + b".\r\n"
                  b"MAIL FROM:<after@customers.example.org>\r\n" + rcpt + b"DATA\r\n" + ok + b".\r\n"
                  b"QUIT\r\n")
        answers = await _raw_session(strict_server.smtp_port, script)
        codes = [a[:3] for a in answers]
        # The empty mail has no headers: unreadable, kept aside (250); the big one 552; the next one taken.
        assert codes == [b"250", b"250", b"250", b"354", b"250", b"250", b"250", b"354", b"552",
                         b"250", b"250", b"354", b"250", b"221"], answers
        await mb.ticket_with("Still here")
    finally:
        await tenant.close()


async def test_a_worker_process_takes_no_mail(settings: Settings) -> None:
    """`channelhub worker` starts its hub with inbound=False: no receiver, no IMAP followers."""
    from channelhub.app import build_hub
    from connectors.email.connector import EmailConnector
    from tests.conftest import free_port

    port = free_port()
    email = EmailSettings(smtp_host="127.0.0.1", smtp_port=port)
    hub = build_hub(replace(settings, channels={**settings.channels, "email": email}))
    await hub.start(inbound=False)
    try:
        connector = hub.connectors["email"]
        assert isinstance(connector, EmailConnector)
        assert connector.smtp.port is None and not connector.followers.running
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
    finally:
        await hub.close()
