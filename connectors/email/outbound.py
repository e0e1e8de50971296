# ruff: noqa: RUF001 - Chinese is written with full-width punctuation; these are its texts.
"""An agent's reply as a mail: threaded headers, plain text and HTML, the agent's files.

- ``Message-ID`` is ours and signed (connectors/email/ids.py): the customer's reply names it in
  In-Reply-To/References, and the hub knows its message and ticket from it alone.
- ``In-Reply-To`` is the newest mail of the ticket, ``References`` the ticket's mail (its first
  and newest, cut to a bound), so every client threads the reply; a ticket an agent started has
  none, and the customer's reply threads by our Message-ID.
- The subject carries the ticket token (``Re: <subject> [#7]``); with plus addressing, the
  Reply-To is the mailbox's signed plus address for the ticket.
- Sent through the mailbox's relay with aiosmtplib: a 4xx (or no answer) is retried by the outbox,
  a 5xx fails the reply with the relay's words, shown to the agent.
"""

from __future__ import annotations

import html
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

import aiosmtplib

from connectors.email import ids
from connectors.email.store import MailboxConfig, Thread
from core.channels import SurveyInvite
from core.config import Settings
from core.errors import DeliveryError
from core.models import utcnow

# What aiosmtplib raises when the connection itself failed: worth another try.
_NETWORK = (OSError, TimeoutError, aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError,
            aiosmtplib.SMTPServerDisconnected)


def html_body(text: str) -> str:
    """The plain reply as simple HTML: paragraphs and line breaks, everything escaped."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n")]
    inner = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs if p.strip())
    return f'<!DOCTYPE html><html><body style="font-family: sans-serif">{inner}</body></html>'


def compose(settings: Settings, mailbox: MailboxConfig, *, to: str, text: str, message_id: int, ticket_id: int,
            thread: Thread, files: list[tuple[str, str, bytes]], author: str | None) -> tuple[EmailMessage, str]:
    """The mail and its Message-ID (without brackets)."""
    msgid = ids.message_id(settings, mailbox.tenant_id, message_id, ticket_id, mailbox.domain)
    msg = EmailMessage()
    display = f"{author} ({mailbox.name})" if author else mailbox.name
    msg["From"] = formataddr((display, mailbox.address))
    msg["To"] = to
    cc = [p for p in thread.participants if p != to]
    if cc:
        msg["Cc"] = ", ".join(cc)
    if mailbox.plus_addressing:
        msg["Reply-To"] = formataddr((mailbox.name, ids.plus_address(settings, mailbox.tenant_id, mailbox.address,
                                                                    ticket_id)))
    msg["Subject"] = ids.reply_subject(thread.subject, ticket_id)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<{msgid}>"
    if thread.references:
        msg["In-Reply-To"] = f"<{thread.references[-1]}>"
        msg["References"] = " ".join(f"<{r}>" for r in thread.references)
    msg["X-Channelhub-Ticket"] = str(ticket_id)
    msg.set_content(text)
    msg.add_alternative(html_body(text), subtype="html")
    for name, content_type, data in files:
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=name)
    return msg, msgid


# The survey's words (core.csat), in both languages: the hub does not know which the customer reads.
SURVEY_SUBJECT = "How did we do? 请为本次服务评分"
SURVEY_INTRO = ("Your request has been solved. How did we do? Pick a rating (1 = poor, 5 = great); "
                "you can add a comment on the page.\n"
                "您的问题已解决。请为本次服务评分（1 = 很差，5 = 很好），也可以在页面上留言。")


def survey_links(survey: SurveyInvite) -> list[tuple[int, str]]:
    """The five links: the hosted page with the rating chosen (it is given by the page's button,
    never by opening a link: mail scanners open links)."""
    return [(n, f"{survey.url}?rating={n}") for n in range(1, 6)]


def compose_survey(mailbox: MailboxConfig, survey: SurveyInvite, thread: Thread) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = formataddr((mailbox.name, mailbox.address))
    msg["To"] = survey.external_id
    msg["Subject"] = f"{SURVEY_SUBJECT} {ids.subject_token(survey.ticket_id)}"
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(domain=mailbox.domain)
    if thread.references:
        msg["In-Reply-To"] = f"<{thread.references[-1]}>"
        msg["References"] = " ".join(f"<{r}>" for r in thread.references)
    msg["X-Channelhub-Ticket"] = str(survey.ticket_id)
    msg["X-Channelhub-Survey"] = str(survey.survey_id)
    links = survey_links(survey)
    msg.set_content(SURVEY_INTRO + "\n\n" + "\n".join(f"{'★' * n}{'☆' * (5 - n)} {n}: {url}" for n, url in links))
    stars = "".join(
        f'<a href="{html.escape(url)}" style="font-size:28px;text-decoration:none;margin:0 4px" '
        f'title="{n}">{n} ★</a>' for n, url in links)
    intro = html.escape(SURVEY_INTRO).replace("\n", "<br>")
    msg.add_alternative(f'<!DOCTYPE html><html><body style="font-family: sans-serif"><p>{intro}</p>'
                        f"<p>{stars}</p></body></html>", subtype="html")
    return msg


async def send(mailbox: MailboxConfig, msg: EmailMessage, recipients: list[str], timeout: float) -> None:
    if not mailbox.smtp_host:
        raise DeliveryError(f"the mailbox {mailbox.address} has no SMTP relay configured", retry=False,
                            code="no_relay")
    security = mailbox.smtp_security
    try:
        await aiosmtplib.send(
            msg, sender=mailbox.address, recipients=recipients, hostname=mailbox.smtp_host,
            port=mailbox.smtp_port or (465 if security == "tls" else 587 if security == "starttls" else 25),
            username=mailbox.smtp_username, password=mailbox.smtp_password if mailbox.smtp_username else None,
            use_tls=security == "tls", start_tls=True if security == "starttls" else False, timeout=timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        words = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        raise DeliveryError(f"the relay refused the recipients: {words}"[:1000],
                            retry=all(400 <= c < 500 for c in codes), code="relay_refused") from None
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"the relay refused the mailbox's login: {exc.code} {exc.message}"[:1000],
                            retry=False, code="relay_auth_failed") from None
    except aiosmtplib.SMTPResponseException as exc:
        permanent = 500 <= exc.code < 600
        raise DeliveryError(f"the relay answered {exc.code} {exc.message}"[:1000], retry=not permanent,
                            code="relay_refused" if permanent else "relay_unavailable") from None
    except _NETWORK as exc:
        raise DeliveryError(f"the relay could not be reached ({type(exc).__name__}: {exc})"[:1000], retry=True,
                            code="relay_unavailable") from None
