#!/usr/bin/env python3
# ruff: noqa: RUF001  (Chinese punctuation and full-width letters are the point here)
"""Full-text search at scale: GET /api/v1/search's work (core.search.search) over 1,000,000 messages.

Builds one tenant with ``--messages`` messages (default 1,000,000) on ``--messages / 10`` tickets
of ``--messages / 20`` customers, half in Chinese and half in English, made of customer-service
phrases with product names, order numbers, names and e-mail addresses (some terms in most
messages, some in a handful), and their search documents, written in bulk (SQLite: executemany in
large transactions through the FTS5 triggers; PostgreSQL: COPY, then the GIN index built once).
The database is migrated with alembic first, so the schema is the hub's own. A database that
already holds the benchmark's tenant is reused (``--rebuild`` makes it again).

Then it runs a mix of queries (Chinese of 1 to 4 characters, English words and phrases, customer
names and e-mails, order numbers; common and rare) through core.search.search, the function the
route calls, as a supervisor (every ticket) and as an agent (their own and the waiting ones), and
measures each call. As the bare reference of the same run it measures the least a request does
with the database: one ticket read by its id through the same session factory. It also times the
views' counts and a view's first page (core.tickets.view_counts, list_tickets).

Prints ONE JSON object (progress on stderr). Never part of the test run.

    .venv/bin/python bench/search.py                                  # SQLite in /tmp
    .venv/bin/python bench/search.py --database-url postgresql+asyncpg://postgres@127.0.0.1/chsearch_bench
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from webchat_roundtrip import percentiles  # noqa: E402

from core import search, textsearch, tickets  # noqa: E402
from core.auth import Principal  # noqa: E402
from core.db import Database, migrate  # noqa: E402
from core.models import Agent, Message, Tenant, Ticket  # noqa: E402

DOMAIN = "search-bench.example.com"


def log(*args: Any) -> None:
    print("[bench]", *args, file=sys.stderr, flush=True)


# --- the text -------------------------------------------------------------------------------------------
ZH = ["您好，我想咨询一下订单的发货时间", "我的退款申请已经提交三天了还没有处理", "请问可以开发票吗",
      "快递一直没有更新物流信息",
      "收到的商品有破损，需要换货", "优惠券无法使用，提示已过期", "会员积分怎么兑换", "请帮我修改收货地址",
      "客服你好，我要投诉配送员态度不好", "这个产品支持七天无理由退货吗", "付款成功了但是订单显示未支付",
      "麻烦尽快处理，谢谢", "我想取消订单", "尺码不合适可以换吗", "发票抬头写错了需要重开",
      "商品和描述不符",
      "请问什么时候有货", "能不能加急发货", "账户登录不上去，验证码收不到", "价格保护怎么申请"]
ZH_PRODUCTS = ["蓝牙耳机", "电饭煲", "空气净化器", "保温杯", "扫地机器人", "电动牙刷", "羽绒服", "运动鞋",
               "智能手表", "榨汁机"]
ZH_RARE = ["紫砂壶", "无人机", "天文望远镜", "古筝"]
EN = ["Hello, I would like to know when my order will ship", "My refund request has been pending for three days",
      "Can you send me an invoice please", "The tracking number has not updated in a week",
      "The item arrived damaged and I need a replacement", "The coupon code says it has expired",
      "How do I redeem my loyalty points", "Please change my delivery address", "The courier was rude to me",
      "Is this product eligible for a thirty day return", "I paid but the order still shows unpaid",
      "Please handle this as soon as possible, thanks", "I want to cancel my order", "Can I exchange for another size",
      "The billing name on the invoice is wrong", "The product does not match the description",
      "When will this be back in stock", "Could you expedite the shipping", "I cannot log in to my account",
      "How do I apply for the price protection"]
EN_PRODUCTS = ["wireless earbuds", "rice cooker", "air purifier", "travel mug", "robot vacuum", "electric toothbrush",
               "down jacket", "running shoes", "smart watch", "juicer"]
EN_RARE = ["theodolite", "harpsichord", "sextant", "zeppelin"]
SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭"]
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛", "明", "超", "秀英",
         "桂英", "建华"]
FIRST = ["James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Elizabeth", "Olivia",
         "Noah", "Emma", "Liam", "Sophia", "Lucas"]
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson", "Anderson", "Taylor",
        "Thomas", "Moore", "Martin", "Lee", "Walker"]


def zh_text(rng: random.Random) -> str:
    parts = rng.sample(ZH, rng.randint(1, 3))
    if rng.random() < 0.5:
        parts.insert(rng.randint(0, len(parts)), f"我买的{rng.choice(ZH_PRODUCTS)}")
    if rng.random() < 0.3:
        parts.append(f"订单号 {rng.randint(10_000_000, 99_999_999)}")
    if rng.random() < 0.0005:
        parts.append(f"另外想问一下{rng.choice(ZH_RARE)}")
    return "，".join(parts) + rng.choice(["。", "！", "？", ""])


def en_text(rng: random.Random) -> str:
    parts = rng.sample(EN, rng.randint(1, 3))
    if rng.random() < 0.5:
        parts.insert(rng.randint(0, len(parts)), f"I bought the {rng.choice(EN_PRODUCTS)}")
    if rng.random() < 0.3:
        parts.append(f"order number {rng.randint(10_000_000, 99_999_999)}")
    if rng.random() < 0.0005:
        parts.append(f"also a question about the {rng.choice(EN_RARE)}")
    return ". ".join(parts) + "."


# --- bulk writing -----------------------------------------------------------------------------------------
class Writer:
    """Rows into one table, by the fastest path each database has."""

    def __init__(self, target: Any, postgres: bool) -> None:
        self.target = target
        self.postgres = postgres

    async def write(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.postgres:
            buf = io.StringIO()
            csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC).writerows(rows)
            data = buf.getvalue().encode()
            # QUOTE_NONNUMERIC writes None as "": read back as NULL (no column here holds "").
            await self.target.copy_to_table(table, source=io.BytesIO(data), columns=columns, format="csv",
                                            force_null=columns)
        else:
            marks = ", ".join("?" for _ in columns)
            self.target.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def when(t: datetime, postgres: bool) -> str:
    return t.isoformat() if postgres else t.strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class World:
    tenant_id: int
    supervisor: Principal
    agent: Principal
    messages: int
    tickets: int


async def build(db: Database, n_messages: int, seed: int) -> World:
    postgres = not db.is_sqlite
    rng = random.Random(seed)
    n_tickets = max(1, n_messages // 10)
    n_customers = max(1, n_messages // 20)
    async with db.session() as session:
        tenant = Tenant(name="Search bench", domain=DOMAIN)
        session.add(tenant)
        await session.flush()
        boss = Agent(tenant_id=tenant.id, email=f"boss@{DOMAIN}", name="Boss", password_hash="x", role="supervisor")
        agents = [Agent(tenant_id=tenant.id, email=f"agent{i}@{DOMAIN}", name=f"Agent {i}", password_hash="x")
                  for i in range(20)]
        session.add_all([boss, *agents])
        await session.flush()
        tenant_id, boss_id, agent_ids = tenant.id, boss.id, [a.id for a in agents]
    log(f"building {n_messages} messages on {n_tickets} tickets of {n_customers} customers")
    url = make_url(db.url)
    if postgres:
        import asyncpg

        target: Any = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username,
                                            password=url.password, database=url.database)
        await target.execute("DROP INDEX IF EXISTS ix_search_docs_terms")
    else:
        target = sqlite3.connect(str(url.database), isolation_level=None)
        target.execute("PRAGMA synchronous=OFF")
        target.execute("BEGIN")
    w = Writer(target, postgres)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    customers: list[tuple[str, str | None, str, bool]] = []  # name, email, external id, chinese
    for c in range(n_customers):
        zh = c % 2 == 0
        if zh:
            name = rng.choice(SURNAMES) + rng.choice(GIVEN)
            email = f"user{c}@example.cn" if rng.random() < 0.3 else None
        else:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            name = f"{first} {last}"
            email = f"{first.lower()}.{last.lower()}{c}@example.com"
        customers.append((name, email, f"visitor-{c:08d}", zh))
    await w.write("customers", ["id", "tenant_id", "name", "email", "attributes", "tags", "created_at"],
                  [(c + 1, tenant_id, name, email, "{}", "[]", when(start, postgres))
                   for c, (name, email, _, _) in enumerate(customers)])
    await w.write("customer_identities", ["id", "tenant_id", "customer_id", "channel", "external_id", "created_at"],
                  [(c + 1, tenant_id, c + 1, "webchat", ext, when(start, postgres))
                   for c, (_, _, ext, _) in enumerate(customers)])
    span = timedelta(days=365) / n_tickets
    message_id = doc_id = 0
    t_rows: list[tuple[Any, ...]] = []
    m_rows: list[tuple[Any, ...]] = []
    d_rows: list[tuple[Any, ...]] = []
    begun = time.monotonic()
    statuses = ["closed"] * 6 + ["solved"] * 2 + ["open", "pending"]
    per_ticket = n_messages // n_tickets
    for t in range(n_tickets):
        ticket_id = t + 1
        c = rng.randrange(n_customers)
        name, email, ext, zh = customers[c]
        opened = start + span * t
        first = zh_text(rng) if zh else en_text(rng)
        subject = first.splitlines()[0][:80]
        status = statuses[rng.randrange(len(statuses))] if t < n_tickets - 200 else rng.choice(["new", "open"])
        assignee = None if status == "new" else rng.choice(agent_ids)
        routing = "queued" if assignee is None else ("idle" if status in ("solved", "closed") else "assigned")
        count = per_ticket + (1 if t < n_messages - per_ticket * n_tickets else 0)
        ended = opened + timedelta(minutes=2 * count)
        t_rows.append((ticket_id, tenant_id, c + 1, c + 1, "webchat", subject, status, "normal", 1, "[]", "{}", routing,
                       assignee, when(opened, postgres), when(ended, postgres), when(ended, postgres), 0))
        for kind, value in ((textsearch.SUBJECT, subject),
                            (textsearch.CUSTOMER, textsearch.customer_text(name, email, ext))):
            doc_id += 1
            d_rows.append((doc_id, tenant_id, ticket_id, kind, None,
                           textsearch.terms(textsearch.tokens(value), postgres)))
        for k in range(count):
            message_id += 1
            inbound = k % 2 == 0
            body = first if k == 0 else (zh_text(rng) if zh else en_text(rng))
            m_rows.append((message_id, tenant_id, ticket_id, "webchat", "inbound" if inbound else "outbound",
                           None if inbound else assignee, body, "[]", f"m{message_id}" if inbound else None,
                           when(opened + timedelta(minutes=2 * k), postgres)))
            doc_id += 1
            d_rows.append((doc_id, tenant_id, ticket_id, textsearch.MESSAGE, message_id,
                           textsearch.terms(textsearch.tokens(body), postgres)))
        if len(m_rows) >= 50_000 or t == n_tickets - 1:
            await w.write("tickets", ["id", "tenant_id", "customer_id", "identity_id", "channel", "subject", "status",
                                      "priority", "priority_rank", "tags", "required_skills", "routing_state",
                                      "assignee_id", "created_at", "updated_at", "last_message_at", "reopen_count"],
                          t_rows)
            await w.write("messages", ["id", "tenant_id", "ticket_id", "channel", "direction", "author_agent_id",
                                       "body", "attachments", "channel_message_id", "created_at"], m_rows)
            await w.write("search_docs", ["id", "tenant_id", "ticket_id", "kind", "message_id", "terms"], d_rows)
            t_rows, m_rows, d_rows = [], [], []
            if not postgres:
                target.execute("COMMIT")
                target.execute("BEGIN")
            log(f"  {message_id} messages ({time.monotonic() - begun:.0f} s)")
    if postgres:
        for table, column in (("customers", "id"), ("customer_identities", "id"), ("tickets", "id"),
                              ("messages", "id"), ("search_docs", "id")):
            await target.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                                 f"(SELECT max({column}) FROM {table}))")
        log("building the GIN index")
        await target.execute("SET maintenance_work_mem = '512MB'")
        await target.execute("CREATE INDEX ix_search_docs_terms ON search_docs USING gin (terms)")
        await target.execute("VACUUM ANALYZE")
        await target.close()
    else:
        target.execute("COMMIT")
        log("optimizing the FTS5 index")
        target.execute("INSERT INTO search_fts(search_fts) VALUES ('optimize')")
        target.execute("ANALYZE")
        target.close()
    log(f"built in {time.monotonic() - begun:.0f} s")
    return World(tenant_id, Principal(tenant_id, boss_id, "supervisor", "Boss"),
                 Principal(tenant_id, agent_ids[0], "agent", "Agent 0"), message_id, n_tickets)


async def existing(db: Database) -> World | None:
    async with db.read() as session:
        tenant = (await session.execute(select(Tenant).where(Tenant.domain == DOMAIN))).scalar_one_or_none()
        if tenant is None:
            return None
        boss = (await session.execute(select(Agent).where(Agent.tenant_id == tenant.id,
                                                          Agent.role == "supervisor"))).scalar_one()
        agent = (await session.execute(select(Agent).where(Agent.tenant_id == tenant.id, Agent.role == "agent")
                                       .order_by(Agent.id).limit(1))).scalar_one()
        messages = (await session.execute(select(func.count(Message.id)))).scalar_one()
        n_tickets = (await session.execute(select(func.count(Ticket.id)))).scalar_one()
    return World(tenant.id, Principal(tenant.id, boss.id, "supervisor", boss.name),
                 Principal(tenant.id, agent.id, "agent", agent.name), int(messages), int(n_tickets))


# --- the queries ------------------------------------------------------------------------------------------
QUERIES = {
    "zh_common_2": ["退款", "订单", "发货", "发票", "物流"],
    "zh_3_4": ["退款申请", "物流信息", "优惠券", "收货地址", "七天无理由"],
    "zh_1": ["退", "票", "货"],
    "zh_rare": ["紫砂壶", "无人机", "天文望远镜", "古筝"],
    "en_common": ["refund", "order", "invoice", "shipping"],
    "en_phrase": ["tracking number", "loyalty points", "price protection", "rice cooker"],
    "en_rare": ["theodolite", "harpsichord", "sextant", "zeppelin"],
    "names": ["王芳", "李秀英", "Olivia Walker", "Johnson", "张伟"],
    "emails": ["olivia.walker", "example.cn"],
    "nothing": ["xylophonist", "麒麟座"],
}


class Hubish:
    """What core.search and core.tickets use of a hub: its database."""

    def __init__(self, db: Database) -> None:
        self.db = db


def timed_queries(rounds: int, rng: random.Random) -> Iterator[tuple[str, str]]:
    mix = [(kind, q) for kind, qs in QUERIES.items() for q in qs]
    for _ in range(rounds):
        rng.shuffle(mix)
        yield from mix


async def measure(db: Database, world: World, rounds: int, seed: int) -> dict[str, Any]:
    hub: Any = Hubish(db)
    rng = random.Random(seed)
    # Warm the caches (pages, prepared statements) as a running hub's are.
    for _, q in timed_queries(1, rng):
        await search.search(hub, world.supervisor, q)
    by_kind: dict[str, list[float]] = {}
    everything: list[float] = []
    as_agent: list[float] = []
    pages: list[float] = []
    found: dict[str, int] = {}
    for kind, q in timed_queries(rounds, rng):
        who = world.agent if rng.random() < 0.25 else world.supervisor
        began = time.perf_counter()
        result = await search.search(hub, who, q)
        took = time.perf_counter() - began
        (as_agent if who is world.agent else everything).append(took)
        by_kind.setdefault(kind, []).append(took)
        found[q] = len(result["results"])
        if result["next_before"] is not None and rng.random() < 0.2:
            began = time.perf_counter()
            await search.search(hub, who, q, before=result["next_before"])
            pages.append(time.perf_counter() - began)
    # The bare reference: one ticket by its id, through the same read sessions.
    reference: list[float] = []
    for _ in range(500):
        ticket_id = rng.randint(1, world.tickets)
        began = time.perf_counter()
        async with db.read(world.tenant_id) as session:
            (await session.execute(select(Ticket).where(Ticket.id == ticket_id))).scalar_one_or_none()
        reference.append(time.perf_counter() - began)
    counts: list[float] = []
    views: list[float] = []
    for who in [world.supervisor, world.agent] * 20:
        began = time.perf_counter()
        await tickets.view_counts(hub, who)
        counts.append(time.perf_counter() - began)
        began = time.perf_counter()
        await tickets.list_tickets(hub, who, view="solved")
        views.append(time.perf_counter() - began)
    all_searches = everything + as_agent
    overall = percentiles(all_searches)
    ref = percentiles(reference)
    return {
        "searches": len(all_searches), "search": overall, "search_as_supervisor": percentiles(everything),
        "search_as_agent": percentiles(as_agent), "next_page": percentiles(pages),
        "by_kind": {kind: percentiles(values) for kind, values in by_kind.items()},
        "results_per_query": found,
        "reference_ticket_by_id": ref,
        "ratio_p50_to_reference_p50": round((overall["p50_ms"] or 0) / (ref["p50_ms"] or 1), 1),
        "ratio_p95_to_reference_p50": round((overall["p95_ms"] or 0) / (ref["p50_ms"] or 1), 1),
        "view_counts": percentiles(counts), "view_solved_first_page": percentiles(views),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = args.database_url or f"sqlite+aiosqlite:////tmp/channelhub-search-bench-{args.messages}.db"
    db = Database(url)
    try:
        await migrate(db)
        world = None if args.rebuild else await existing(db)
        if world is not None and world.messages != args.messages:
            raise SystemExit(f"{url} holds {world.messages} messages; use --rebuild or another database")
        if world is None:
            if args.rebuild:
                raise SystemExit("--rebuild: give a fresh database (drop it first)")
            world = await build(db, args.messages, args.seed)
        async with db.read() as session:
            docs = (await session.execute(text("SELECT count(*) FROM search_docs"))).scalar_one()
        log(f"measuring: {world.messages} messages, {docs} search documents")
        figures = await measure(db, world, args.rounds, args.seed)
    finally:
        await db.dispose()
    return {"benchmark": "search", "database": "sqlite" if db.is_sqlite else "postgresql",
            "messages": world.messages, "tickets": world.tickets, "search_documents": int(docs),
            "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2), **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="the database (default: SQLite in /tmp, kept for reuse); "
                        "postgresql+asyncpg://... for PostgreSQL (an existing, empty or earlier benchmark's, database)")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10, help="times the query mix runs (default 10)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--rebuild", action="store_true", help="refuse a database that is not empty")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
