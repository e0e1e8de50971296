"""Full-text search's text side: one tokenizer for both databases, the search documents the write
paths add in their own transactions, and queries in each database's syntax.

**Tokens.** Text is put in Unicode NFC, then each character in NFKC and case-folded (full-width
letters and digits become ASCII, a full-width E and e are one letter). Then:

- a run of CJK characters (Han, kana, Hangul) becomes its overlapping bigrams followed by its last
  character on its own: ``退款申请`` → ``退款 款申 申请 请``. The trailing character makes every
  character the start of some token, so a one-character query (``款``) is a prefix query that
  finds it wherever it stands;
- any other run of letters and digits is one word (at most :data:`MAX_WORD` characters);
- everything else (spaces, punctuation, emoji) separates tokens.

Chinese has no spaces, and a dictionary segmenter (jieba) would need its dictionary kept in step
with every query and every stored text; bigrams need nothing and find any substring of two or
more characters as a phrase of consecutive bigrams.

**Queries.** The query is split at white space; each piece is a phrase of its tokens (consecutive
positions), and all pieces must be in one document. A piece that ends in a CJK run leaves out the
run's trailing character (the text may go on where the query stops: ``退款申`` must match
``退款申请``), and a piece that ends in a single CJK character makes it a prefix.

**Storage.** One row of ``search_docs`` per message, and two per ticket: its subject, and its
customer as seen on it (name, e-mail, the external id of the ticket's identity). ``terms`` holds the
tokens: on SQLite, space-separated, indexed by an FTS5 table (``search_fts``, external content,
kept by triggers, the ``ascii`` tokenizer, which splits on the spaces and keeps every non-ASCII
character, so FTS5 sees exactly our tokens); on PostgreSQL, a ``tsvector`` written as its literal
(``'退款':1 '款申':2``, no text-search parser or locale involved) under a GIN index. See
docs/architecture.md, "Search".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.errors import InvalidInput
from core.models import CustomerIdentity, SearchDoc, Ticket, table_of

# Han (with the extensions and compatibility ideographs), kana, Hangul.
_CJK = ("\u1100-\u11ff\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff\u3400-\u4dbf"
        "\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f")
_TOKEN = re.compile(f"([{_CJK}]+)|([^\\W_{_CJK}]+)")
MAX_WORD = 64
# PostgreSQL keeps positions up to 16383 (later ones count as 16383).
_PG_MAX_POSITION = 16383
MAX_QUERY_LENGTH = 200
MAX_QUERY_TOKENS = 32

SUBJECT, MESSAGE, CUSTOMER = "subject", "message", "customer"

_chars: dict[str, str] = {}


def _fold(ch: str) -> str:
    folded = _chars.get(ch)
    if folded is None:
        folded = unicodedata.normalize("NFKC", ch).casefold()
        if len(_chars) < 100_000:
            _chars[ch] = folded
    return folded


def normalize(text: str) -> tuple[str, str, list[int] | None]:
    """``text`` in NFC (what snippets are cut from), the folded text the tokens are read from, and
    where each folded character came from in the NFC text (None: the same place)."""
    if text.isascii():
        return text, text.casefold(), None
    nfc = unicodedata.normalize("NFC", text)
    if unicodedata.is_normalized("NFKC", nfc):
        folded = nfc.casefold()
        if len(folded) == len(nfc):
            return nfc, folded, None
    parts: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(nfc):
        f = ch.casefold() if ch.isascii() else _fold(ch)
        parts.append(f)
        where.extend([i] * len(f))
    return nfc, "".join(parts), where


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    start: int  # in the folded text
    end: int
    cjk: bool
    last_of_run: bool  # a CJK run's trailing character
    solo: bool  # a CJK run of one character


def scan(folded: str) -> Iterator[Token]:
    for m in _TOKEN.finditer(folded):
        run = m.group(1)
        s = m.start()
        if run:
            for i in range(len(run) - 1):
                yield Token(run[i:i + 2], s + i, s + i + 2, True, False, False)
            yield Token(run[-1], m.end() - 1, m.end(), True, True, len(run) == 1)
        else:
            yield Token(m.group(2)[:MAX_WORD], s, m.end(), False, False, False)


def tokens(text: str | None) -> list[str]:
    if not text:
        return []
    return [t.text for t in scan(normalize(text)[1])]


# --- queries ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Phrase:
    tokens: tuple[str, ...]
    prefix: bool  # the last token is a prefix (a single CJK character at the end of a piece)


def parse_query(q: str) -> list[Phrase]:
    """The phrases of a query; 422 ``invalid_query`` when it is too long or has nothing to find."""
    if len(q) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"q is at most {MAX_QUERY_LENGTH} characters", code="invalid_query")
    phrases: list[Phrase] = []
    count = 0
    for piece in normalize(q)[1].split():
        toks = list(scan(piece))
        if not toks:
            continue
        prefix = False
        last = toks[-1]
        if last.cjk and last.last_of_run:
            if last.solo:
                prefix = True
            else:
                toks.pop()
        count += len(toks)
        phrases.append(Phrase(tuple(t.text for t in toks), prefix))
    if not phrases:
        raise InvalidInput("q has no letters, digits or characters to search for", code="invalid_query")
    if count > MAX_QUERY_TOKENS:
        raise InvalidInput("q is too long: search for fewer words", code="invalid_query")
    return phrases


def fts5_query(phrases: list[Phrase]) -> str:
    """An FTS5 MATCH expression: each phrase quoted (tokens are letters and digits only), ANDed."""
    return " AND ".join('"' + " ".join(p.tokens) + '"' + (" *" if p.prefix else "") for p in phrases)


def _lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery(phrases: list[Phrase]) -> str:
    """A tsquery literal: each phrase as lexemes followed by each other (<->), ANDed."""
    parts = []
    for p in phrases:
        lexemes = [_lexeme(t) for t in p.tokens]
        if p.prefix:
            lexemes[-1] += ":*"
        parts.append(" <-> ".join(lexemes) if len(lexemes) > 1 else lexemes[0])
    return " & ".join(f"({part})" for part in parts)


# --- documents -----------------------------------------------------------------------------------------
def terms(toks: list[str], postgres: bool) -> str:
    """What ``search_docs.terms`` stores for these tokens on this database."""
    if not postgres:
        return " ".join(toks)
    return " ".join(f"{_lexeme(t)}:{min(i, _PG_MAX_POSITION)}" for i, t in enumerate(toks, 1))


def customer_text(name: str | None, email: str | None, external_id: str | None) -> str:
    return " ".join(part for part in (name, email, external_id) if part)


class Docs:
    """The search documents one transaction adds or changes, written with one statement each at
    the end (an executemany: no round trip per message)."""

    def __init__(self, tenant_id: int, postgres: bool) -> None:
        self.tenant_id = tenant_id
        self.postgres = postgres
        self.new: list[dict[str, Any]] = []
        # (ticket id, kind) → new terms, for documents that exist.
        self.changed: dict[tuple[int, str], str] = {}

    @classmethod
    async def of(cls, session: AsyncSession | AsyncConnection, tenant_id: int) -> Docs:
        conn = session if isinstance(session, AsyncConnection) else await session.connection()
        return cls(tenant_id, conn.dialect.name == "postgresql")

    def _row(self, ticket_id: int, kind: str, message_id: int | None, text: str | None) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "ticket_id": ticket_id, "kind": kind, "message_id": message_id,
                "terms": terms(tokens(text), self.postgres)}

    def message(self, ticket_id: int, message_id: int, body: str) -> None:
        toks = tokens(body)
        if toks:  # a message of files only, or of emoji, has nothing to find
            self.new.append({"tenant_id": self.tenant_id, "ticket_id": ticket_id, "kind": MESSAGE,
                             "message_id": message_id, "terms": terms(toks, self.postgres)})

    def ticket(self, ticket_id: int, subject: str | None, name: str | None, email: str | None,
               external_id: str | None) -> None:
        """A new ticket: its subject and its customer."""
        self.new.append(self._row(ticket_id, SUBJECT, None, subject))
        self.new.append(self._row(ticket_id, CUSTOMER, None, customer_text(name, email, external_id)))

    def subject_changed(self, ticket_id: int, subject: str | None) -> None:
        self.changed[(ticket_id, SUBJECT)] = terms(tokens(subject), self.postgres)

    def customer_changed(self, ticket_id: int, name: str | None, email: str | None, external_id: str | None) -> None:
        self.changed[(ticket_id, CUSTOMER)] = terms(tokens(customer_text(name, email, external_id)), self.postgres)

    async def customers_changed(self, session: AsyncSession | AsyncConnection,
                                customers: dict[int, tuple[str | None, str | None]]) -> None:
        """Customers whose name or e-mail changed: the customer documents of their tickets, each
        with its ticket's identity (one read; only when a customer changed)."""
        if not customers:
            return
        t, i = table_of(Ticket), table_of(CustomerIdentity)
        rows = await session.execute(
            select(t.c.id, t.c.customer_id, i.c.external_id).outerjoin(i, i.c.id == t.c.identity_id)
            .where(t.c.tenant_id == self.tenant_id, t.c.customer_id.in_(sorted(customers))))
        for ticket_id, customer_id, external_id in rows:
            name, email = customers[customer_id]
            self.customer_changed(ticket_id, name, email, external_id)

    async def write(self, session: AsyncSession | AsyncConnection) -> None:
        table = table_of(SearchDoc)
        if self.new:
            await session.execute(insert(table), self.new)
            self.new = []
        if self.changed:
            stmt = (update(table).where(table.c.tenant_id == self.tenant_id, table.c.ticket_id == bindparam("_t"),
                                        table.c.kind == bindparam("_k")).values(terms=bindparam("terms")))
            await session.execute(stmt, [{"_t": ticket_id, "_k": kind, "terms": value}
                                         for (ticket_id, kind), value in self.changed.items()])
            self.changed = {}


# --- snippets ------------------------------------------------------------------------------------------
SNIPPET_BEFORE = 30
SNIPPET_LENGTH = 160


def _utf16(text: str, index: int) -> int:
    """A position in ``text`` counted in UTF-16 code units (as JavaScript counts string indices)."""
    prefix = text[:index]
    return index + sum(1 for ch in prefix if ord(ch) > 0xFFFF)


def snippet(text: str, phrases: list[Phrase]) -> tuple[dict[str, Any], bool]:
    """The part of ``text`` around its first hit, with every hit in it marked by offsets
    (``[start, end)`` in UTF-16 code units of ``snippet.text``), and whether anything was found."""
    nfc, folded, where = normalize(text)
    toks = list(scan(folded))
    hits: list[tuple[int, int]] = []
    for phrase in phrases:
        n = len(phrase.tokens)
        for i in range(len(toks) - n + 1):
            ok = all(toks[i + k].text == phrase.tokens[k] for k in range(n - 1))
            last = toks[i + n - 1].text
            ok = ok and (last.startswith(phrase.tokens[-1]) if phrase.prefix else last == phrase.tokens[-1])
            if ok:
                start, end = toks[i].start, toks[i + n - 1].end
                if phrase.prefix and toks[i + n - 1].cjk:
                    end = toks[i + n - 1].start + len(phrase.tokens[-1])
                hits.append((start, end))
    if where is not None:
        hits = [(where[s], where[e - 1] + 1) for s, e in hits]
    hits.sort()
    merged: list[tuple[int, int]] = []
    for s, e in hits:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    first = merged[0][0] if merged else 0
    begin = max(0, first - SNIPPET_BEFORE) if len(nfc) > SNIPPET_LENGTH else 0
    if begin and len(nfc) - begin < SNIPPET_LENGTH:
        begin = max(0, len(nfc) - SNIPPET_LENGTH)
    stop = min(len(nfc), begin + SNIPPET_LENGTH)
    cut = nfc[begin:stop]
    marks = [[_utf16(cut, max(s, begin) - begin), _utf16(cut, min(e, stop) - begin)]
             for s, e in merged if s < stop and e > begin]
    return {"text": cut, "highlights": marks, "truncated_before": begin > 0, "truncated_after": stop < len(nfc)}, \
        bool(merged)
