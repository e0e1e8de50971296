"""Satisfaction surveys (CSAT, #17): a solved ticket's customer is asked to rate it 1-5, with an
optional comment, once.

- **Offered in the solve's transaction.** :func:`offer` inserts one ``csat_surveys`` row per ticket
  that an agent's change solved (core.ticket_writes), with the assignee and group of that moment
  and a random token. The row's ``ticket_id`` is unique and the insert does nothing on a conflict:
  a ticket reopened and solved again, or solved by two requests at once (the ticket row is locked
  by the first; the second finds it solved already), never gets a second survey.
- **Not for everything.** No survey when the tenant turned surveys off (``csat_settings``; on by
  default), for a ticket tagged ``spam`` (:data:`SPAM_TAG`: the plain, documented meaning of spam
  here), for a ticket with no customer identity to ask on, or on a channel that does not ask
  (``Connector.surveys``). Probe traffic (core.probes) stores no ticket at all, so no survey can
  arise from it.
- **Sent after commit, off the solve's path.** :class:`Surveys` hands each new row to its channel's
  :meth:`core.channels.Connector.send_survey` in a task of this process's loop; a row is claimed
  with one conditional UPDATE (as the outbox does), so two processes never send it twice, and
  :func:`sweep` takes up rows a crash or a failed try left behind.
- **Answered once.** :func:`answer` takes a rating by token (the hosted page, the widget's socket)
  or by a channel's reply of a bare digit (:func:`reply_rating`, :func:`answer_reply`): the survey
  row is locked, an answered one is refused (409 ``survey_answered``), and the rating is stored
  with a ``csat.rated`` event in the same transaction (agent and group as at the solve), which the
  reports count.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit
from core.auth import Principal
from core.channels import SurveyInvite
from core.errors import Conflict, DeliveryError, InvalidInput, NotFound
from core.events import EventKind, EventLog
from core.models import CsatSettings, CsatState, CsatSurvey, CustomerIdentity, Tenant, Ticket, table_of, utcnow
from core.outbox import backoff_seconds
from core.serialize import TicketRow, iso

if TYPE_CHECKING:
    from core.hub import Hub

logger = logging.getLogger(__name__)

# A ticket with this tag is spam: no survey goes out for it.
SPAM_TAG = "spam"
# How long after the solve a survey takes a channel's bare-digit reply as its rating (after that a
# "5" is an ordinary message; the hosted page still takes the rating).
REPLY_WINDOW = timedelta(days=7)
MAX_COMMENT = 2000
CLAIM_SECONDS = 60
MAX_ATTEMPTS = 6
# A digit 1-5, ASCII or full width (what a Chinese keyboard types), or one to five stars.
_DIGITS = {**{str(n): n for n in range(1, 6)}, **{chr(0xFF10 + n): n for n in range(1, 6)}}
_STARS = frozenset("★⭐☆")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def page_url(domain: str, token: str) -> str:
    """The hosted rating page (admin_api.routes.csat) on the tenant's domain (served over HTTPS)."""
    return f"https://{domain}/csat/{token}"


# --- the tenant's setting ---------------------------------------------------------------------------
async def enabled(session: AsyncSession, tenant_id: int) -> bool:
    row = (await session.execute(select(CsatSettings.enabled).where(CsatSettings.tenant_id == tenant_id))).first()
    return True if row is None else bool(row[0])


async def set_enabled(session: AsyncSession, p: Principal, value: bool, *, ip: str | None) -> dict[str, Any]:
    row = await session.get(CsatSettings, p.tenant_id)
    before = True if row is None else row.enabled
    if row is None:
        session.add(CsatSettings(tenant_id=p.tenant_id, enabled=value, updated_at=utcnow()))
    else:
        row.enabled, row.updated_at = value, utcnow()
    await session.flush()
    audit(session, tenant_id=p.tenant_id, actor_type="agent", actor_id=p.agent_id, action="csat_settings.update",
          target_type="csat_settings", target_id=p.tenant_id, details={"enabled": {"from": before, "to": value}},
          ip=ip)
    return {"enabled": value}


# --- offering, in the solve's transaction -----------------------------------------------------------------
@dataclass(slots=True)
class Solved:
    """A ticket an agent's change just solved, as the change leaves it."""

    ticket: TicketRow
    external_id: str | None  # the identity the customer is asked on


async def offer(session: AsyncSession, hub: Hub, tenant_id: int, solved: Iterable[Solved], now: datetime) -> list[int]:
    """Insert the surveys of just-solved tickets (one statement); returns the ids of the new rows."""
    wanted = [s.ticket for s in solved
              if s.external_id is not None and s.ticket.identity_id is not None
              and SPAM_TAG not in (s.ticket.tags or [])
              and (c := hub.connectors.get(s.ticket.channel)) is not None and c.surveys]
    if not wanted or not await enabled(session, tenant_id):
        return []
    rows = [{"tenant_id": tenant_id, "ticket_id": t.id, "identity_id": t.identity_id, "channel": t.channel,
             "agent_id": t.assignee_id, "group_id": t.group_id, "token": new_token(), "state": CsatState.PENDING,
             "attempts": 0, "created_at": now} for t in wanted]
    table = table_of(CsatSurvey)
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    stmt = ((pg_insert if dialect == "postgresql" else sqlite_insert)(table).values(rows)
            .on_conflict_do_nothing(index_elements=["ticket_id"]).returning(table.c.id))
    return sorted((await session.execute(stmt)).scalars())


# --- sending, after commit ---------------------------------------------------------------------------
class Surveys:
    """One per hub: sends new surveys in tasks of its loop, a retry after its backoff."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._tasks: set[asyncio.Task[None]] = set()

    def enqueue(self, survey_ids: Iterable[int], delay: float = 0.0) -> None:
        for sid in survey_ids:
            task = asyncio.get_running_loop().create_task(self._run(sid, delay), name=f"csat-{sid}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, survey_id: int, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            outcome, attempts = await deliver(self.hub, survey_id)
        except Exception:
            logger.warning("sending survey %s failed; the sweeper takes it up", survey_id, exc_info=True)
            return
        if outcome == "retry":
            self.enqueue([survey_id], backoff_seconds(attempts))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


def _ours(hub: Hub) -> list[str]:
    return [kind for kind, c in hub.connectors.items() if c.surveys]


async def deliver(hub: Hub, survey_id: int) -> tuple[str, int]:
    """Send one survey: "sent", "retry", "failed" or "skipped" (taken by another process, or of a
    channel this process does not serve), with the tries made so far."""
    now = utcnow()
    async with hub.db.session() as session:
        claimed = await session.execute(
            update(CsatSurvey).where(
                CsatSurvey.id == survey_id, CsatSurvey.channel.in_(_ours(hub)),
                or_(CsatSurvey.state == CsatState.PENDING,
                    (CsatSurvey.state == CsatState.SENDING) & (CsatSurvey.locked_until < now)),
            ).values(state=CsatState.SENDING, attempts=CsatSurvey.attempts + 1,
                     locked_until=now + timedelta(seconds=CLAIM_SECONDS))
            .execution_options(synchronize_session=False))
        if getattr(claimed, "rowcount", 0) != 1:
            return "skipped", 0
        survey, external_id, subject, domain = (await session.execute(
            select(CsatSurvey, CustomerIdentity.external_id, Ticket.subject, Tenant.domain)
            .join(Ticket, Ticket.id == CsatSurvey.ticket_id)
            .join(Tenant, Tenant.id == CsatSurvey.tenant_id)
            .outerjoin(CustomerIdentity, CustomerIdentity.id == CsatSurvey.identity_id)
            .where(CsatSurvey.id == survey_id))).one()
    error: DeliveryError | None = None
    if external_id is None:
        error = DeliveryError("the customer's identity is gone", retry=False, code="no_identity")
    else:
        invite = SurveyInvite(tenant_id=survey.tenant_id, channel=survey.channel, external_id=external_id,
                              ticket_id=survey.ticket_id, survey_id=survey.id, token=survey.token,
                              url=page_url(domain, survey.token), subject=subject)
        try:
            await hub.connectors[survey.channel].send_survey(invite)
        except DeliveryError as exc:
            error = exc
        except Exception as exc:
            logger.warning("survey %s: the channel raised %r", survey_id, exc)
            error = DeliveryError(f"{type(exc).__name__}: {exc}", retry=True)
    if error is None:
        state, outcome = CsatState.SENT, "sent"
    elif error.retry and survey.attempts < MAX_ATTEMPTS:
        state, outcome = CsatState.PENDING, "retry"
    else:
        state, outcome = CsatState.FAILED, "failed"
    async with hub.db.session() as session:
        await session.execute(
            update(CsatSurvey).where(CsatSurvey.id == survey_id).values(
                state=state, locked_until=None, sent_at=utcnow() if error is None else None,
                last_error=None if error is None else f"{error.code}: {error.message}"[:500])
            .execution_options(synchronize_session=False))
    if error is not None:
        logger.info("survey %s: %s (%s)", survey_id, outcome, error.code)
    return outcome, survey.attempts


async def sweep(hub: Hub, *, grace_seconds: float = 30.0, limit: int = 200) -> int:
    """Send again what a crash left claimed, or a failed try left pending (past its grace)."""
    now = utcnow()
    async with hub.db.read() as session:
        ids = list((await session.execute(
            select(CsatSurvey.id).where(
                CsatSurvey.channel.in_(_ours(hub)),
                or_((CsatSurvey.state == CsatState.PENDING)
                    & (CsatSurvey.created_at < now - timedelta(seconds=grace_seconds)),
                    (CsatSurvey.state == CsatState.SENDING) & (CsatSurvey.locked_until < now)),
            ).order_by(CsatSurvey.id).limit(limit))).scalars())
    if ids:
        hub.csat.enqueue(ids)
    return len(ids)


# --- answering --------------------------------------------------------------------------------------
def check_rating(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise InvalidInput("rating must be a whole number from 1 to 5", code="invalid_rating")
    return value


def check_comment(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_COMMENT:
        raise InvalidInput(f"comment must be text of at most {MAX_COMMENT} characters", code="invalid_comment")
    return value.strip() or None


def reply_rating(text: str) -> int | None:
    """A channel reply that is a rating: only a digit 1-5 (ASCII or full width) or one to five stars
    (★, ⭐ or ☆), around it nothing but spaces. Anything else is an ordinary message."""
    t = text.strip()
    if t in _DIGITS:
        return _DIGITS[t]
    if t and 1 <= len(t) <= 5 and set(t) <= _STARS:
        return len(t)
    return None


def survey_dict(s: CsatSurvey) -> dict[str, Any]:
    return {"id": s.id, "ticket_id": s.ticket_id, "channel": s.channel, "state": s.state,
            "agent_id": s.agent_id, "group_id": s.group_id, "created_at": iso(s.created_at),
            "sent_at": iso(s.sent_at), "rating": s.rating, "comment": s.comment, "answered_at": iso(s.answered_at)}


async def _rate(session: AsyncSession, survey: CsatSurvey, rating: int, comment: str | None, now: datetime,
                ref: str | None = None) -> list[dict[str, Any]]:
    if survey.answered_at is not None:
        raise Conflict("this survey has been answered already: thank you", code="survey_answered")
    survey.rating, survey.comment, survey.answered_at, survey.answered_ref = rating, comment, now, ref
    ticket = await session.get(Ticket, survey.ticket_id)
    log = EventLog(session)
    log.add(EventKind.CSAT_RATED, tenant_id=survey.tenant_id, ticket=ticket, payload={
        "survey_id": survey.id, "rating": rating, "comment": comment, "agent_id": survey.agent_id,
        "group_id": survey.group_id})
    await session.flush()
    return await log.flush()


async def find(hub: Hub, tenant_id: int, token: str) -> dict[str, Any]:
    """The survey a token names (404 ``survey_not_found``)."""
    async with hub.db.read(tenant_id) as session:
        survey = (await session.execute(select(CsatSurvey).where(CsatSurvey.token == token))).scalar_one_or_none()
        if survey is None:
            raise NotFound("there is no such survey: the link may be mistyped", code="survey_not_found")
        return survey_dict(survey)


async def answer(hub: Hub, tenant_id: int, token: str, rating: Any, comment: Any = None, *,
                 now: datetime | None = None) -> dict[str, Any]:
    """Rate the survey ``token`` names, once."""
    rating, comment = check_rating(rating), check_comment(comment)
    now = now or utcnow()
    async with hub.db.session(tenant_id) as session:
        survey = (await session.execute(select(CsatSurvey).where(CsatSurvey.token == token)
                                        .with_for_update())).scalar_one_or_none()
        if survey is None:
            raise NotFound("there is no such survey: the link may be mistyped", code="survey_not_found")
        events = await _rate(session, survey, rating, comment, now)
        out = survey_dict(survey)
    await hub.publish(tenant_id, events)
    return out


def _open_for(tenant_id: int, channel: str, external_id: str, now: datetime) -> Any:
    return (select(CsatSurvey)
            .join(CustomerIdentity, CustomerIdentity.id == CsatSurvey.identity_id)
            .where(CsatSurvey.tenant_id == tenant_id, CustomerIdentity.channel == channel,
                   CustomerIdentity.external_id == external_id,
                   # Sending counts: the customer may answer before the send's outcome is recorded.
                   CsatSurvey.state.in_((CsatState.SENDING, CsatState.SENT)),
                   CsatSurvey.answered_at.is_(None), CsatSurvey.created_at >= now - REPLY_WINDOW)
            .order_by(CsatSurvey.id.desc()).limit(1))


async def open_survey(hub: Hub, tenant_id: int, channel: str, external_id: str, *,
                      now: datetime | None = None) -> dict[str, Any] | None:
    """The customer's latest survey sent and not yet answered (within :data:`REPLY_WINDOW`), with
    its token: a widget that reconnects shows it again."""
    async with hub.db.read(tenant_id) as session:
        survey = (await session.execute(_open_for(tenant_id, channel, external_id, now or utcnow()))).scalar()
        return None if survey is None else {**survey_dict(survey), "token": survey.token}


async def answer_reply(hub: Hub, tenant_id: int, channel: str, external_id: str, text: str, ref: str, *,
                       now: datetime | None = None) -> bool:
    """A channel's message that may be a rating (:func:`reply_rating`): whether it was taken as one
    (or is a retry of one that was), in which case it is not an ordinary message."""
    rating = reply_rating(text)
    if rating is None:
        return False
    now = now or utcnow()
    async with hub.db.session(tenant_id) as session:
        again = (await session.execute(select(CsatSurvey.id).where(
            CsatSurvey.tenant_id == tenant_id, CsatSurvey.answered_ref == ref))).first()
        if again is not None:
            return True
        survey = (await session.execute(_open_for(tenant_id, channel, external_id, now)
                                        .with_for_update(of=CsatSurvey))).scalar()
        if survey is None:
            return False
        events = await _rate(session, survey, rating, None, now, ref)
    await hub.publish(tenant_id, events)
    return True


async def of_ticket(session: AsyncSession, ticket_id: int) -> dict[str, Any] | None:
    """A ticket's survey as agents see it (no token), or None."""
    survey = (await session.execute(select(CsatSurvey).where(CsatSurvey.ticket_id == ticket_id))).scalar()
    return None if survey is None else survey_dict(survey)
