"""The reports on agents, groups and demand, read from the rollups (core.rollups); the metrics
object and each of its figures are defined in docs/reports.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from core.metrics import FIELDS, INDEX, SLA_TARGETS, STATUSES, WIDTH, Clock
from core.models import Agent, Group, report_rollups
from core.rollups import BIT, DIMS, MONTHLY, NEUTRAL

DEFAULT_DAYS = 30
MAX_DAYS = 732
_T = report_rollups.c


@dataclass(frozen=True)
class Filters:
    start: date
    end: date  # inclusive
    channel: str | None = None
    group_id: int | None = None
    agent_id: int | None = None
    tag: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "group_id": self.group_id, "agent_id": self.agent_id, "tag": self.tag}


def period(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    """The inclusive days asked for; default: the last 30 days up to ``today``."""
    if end is None:
        end = today if start is None else max(today, start)
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise InvalidInput("from must not be after to", code="invalid_period")
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidInput(f"a report covers at most {MAX_DAYS} days", code="invalid_period")
    return start, end


def metrics(v: Sequence[int]) -> dict[str, Any]:
    """The metrics object of a row of summed counters (docs/reports.md)."""
    def get(name: str) -> int:
        return int(v[INDEX[name]])

    def timed(name: str) -> dict[str, Any]:
        n = get(f"{name}_count")
        return {"count": n, "mean": get(f"{name}_ms") / n / 1000 if n else None,
                "mean_business": get(f"{name}_bms") / n / 1000 if n else None}
    solved, reopened = get("solved"), get("reopened")
    handled = get("handle_count")
    shares = [get(f"{s}_ms") for s in STATUSES]
    whole = sum(shares)
    votes = [get(f"csat_{n}") for n in range(1, 6)]
    rated = sum(votes)
    return {
        "received": get("received"), "assigned": get("assigned"), "solved": solved,
        "transferred": get("transferred"), "reopened": reopened,
        "reopen_rate": reopened / solved if solved else None,
        "first_response": timed("first_response"), "next_response": timed("next_response"),
        "resolution": timed("resolution"),
        "handle": {"count": handled, "total": get("handle_ms") / 1000,
                   "mean": get("handle_ms") / handled / 1000 if handled else None},
        "status_share": {s: (ms / whole if whole else 0.0) for s, ms in zip(STATUSES, shares, strict=True)},
        "csat": {"count": rated, "mean": sum(n * c for n, c in enumerate(votes, 1)) / rated if rated else None,
                 "satisfied": (votes[3] + votes[4]) / rated if rated else None, "distribution": votes},
        "sla_breaches": {t: get(f"sla_{t}") for t in SLA_TARGETS},
    }


def _months(start: date, end: date) -> tuple[date, date] | None:
    """The first days of the first and last whole months in start..end, if there are any."""
    first = start if start.day == 1 else (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    after = end + timedelta(days=1)
    last = (after if after.day == 1 else end.replace(day=1)) - timedelta(days=1)
    return (first, last.replace(day=1)) if first <= last else None


def _spans(f: Filters, monthly: bool) -> list[tuple[int, date, date]]:
    """The period as (grain level, first day, last day): whole months from the monthly rows, the
    days around them from the daily ones."""
    months = _months(f.start, f.end) if monthly else None
    if months is None:
        return [(0, f.start, f.end)]
    first, last = months
    out = [(MONTHLY, first, last)]
    if f.start < first:
        out.append((0, f.start, first - timedelta(days=1)))
    after_last = (last.replace(day=28) + timedelta(days=4)).replace(day=1)
    if after_last <= f.end:
        out.append((0, after_last, f.end))
    return out


async def _sums(session: AsyncSession, tenant_id: int, f: Filters, by: str | None, columns: Sequence[str], *,
                monthly: bool = True) -> dict[Any, list[int]]:
    """Sums of ``columns`` over the period, the filters applied, per value of ``by`` (a dimension, or
    "day"), from the grain that keeps exactly the filtered dimensions and ``by``: every other one
    is at its neutral value, so the filters are a prefix of the rollups' key. ``by="tag"`` leaves
    out the every-ticket rows."""
    wanted = {"tag": f.tag or None, "channel": f.channel, "group_id": f.group_id, "agent_id": f.agent_id}
    grain = sum(BIT[d] for d in DIMS if wanted[d] is not None or d == by)
    where = [_T.tenant_id == tenant_id]
    for d, neutral in zip(DIMS, NEUTRAL, strict=True):
        if wanted[d] is not None:
            where.append(_T[d] == wanted[d])
        elif d != by:
            where.append(_T[d] == neutral)
        elif d == "tag":
            where.append(_T.tag != "")
    sums = [func.coalesce(func.sum(_T[n]), 0) for n in columns]
    key = _T[by] if by is not None else None
    out: dict[Any, list[int]] = {}
    for level, lo, hi in _spans(f, monthly and by != "day"):
        stmt = select(*([key] if key is not None else []), *sums).where(
            _T.grain == grain + level, *where, _T.day >= lo, _T.day <= hi)
        if key is not None:
            stmt = stmt.group_by(key)
        for row in await session.execute(stmt):
            k, values = (row[0], row[1:]) if key is not None else (None, row)
            acc = out.setdefault(k, [0] * len(columns))
            for i, v in enumerate(values):
                acc[i] += int(v)
    return out


def _total(found: Sequence[Sequence[int]]) -> list[int]:
    out = [0] * WIDTH
    for row in found:
        for i, value in enumerate(row):
            out[i] += int(value)
    return out


def _period(f: Filters, clock: Clock) -> dict[str, Any]:
    return {"from": f.start.isoformat(), "to": f.end.isoformat(), "timezone": clock.zone.key}


async def _by(session: AsyncSession, tenant_id: int, f: Filters, column: str) -> list[tuple[int, list[int]]]:
    found = await _sums(session, tenant_id, f, column, FIELDS)
    return sorted((int(key), values) for key, values in found.items())


async def agents_report(session: AsyncSession, tenant_id: int, f: Filters, clock: Clock) -> dict[str, Any]:
    by_agent = await _by(session, tenant_id, f, "agent_id")
    names = dict((await session.execute(select(Agent.id, Agent.name).where(Agent.tenant_id == tenant_id))).all())
    rows = [{"agent_id": agent_id, "agent_name": names.get(agent_id, f"#{agent_id}"), "metrics": metrics(v)}
            for agent_id, v in by_agent if agent_id != 0]
    return {"period": _period(f, clock), "filters": f.as_dict(),
            "totals": metrics(_total([v for _, v in by_agent])), "rows": rows}


async def groups_report(session: AsyncSession, tenant_id: int, f: Filters, clock: Clock) -> dict[str, Any]:
    by_group = await _by(session, tenant_id, f, "group_id")
    names = dict((await session.execute(select(Group.id, Group.name).where(Group.tenant_id == tenant_id))).all())
    rows = [{"group_id": group_id or None, "group_name": names.get(group_id, f"#{group_id}") if group_id else None,
             "metrics": metrics(v)} for group_id, v in by_group]
    return {"period": _period(f, clock), "filters": f.as_dict(),
            "totals": metrics(_total([v for _, v in by_group])), "rows": rows}


def _ranked(found: dict[Any, list[int]]) -> list[tuple[str, int]]:
    return sorted(((str(k), v[0]) for k, v in found.items() if v[0]), key=lambda kv: (-kv[1], kv[0]))


async def demand_report(session: AsyncSession, tenant_id: int, f: Filters, clock: Clock) -> dict[str, Any]:
    per_day = {k: v[0] for k, v in (await _sums(session, tenant_id, f, "day", ("received",))).items()}
    hours = (await _sums(session, tenant_id, f, None, [f"h{h:02d}" for h in range(24)])).get(None, [0] * 24)
    by_channel = _ranked(await _sums(session, tenant_id, f, "channel", ("received",)))
    by_tag = _ranked(await _sums(session, tenant_id, f, "tag", ("received",)))
    by_day, by_weekday = [], [0] * 7
    day = f.start
    while day <= f.end:
        n = int(per_day.get(day, 0))
        by_day.append({"date": day.isoformat(), "received": n})
        by_weekday[day.weekday()] += n
        day += timedelta(days=1)
    return {"period": _period(f, clock), "filters": f.as_dict(), "received": sum(d["received"] for d in by_day),
            "by_day": by_day, "by_hour": hours, "by_weekday": by_weekday,
            "by_channel": [{"channel": c, "received": n} for c, n in by_channel],
            "by_tag": [{"tag": t, "received": n} for t, n in by_tag]}


def today_in(clock: Clock, now: datetime) -> date:
    return clock.day(now)


# --- the same rows as a workbook (admin_api.downloads) ----------------------------------------------
def _flat(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in m.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                out[f"{key}.{sub}"] = inner
        elif isinstance(value, list):
            for i, inner in enumerate(value, 1):
                out[f"{key}.{i}"] = inner
        else:
            out[key] = value
    for i, n in enumerate(out.pop("csat.distribution", []) or [], 1):
        out[f"csat.{i}"] = n
    return out


def table(kind: str, report: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """A report's rows as one flat table: the headings, and a dict per row."""
    if kind == "demand":
        out = [{"dimension": "total", "value": "", "received": report["received"]}]
        out += [{"dimension": "day", "value": d["date"], "received": d["received"]} for d in report["by_day"]]
        out += [{"dimension": "hour", "value": f"{h:02d}", "received": n} for h, n in enumerate(report["by_hour"])]
        out += [{"dimension": "weekday", "value": w, "received": n}
                for w, n in zip(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), report["by_weekday"], strict=True)]
        out += [{"dimension": "channel", "value": c["channel"], "received": c["received"]}
                for c in report["by_channel"]]
        out += [{"dimension": "tag", "value": t["tag"], "received": t["received"]} for t in report["by_tag"]]
        return ["dimension", "value", "received"], out
    ident, name = ("agent_id", "agent_name") if kind == "agents" else ("group_id", "group_name")
    flat = [{ident: r[ident], name: r[name], **_flat(r["metrics"])} for r in report["rows"]]
    flat.append({ident: None, name: "total", **_flat(report["totals"])})
    return [ident, name, *_flat(report["totals"]).keys()], flat
