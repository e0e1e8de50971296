"""Reading mail (connectors/email/parse.py) against the corpus in tests/fixtures/email/: one .eml
per case, named for it. These are mails as clients and mail systems write them; the receiver, the
mailbox follower and threading (issue #11) build on what is read here."""

# ruff: noqa: RUF001 - Chinese mail is written with full-width punctuation; these are its texts.
from __future__ import annotations

from pathlib import Path

import pytest

from connectors.email.parse import (
    ParsedMail,
    UnreadableMail,
    _lift_base64,
    decode_bytes,
    html_text,
    parse,
    visible_text,
)

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "email"


def mail(name: str) -> ParsedMail:
    return parse((CORPUS / f"{name}.eml").read_bytes())


def test_every_mail_of_the_corpus_is_read_without_an_error() -> None:
    names = sorted(p.stem for p in CORPUS.glob("*.eml"))
    assert len(names) >= 20
    for name in names:
        m = mail(name)
        assert m.sender and m.message_id, name


@pytest.mark.parametrize(("name", "sender_name", "subject", "text"), [
    # Labelled GB2312, written in GBK (镕 is not in GB2312): read as GB18030, headers too.
    ("charset_gb2312_label_gbk_bytes", "王芳", "发票问题（朱镕基）",
     "您好，朱镕基同志的发票还没有收到。\n订单号 2026-1201\n"),
    ("charset_big5", "陳大文", "退款查詢", "請問退款何時到帳？\n謝謝\n"),
    ("charset_gb18030", None, "扩展字符", "𠀀 是扩展字符；€ 欧元\n"),
    # A label no codec knows: UTF-8, the likeliest.
    ("charset_unknown_label", None, "odd charset", "héllo wörld\n"),
])
def test_charsets_of_chinese_mail_and_encoded_word_headers(name: str, sender_name: str | None, subject: str,
                                                           text: str) -> None:
    m = mail(name)
    assert (m.sender_name, m.subject, m.text) == (sender_name, subject, text)
    assert "\ufffd" not in m.text + m.subject


def test_bytes_that_do_not_decode_never_fail_the_mail() -> None:
    assert decode_bytes("朱镕基".encode("gbk"), "gb2312") == "朱镕基"
    assert decode_bytes(b"caf\xe9 \xff", "utf-8") == "caf\ufffd \ufffd"
    assert decode_bytes(b"plain", None) == "plain"


def test_addresses_are_lower_cased_and_cc_kept() -> None:
    m = mail("multipart_alternative")
    assert (m.sender, m.sender_name) == ("bob@example.com", "Bob Smith")
    assert m.to == ("support@acme.example.com",) and m.cc == ("alice@example.com",)


def test_plain_and_html_bodies_are_both_kept_and_html_only_mail_has_a_text_rendering() -> None:
    alt = mail("multipart_alternative")
    assert alt.text == "Hello,\nwhere is order 42?"
    assert alt.html is not None and "<b>order 42</b>" in alt.html  # as sent: sanitised before shown
    only = mail("html_only")
    assert only.text == "First line\n\nSecond & last"
    assert "color:red" not in only.text
    assert html_text("<p>a</p><script>x()</script><p>b &lt; c</p>") == "a\n\nb < c"


def test_attachments_with_rfc2231_names_and_inline_images() -> None:
    [pdf] = mail("attachment_rfc2231_chinese_name").attachments
    assert (pdf.filename, pdf.content_type, pdf.inline, pdf.data) == ("发票 2026.pdf", "application/pdf", False,
                                                                      b"%PDF-1.4 fake")
    m = mail("inline_image_cid")
    [image] = m.attachments
    assert (image.content_id, image.content_type, image.inline) == ("shot1@example.com", "image/png", True)
    assert image.data.startswith(b"\x89PNG")
    assert m.html is not None and "cid:shot1@example.com" in m.html


@pytest.mark.parametrize(("name", "why"), [
    ("auto_reply_auto_submitted", "auto-submitted"),
    ("auto_reply_x_autoreply", "autoreply"),
    ("auto_reply_precedence_bulk", "precedence"),
    ("list_mail", "list"),
    ("bounce_dsn", "bounce"),
    ("multipart_alternative", None),
    ("reply_qq_mail", None),
])
def test_mail_no_person_wrote_is_recognised(name: str, why: str | None) -> None:
    assert mail(name).automatic == why


def test_malformed_mime_is_read_as_far_as_it_goes_and_its_defects_noted() -> None:
    broken = mail("malformed_mime_no_closing_boundary")
    assert "this text is not inside any part" in broken.text and "still readable" in broken.text
    assert "StartBoundaryNotFoundDefect" in broken.defects
    bad = mail("malformed_mime_bad_base64_and_headers")
    assert bad.sender == "odd@example.com" and bad.subject
    assert "InvalidBase64CharactersDefect" in bad.defects
    with pytest.raises(UnreadableMail):
        parse(b"")
    with pytest.raises(UnreadableMail):
        parse(b"\r\n\r\n")


def test_threading_headers_are_read() -> None:
    m = mail("reply_gmail")
    assert m.message_id == "<reply_gmail.eml@example.cn>"
    assert m.in_reply_to == ("<ch-42-1@acme.example.com>",)


@pytest.mark.parametrize(("name", "visible"), [
    ("reply_qq_mail", "好的，收到了，谢谢！"),
    ("reply_163_mail", "明天可以送到吗？"),
    ("reply_outlook_chinese", "请尽快处理。"),
    ("reply_outlook_english", "Thanks, that works."),
    ("reply_gmail", "Great, thank you!"),
    # The customer quoted two lines and answered each: every line they wrote stays, the
    # signature goes.
    ("reply_with_customer_quote_inline",
     "> Your order has shipped.\nIt has not arrived yet.\n> Tracking number 123\nThat number shows nothing."),
])
def test_quoted_history_and_signatures_are_trimmed_for_display_and_kept_in_full(name: str, visible: str) -> None:
    m = mail(name)
    assert visible_text(m.text) == visible
    assert visible in m.text.replace("\r\n", "\n") and len(m.text) > len(visible)  # the full text is kept


def test_a_mail_that_is_all_quote_shows_in_full() -> None:
    assert visible_text("On Tue, Dec 1, 2026 Bob wrote:\n> hi") == "On Tue, Dec 1, 2026 Bob wrote:\n> hi"


def _stdlib_files(raw: bytes) -> list[tuple[str, bytes]]:
    """The oracle: what Python's own parser decodes each file of a mail to."""
    import email as stdlib_email

    out = []
    for part in stdlib_email.message_from_bytes(raw).walk():
        if part.is_multipart() or (part.get_content_type() in ("text/plain", "text/html") and not part.get_filename()):
            continue
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            out.append((part.get_content_type(), data))
    return out


def test_large_base64_bodies_decode_exactly_as_pythons_parser_decodes_them() -> None:
    """Large base64 bodies are decoded beside the parser rather than walked by it (for speed): the
    bytes must be the parser's own, and bodies that do not decode cleanly are left to it."""
    import base64
    import random
    from email.message import EmailMessage, MIMEPart
    from email.policy import SMTP

    rng = random.Random(3)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.org", "support@acme.example.com", "files"
    msg["Message-ID"] = "<files-1@example.org>"
    msg.set_content("请看附件。\n" * 400, charset="utf-8", cte="base64")  # a large base64 text body
    msg.add_alternative("<p>" + "附件" * 3000 + "</p>", subtype="html", cte="base64")
    msg.add_attachment(rng.randbytes(150_000), maintype="application", subtype="pdf", filename="big.pdf")
    msg.add_attachment(rng.randbytes(3_000), maintype="image", subtype="png", filename="small.png")
    # A body with broken padding, and one with a stray character: the parser's own lenient reading.
    broken = base64.encodebytes(rng.randbytes(6_000)).replace(b"=", b"")[:-5] + b"\n"
    stray = base64.encodebytes(rng.randbytes(6_000))[:-20] + b"!!\n"
    for body, name in ((broken, "broken.bin"), (stray, "stray.bin")):
        part = MIMEPart()
        part["Content-Type"] = "application/octet-stream"
        part["Content-Transfer-Encoding"] = "base64"
        part["Content-Disposition"] = f'attachment; filename="{name}"'
        part.set_payload(body.decode())
        msg.attach(part)
    raw = msg.as_bytes(policy=SMTP)
    _, lifted = _lift_base64(raw)  # the quick path is taken for the clean bodies, never the stray one
    sizes = sorted(len(v) for v in lifted.values())
    assert {len(("请看附件。\n" * 400).encode()), len(("<p>" + "附件" * 3000 + "</p>\n").encode()), 150_000,
            3_000} <= set(sizes)
    assert len(sizes) <= 5
    m = parse(raw)
    assert m.text == "请看附件。\n" * 400
    assert m.html == "<p>" + "附件" * 3000 + "</p>\n"
    assert [(a.content_type, a.data) for a in m.attachments] == _stdlib_files(raw)
    assert [a.filename for a in m.attachments] == ["big.pdf", "small.png", "broken.bin", "stray.bin"]
