"""Satisfaction surveys by e-mail (core.csat): on solve the customer gets one mail, in the ticket's
thread, with five links to the hosted rating page (the rating chosen, nothing stored by opening
one); the page takes the rating once. Real SMTP: the customer's mail into the hub's receiver, the
survey out through the mailbox's relay (a loopback aiosmtpd sink)."""

from __future__ import annotations

import re

import aiohttp

from tests.email.conftest import Mailbox
from tests.email.support import Sink
from tests.support import Http


async def test_one_mail_with_five_links_then_the_page_takes_the_rating(mailbox: Mailbox, sink: Sink) -> None:
    await mailbox.write("customer@customers.example.org", "Broken kettle", "It leaks")
    detail = await mailbox.ticket_with("It leaks")
    tid = detail["ticket"]["id"]
    await mailbox.admin.reply(tid, "A new one is on its way.")
    await sink.wait_for(1)
    await mailbox.admin.api("POST", f"/api/v1/tickets/{tid}/solve")
    [_, survey] = await sink.wait_for(2)
    assert survey["To"] == "customer@customers.example.org"
    assert f"[#{tid}]" in survey["Subject"] and survey["X-Channelhub-Ticket"] == str(tid)
    assert survey["In-Reply-To"]  # in the ticket's thread
    text = survey.get_body(("plain",)).get_content()
    links = re.findall(r"https://[^\s]+/csat/([A-Za-z0-9_-]+)\?rating=([1-5])", text)
    assert [n for _, n in links] == ["1", "2", "3", "4", "5"] and len({t for t, _ in links}) == 1
    html_part = survey.get_body(("html",)).get_content()
    assert html_part.count("/csat/") == 5
    token = links[0][0]
    assert sink.received[1][0].rcpt_tos == ["customer@customers.example.org"]

    async with aiohttp.ClientSession() as session:
        http = Http(mailbox.tenant.server.url, session)
        # Opening a link (as a mail scanner would) stores nothing.
        page = await http("GET", f"/csat/{token}?rating=5", host=mailbox.tenant.domain)
        assert page.status == 200
        assert (await mailbox.ticket(tid))["csat"]["rating"] is None
        done = await http("POST", f"/csat/{token}", host=mailbox.tenant.domain, json_body={"rating": 5})
        assert done.status == 200, done
    # Reopened and solved again: no second mail.
    await mailbox.admin.api("PATCH", f"/api/v1/tickets/{tid}", {"status": "open"})
    await mailbox.admin.api("POST", f"/api/v1/tickets/{tid}/solve")
    assert (await mailbox.ticket(tid))["csat"]["rating"] == 5
    assert len(sink.received) == 2
