"""Reading a mail: headers, bodies in their charsets, attachments, and whether a person wrote it.

Every channel turns what arrives into core's InboundMessage; for email that takes more than for
any other, and this module is the part that needs no network: it takes the raw bytes of a message
as received (SMTP DATA, an IMAP FETCH of the RFC822 body) and returns a :class:`ParsedMail`.

- **Never crashes on a malformed mail.** The stdlib parser records defects instead of raising; a
  part whose bytes do not decode in its declared charset is decoded with replacement characters.
  Only input that is not a mail at all (no headers, no body) raises :class:`UnreadableMail`.
- **Chinese charsets.** Mail declared GB2312 or GBK often holds characters only GB18030 has (the
  clients write GBK under the older label), so those labels are read as GB18030, their superset;
  Big5 as Big5-HKSCS. Encoded-word headers and RFC 2231 file names are decoded by the stdlib's
  ``policy.default``, through the same codecs.
- **Who wrote it** (:attr:`ParsedMail.automatic`): auto-replies, bulk and list mail, and bounces
  are recognised from their headers (RFC 3834 ``Auto-Submitted``, ``Precedence``, ``List-Id``,
  ``X-Autoreply``/``X-Autorespond``, and ``multipart/report; report-type=delivery-status``), so
  the channel neither answers them nor opens tickets for them.
- :func:`visible_text` trims quoted history and signatures for display (the full text is kept):
  the reply separators of Gmail, Outlook, Apple Mail, QQ Mail, NetEase 163/126 and Foxmail. A
  ``>`` line is trimmed only as part of the history below such a separator, never on its own, so
  a line the customer quoted and answered is kept.
"""

from __future__ import annotations

import binascii
import os
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses

# Labels whose mail holds more than the label's repertoire: read as the superset.
_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030", "euc-cn": "gb18030",
    "gb_2312-80": "gb18030", "big5": "big5hkscs", "x-big5": "big5hkscs", "cn-big5": "big5hkscs",
}
_MSGID = re.compile(r"<[^<>\s]+>")


class UnreadableMail(ValueError):
    """Not a mail at all: kept for inspection (the inbox's failed set), never retried."""


@dataclass(frozen=True)
class MailPart:
    """An attachment or an inline image (``content_id`` set: referenced as ``cid:`` in the HTML)."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class ParsedMail:
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    sender: str  # the From address, lower-cased ("" when there is none)
    sender_name: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    subject: str
    text: str  # the plain body in full, or the HTML's text when there is no plain part
    html: str | None  # as sent: sanitise before showing it
    attachments: tuple[MailPart, ...] = ()
    # Why no person wrote it ("auto-submitted", "precedence", "list", "autoreply", "bounce"), or None.
    automatic: str | None = None
    defects: tuple[str, ...] = ()


def charset_of(label: str | None) -> str:
    label = (label or "utf-8").strip().strip('"').lower()
    return _CHARSET_ALIASES.get(label, label)


def decode_bytes(data: bytes, label: str | None) -> str:
    """Bytes in the charset the mail declares (its superset, see the module's doc); undecodable
    bytes, or an unknown label, never fail the mail."""
    charset = charset_of(label)
    try:
        return data.decode(charset)
    except LookupError:  # a label no codec knows: UTF-8 is the likeliest, with replacement
        return data.decode("utf-8", errors="replace")
    except UnicodeDecodeError:
        return data.decode(charset, errors="replace")


def header_text(value: object) -> str:
    """A header's text, its encoded words decoded through :func:`decode_bytes` (so a GB2312
    label over GBK bytes reads as the client meant it)."""
    if value is None:
        return ""
    try:
        chunks = decode_header(str(value))
    except Exception:  # a header the decoder cannot split: as it came
        return " ".join(str(value).split())
    text = "".join(decode_bytes(chunk, cs) if isinstance(chunk, bytes) else chunk for chunk, cs in chunks)
    return " ".join(text.split())


def _ids(value: object) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_MSGID.findall(str(value or ""))))


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    values = msg.get_all(name) or []
    try:
        pairs = getaddresses([header_text(v) for v in values])
    except Exception:  # a header too broken to parse names nobody
        return []
    return [(n, a.strip().lower()) for n, a in pairs if "@" in a]


def _payload(part: Message, lifted: dict[str, bytes]) -> bytes | None:
    """A leaf part's decoded bytes (a base64 body :func:`_lift_base64` took out: its bytes)."""
    if lifted:
        body = part.get_payload()
        if isinstance(body, str):
            found = lifted.get(body.strip())
            if found is not None:
                return found
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else None


def _text_of(part: Message, lifted: dict[str, bytes]) -> str:
    payload = _payload(part, lifted)
    if payload is None:
        return ""
    return decode_bytes(payload, part.get_content_charset())


def _automatic(msg: Message) -> str | None:
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return "auto-submitted"
    if str(msg.get("Precedence", "")).strip().lower() in ("bulk", "junk", "list", "auto_reply"):
        return "precedence"
    if msg.get("X-Autoreply") or msg.get("X-Autorespond") or msg.get("X-Auto-Response-Suppress", "").lower() == "all":
        return "autoreply"
    if msg.get("List-Id") or msg.get("List-Unsubscribe"):
        return "list"
    if msg.get_content_type() == "multipart/report" and \
            str(msg.get_param("report-type", "")).lower() == "delivery-status":
        return "bounce"
    return None


_TAG = re.compile(r"<[^>]*>")
_BLOCK = re.compile(r"</?(p|div|br|tr|li|h[1-6]|blockquote)\b[^>]*>", re.I)
_DROP = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.I | re.S)


def html_text(html: str) -> str:
    """A plain rendering of an HTML body (lines at block elements), for search and for agents'
    clients that show text."""
    import html as htmllib

    text = _DROP.sub("", html)
    text = _BLOCK.sub("\n", text)
    text = htmllib.unescape(_TAG.sub("", text))
    lines = [line.strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_CTE = b"content-transfer-encoding:"
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_LIFT_MIN_BYTES = 2048
_BOUNDARY_VALUE = re.compile(rb'\s*=\s*"?([^";\r\n]+)')


def _boundaries(raw: bytes, lower: bytes) -> set[bytes]:
    """Every ``boundary=`` parameter value in the mail (found with bytes.find: a regular expression
    scanning the whole mail for them cost more than the parsing it saves)."""
    found: set[bytes] = set()
    at = 0
    while (i := lower.find(b"boundary", at)) >= 0:
        at = i + 8
        value = _BOUNDARY_VALUE.match(raw, at)
        if value:
            found.add(value[1].strip())
    return found


def _lift_base64(raw: bytes) -> tuple[bytes, dict[str, bytes]]:
    """The mail with each large base64 body replaced by a short token, and what each decodes to.

    The stdlib parser walks a body a line at a time in Python, then searches the whole of it with
    a regular expression for its last line end: for a 150 KiB file, most of the time the mail took
    to read. A body is lifted out only when a ``Content-Transfer-Encoding: base64`` header line is
    followed, past its header block's blank line, by nothing but base64 up to the next boundary line
    (``--``) or the end, and it decodes cleanly; then what :func:`parse` reads for that part is
    exactly what the parser would have decoded. Anything else is left to the parser as it came."""
    lower = raw.lower()
    pieces: list[bytes] = []
    lifted: dict[str, bytes] = {}
    boundaries: set[bytes] | None = None
    done = at = 0
    while (i := lower.find(_CTE, at)) >= 0:
        at = i + len(_CTE)
        eol = raw.find(b"\n", at)
        if eol < 0:
            break
        if (i and raw[i - 1] != 0x0A) or lower[at:eol].strip() != b"base64":
            continue
        crlf_blank, lf_blank = raw.find(b"\n\r\n", eol - 1), raw.find(b"\n\n", eol - 1)
        if crlf_blank < 0 or 0 <= lf_blank < crlf_blank:
            blank, skip = lf_blank, 2
        else:
            blank, skip = crlf_blank, 3
        if blank < 0:
            break
        start = blank + skip
        end = raw.find(b"\n--", start - 1)
        end = len(raw) if end < 0 else end
        if end < len(raw):
            # The body ends only at a delimiter of the mail's own (else the parser reads on).
            if boundaries is None:
                boundaries = _boundaries(raw, lower)
            line_end = raw.find(b"\n", end + 1)
            line = raw[end + 3:len(raw) if line_end < 0 else line_end].rstrip()
            if line.removesuffix(b"--") not in boundaries:
                continue
        body = raw[start:end]
        if len(body) < _LIFT_MIN_BYTES or body.translate(None, _BASE64_ALPHABET + b"\r\n \t"):
            continue
        try:
            data = binascii.a2b_base64(body)
        except binascii.Error:  # bad padding and the like: the parser's lenient decoding, and its defect
            continue
        token = f"chlift{len(lifted)}x{os.urandom(6).hex()}"
        lifted[token] = data
        pieces += (raw[done:start], token.encode(), b"\r\n")
        done = at = end + 1 if end < len(raw) else end
    if not pieces:
        return raw, lifted
    pieces.append(raw[done:])
    return b"".join(pieces), lifted


def parse(raw: bytes) -> ParsedMail:
    if not raw or not raw.strip():
        raise UnreadableMail("an empty message")
    raw, lifted = _lift_base64(raw)
    # compat32: headers as sent (encoded words undecoded, decoded here with the charset aliases),
    # read as plain strings. policy.default would parse every header into objects on each access,
    # which was two thirds of the time a mail took to read, for nothing we use.
    msg = message_from_bytes(raw, policy=policy.compat32)
    headers = msg
    if not msg.keys():
        raise UnreadableMail("no headers")
    defects: list[str] = []
    text: str | None = None
    html: str | None = None
    attachments: list[MailPart] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype.startswith("multipart/"):
            # A multipart whose boundary never comes: the stdlib leaves its whole body as one
            # string. It is all the text there is.
            if text is None:
                text = str(part.get_payload())
            continue
        disposition = part.get_content_disposition()
        try:
            filename = part.get_filename()
        except Exception:  # a broken RFC 2231 parameter: an unnamed file
            filename = None
        if filename and "=?" in filename:  # an encoded-word name, as many clients still write it
            filename = header_text(filename)
        content_id = str(part.get("Content-ID", "")).strip().strip("<>") or None
        is_body = disposition != "attachment" and filename is None and ctype in ("text/plain", "text/html")
        if is_body:
            # The first body of each kind; a second one (another alternative) adds nothing.
            if ctype == "text/plain" and text is None:
                text = _text_of(part, lifted)
            elif ctype == "text/html" and html is None:
                html = _text_of(part, lifted)
            continue
        if ctype == "message/delivery-status" and disposition != "attachment":
            continue  # a bounce's machine-readable report: read with the bounce, not kept as a file
        payload = _payload(part, lifted)
        if not isinstance(payload, bytes):
            continue
        name = filename or f"{content_id or 'part'}.{ctype.split('/')[-1]}"
        attachments.append(MailPart(name, ctype, payload, content_id,
                                    inline=disposition == "inline" or (content_id is not None and not filename)))
    # After decoding: a payload's defects (bad base64, say) are noted as it is decoded.
    for part in msg.walk():
        defects.extend(type(d).__name__ for d in part.defects)
    senders = _addresses(headers, "From")
    sender_name, sender = senders[0] if senders else ("", "")
    body = text if text is not None else (html_text(html) if html else "")
    return ParsedMail(
        message_id=(_ids(headers.get("Message-ID")) or (None,))[0],
        in_reply_to=_ids(headers.get("In-Reply-To")),
        references=_ids(headers.get("References")),
        sender=sender, sender_name=sender_name or None,
        to=tuple(a for _, a in _addresses(headers, "To")),
        cc=tuple(a for _, a in _addresses(headers, "Cc")),
        reply_to=tuple(a for _, a in _addresses(headers, "Reply-To")),
        subject=header_text(headers.get("Subject")),
        text=body.replace("\r\n", "\n").replace("\r", "\n"),
        html=html,
        attachments=tuple(attachments),
        automatic=_automatic(msg),
        defects=tuple(defects),
    )


# --- quoted history and signatures ------------------------------------------------------------------
_SEPARATORS = [
    # Gmail, Apple Mail (English): "On Mon, 1 Dec 2026 at 10:00, Wang <w@x> wrote:" (may wrap).
    re.compile(r"^\s*On\b.{0,200}\bwrote:\s*$", re.I),
    # Outlook: "-----Original Message-----", and its header block "From: ... / Sent: ...".
    re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*_{10,}\s*$"),  # Outlook on the web's rule above the header block
    # QQ Mail, NetEase 163/126, Foxmail: "------------------ 原始邮件 ------------------".
    re.compile(r"^\s*-{2,}\s*(原始邮件|Original)\s*-{2,}\s*$"),
    re.compile(r"^\s*-{2,}\s*(转发邮件信息|Forwarded message)\s*-{2,}\s*$", re.I),
    # Apple Mail, Gmail in Chinese: "在 2026年12月1日 10:00, 王芳 <w@x> 写道:" (full-width punctuation).
    re.compile(r"^\s*在.{0,200}写道[:\uFF1A]\s*$"),
    re.compile(r"^\s*于.{0,200}写道[:\uFF1A]\s*$"),
]
# All of them in one pattern: a mail's every line is matched against it.
_SEPARATOR = re.compile("|".join(f"(?:{s.pattern})" for s in _SEPARATORS), re.I)
# The header block Outlook and Foxmail put above the history, in English and in Chinese.
_HEADER_BLOCK = re.compile(r"^\s*(From|发件人|寄件者)\s*[:\uFF1A]", re.I)
_HEADER_NEXT = re.compile(r"^\s*(Sent|Date|发送时间|日期|寄件日期|To|收件人)\s*[:\uFF1A]", re.I)
_SIGNATURE = re.compile(r"^-- ?$")


def visible_text(text: str) -> str:
    """The part of a reply the customer wrote this time: up to the first reply separator (or a
    From:/Sent: header block), less a signature after ``-- ``. The full text is what is stored."""
    lines = text.splitlines()
    cut = len(lines)
    for i, line in enumerate(lines):
        if _SEPARATOR.match(line):
            cut = i
            break
        if _HEADER_BLOCK.match(line) and i + 1 < len(lines) and any(
                _HEADER_NEXT.match(nxt) for nxt in lines[i + 1:i + 4]):
            cut = i
            break
    kept = lines[:cut]
    for i, line in enumerate(kept):
        if _SIGNATURE.match(line):
            kept = kept[:i]
            break
    visible = "\n".join(kept).rstrip()
    return visible if visible.strip() else text.strip()


# --- showing HTML safely ------------------------------------------------------------------------------
_CID = re.compile(r"""(["'])cid:([^"']+)\1""", re.I)


def safe_html(html: str, inline: dict[str, str] | None = None) -> str:
    """A customer's HTML, safe to show in an agent's browser (nh3: no script, no handlers, no
    styles that escape the frame). Inline images (``cid:``) point at their stored attachment
    (``inline``: Content-ID → URL); remote images are dropped, as mail clients block them by
    default: they tell the sender when and where the mail was read."""
    links = inline or {}

    def to_url(found: re.Match[str]) -> str:
        url = links.get(found[2].strip("<>"))
        return f'"{url}"' if url else '""'

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src" and not value.startswith("/api/v1/attachments/"):
            return None
        return value

    import nh3

    return nh3.clean(_CID.sub(to_url, html), attribute_filter=keep, url_schemes={"http", "https", "mailto"})


# --- forwarded mail and bounces -------------------------------------------------------------------------
_FWD_START = re.compile(r"^\s*(-{2,}\s*(Forwarded message|Original Message|原始邮件|转发邮件信息)\s*-{2,}"
                        r"|Begin forwarded message:|开始转发的邮件[:\uFF1A])\s*$", re.I)
_FWD_FROM = re.compile(r"^\s*(From|发件人|寄件者)\s*[:\uFF1A]\s*(?P<value>.+)$", re.I)


def forwarded_sender(text: str) -> tuple[str | None, str] | None:
    """(name, address) of the mail a forward carries: the first From: line after a forward marker."""
    seen_marker = False
    for line in text.splitlines():
        if not seen_marker:
            seen_marker = bool(_FWD_START.match(line))
            continue
        found = _FWD_FROM.match(line)
        if found:
            pairs = getaddresses([found["value"].replace("[mailto:", "<").replace("]", ">")])
            for name, address in pairs:
                if "@" in address:
                    return (name or None), address.strip().lower()
            return None
    return None


_DIAGNOSTIC = re.compile(rb"^Diagnostic-Code:\s*(?:smtp;\s*)?(.+(?:\r?\n[ \t].+)*)", re.I | re.M)
_STATUS = re.compile(rb"^Status:\s*([245]\.\d{1,3}\.\d{1,3})", re.I | re.M)
_ACTION = re.compile(rb"^Action:\s*(\w+)", re.I | re.M)


def bounce_reason(raw: bytes) -> tuple[bool, str]:
    """Whether a DSN reports a failure (not a delay or a relay notice), and its reason as the
    receiving server gave it."""
    action = _ACTION.search(raw)
    status = _STATUS.search(raw)
    failed = (action is None or action[1].lower() == b"failed") and (status is None or status[1].startswith(b"5"))
    diagnostic = _DIAGNOSTIC.search(raw)
    reason = b" ".join(diagnostic[1].split()) if diagnostic else (status[1] if status else b"undeliverable")
    return failed, reason.decode("utf-8", errors="replace")[:500]
