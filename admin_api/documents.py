"""Billing documents as files: a statement or an invoice (core.statements) as PDF or .xlsx.

- **PDF** with reportlab. Text is set in the CID font ``STSong-Light`` (Adobe's standard
  Simplified Chinese font, with Latin letters and digits too), which PDF readers supply
  themselves: nothing is embedded, a document is a few kilobytes, and a tenant's Chinese name
  (上海某某科技有限公司) shows without a font file in the repository. Everything from the
  database goes into the document as text, escaped: reportlab's paragraphs read markup.
- **.xlsx** with xlsxwriter. Amounts are numbers in major units with the currency's number
  format (two decimals for CNY, none for JPY), written from exact decimals, and each has a column
  of the integer minor units beside it, the exact figures (a spreadsheet holds doubles: past
  2^53 minor units that column is written as text rather than rounded). Text is always written as
  text, never as a formula, whatever it begins with.

Rendering is CPU work of milliseconds to two seconds or so (a statement has at most
core.statements.MAX_STATEMENT_LINES lines): the route runs it in a thread (:func:`render`).
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Literal
from xml.sax.saxutils import escape

import xlsxwriter
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from core.statements import Invoice, Party, Statement, format_money, minor_digits, to_decimal

Format = Literal["pdf", "xlsx"]
FORMATS: tuple[str, ...] = ("json", "pdf", "xlsx")
CONTENT_TYPES = {
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(FONT))
# reportlab keeps module-level state (font and width caches filled lazily): one document at a time.
_PDF_LOCK = threading.Lock()
# Integers a spreadsheet's doubles hold exactly.
_EXACT = 2**53

_KIND_NAMES = {"top_up": "Top-up", "charge": "Charge", "credit": "Credit", "refund": "Refund",
               "compensation": "Compensation"}


def kind_name(kind: str) -> str:
    return _KIND_NAMES.get(kind, kind)


async def render(document: Statement | Invoice, fmt: Format) -> bytes:
    """The document as ``fmt``, built in a worker thread."""
    if isinstance(document, Statement):
        return await asyncio.to_thread(statement_pdf if fmt == "pdf" else statement_xlsx, document)
    return await asyncio.to_thread(invoice_pdf if fmt == "pdf" else invoice_xlsx, document)


# -- PDF -------------------------------------------------------------------------------------------

_BASE = ParagraphStyle("base", fontName=FONT, fontSize=9, leading=12)
_SMALL = ParagraphStyle("small", parent=_BASE, fontSize=8, leading=10, textColor=colors.HexColor("#555555"))
_TITLE = ParagraphStyle("title", parent=_BASE, fontSize=18, leading=24, spaceAfter=4)
_HEADING = ParagraphStyle("heading", parent=_BASE, fontSize=11, leading=15, spaceBefore=8, spaceAfter=4)
_RIGHT = ParagraphStyle("right", parent=_BASE, alignment=TA_RIGHT)
_GRID = TableStyle([
    ("FONT", (0, 0), (-1, -1), FONT, 9),
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
    ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.HexColor("#BBBBBB")),
    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#EEEEEE")),
])
_PLAIN = TableStyle([("FONT", (0, 0), (-1, -1), FONT, 9), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                     ("LEFTPADDING", (0, 0), (-1, -1), 0)])


def _p(text: str, style: ParagraphStyle = _BASE) -> Paragraph:
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


def _last_day(end: date) -> str:
    """The last day of a period that ends before ``end``."""
    return (end - timedelta(days=1)).isoformat()


def _money(minor: int, currency: str) -> str:
    return format_money(minor, currency, grouping=True)


def _party(label: str, party: Party) -> Paragraph:
    lines = [party.name, party.address, party.domain, f"Tax id: {party.tax_id}" if party.tax_id else ""]
    return _p(label + "\n" + "\n".join(line for line in lines if line))


def _build_pdf(title: str, story: list[Any], footer: str) -> bytes:
    buffer = io.BytesIO()

    def on_page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7)
        canvas.drawString(18 * mm, 10 * mm, footer)
        canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, f"Page {doc.page}")
        canvas.restoreState()

    doc = SimpleDocTemplate(buffer, pagesize=A4, title=title, author="channelhub", leftMargin=18 * mm,
                            rightMargin=18 * mm, topMargin=18 * mm, bottomMargin=18 * mm)
    with _PDF_LOCK:
        doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buffer.getvalue()


def statement_pdf(st: Statement) -> bytes:
    c = st.currency
    contract = st.contract
    story: list[Any] = [
        _p("Statement", _TITLE),
        _p(f"{st.start.isoformat()} to {st.last_day.isoformat()} (UTC)", _HEADING),
    ]
    facts = [
        ["Tenant", _p(st.buyer.name)], ["Domain", _p(st.buyer.domain)],
        ["Price per seat-year", f"{_money(contract.price_per_seat_year, c)} {c}"],
        ["Current term", f"{contract.term_start.isoformat()} to {_last_day(contract.term_end)}"],
        ["Seats paid / in use", f"{contract.seats_paid} / {contract.seats_in_use}"],
        ["Opening balance", f"{_money(st.opening_balance, c)} {c}"],
        ["Closing balance", f"{_money(st.closing_balance, c)} {c}"],
    ]
    story.append(Table(facts, colWidths=[45 * mm, None], style=_PLAIN, hAlign="LEFT"))
    story.append(_p("Entries", _HEADING))
    rows: list[list[Any]] = [["Date", "Kind", "Description", "Seats", "Days", f"Amount ({c})", f"Balance ({c})"]]
    rows.append([st.start.isoformat(), "", _p("Opening balance"), "", "", "", _p(_money(st.opening_balance, c),
                                                                                _RIGHT)])
    for line in st.lines:
        description = line.description + (f"\nInvoice {line.invoice}" if line.invoice else "")
        rows.append([line.at.date().isoformat(), kind_name(line.kind), _p(description),
                     str(line.seats or ""), str(line.days or ""), _p(_money(line.amount, c), _RIGHT),
                     _p(_money(line.balance_after, c), _RIGHT)])
    rows.append([st.last_day.isoformat(), "", _p("Closing balance"), "", "", "",
                 _p(_money(st.closing_balance, c), _RIGHT)])
    widths = [20 * mm, 22 * mm, None, 12 * mm, 12 * mm, 28 * mm, 28 * mm]
    table = Table(rows, colWidths=widths, repeatRows=1, style=_GRID)
    table.setStyle(TableStyle([("ALIGN", (3, 0), (-1, -1), "RIGHT")]))
    story.append(table)
    story.append(_p("Totals by kind", _HEADING))
    totals = [["Kind", f"Total ({c})"], *[[kind_name(kind), _p(_money(total, c), _RIGHT)]
                                          for kind, total in st.totals.items()],
              ["Opening + entries = closing", _p(f"{_money(st.opening_balance, c)} + "
                                                 f"{_money(sum(st.totals.values()), c)} = "
                                                 f"{_money(st.closing_balance, c)}", _RIGHT)]]
    story.append(Table(totals, colWidths=[60 * mm, 60 * mm], style=_GRID, hAlign="LEFT"))
    story.append(Spacer(1, 6 * mm))
    story.append(_p(f"Amounts are in {c}, exact to the minor unit. Charges are paid in advance from the prepaid "
                    "balance; credits, refunds and compensation go back to it. Dates are UTC.", _SMALL))
    footer = f"{st.buyer.domain} | statement {st.start.isoformat()} to {st.last_day.isoformat()} | " \
             f"generated {st.generated_at.strftime('%Y-%m-%d %H:%M')} UTC"
    return _build_pdf(f"Statement {st.buyer.name} {st.start.isoformat()}", story, footer)


def invoice_pdf(inv: Invoice) -> bytes:
    c = inv.currency
    story: list[Any] = [_p("Invoice", _TITLE)]
    facts = [["Invoice number", inv.number], ["Issue date", inv.issued_on.isoformat()], ["Currency", c]]
    if inv.service_start and inv.service_end:
        facts.append(["Service period", f"{inv.service_start.isoformat()} to {_last_day(inv.service_end)}"])
    story.append(Table(facts, colWidths=[40 * mm, None], style=_PLAIN, hAlign="LEFT"))
    story.append(Spacer(1, 4 * mm))
    story.append(Table([[_party("Seller", inv.seller), _party("Buyer", inv.buyer)]], colWidths=["50%", "50%"],
                       style=_PLAIN))
    story.append(_p("Lines", _HEADING))
    rows: list[list[Any]] = [["Description", "Seats", "Days", f"Price per seat-year ({c})", f"Amount ({c})"]]
    for line in inv.lines:
        rows.append([_p(line.description), str(line.seats), f"{line.days} / {line.term_days}",
                     _p(_money(line.price_per_seat_year, c), _RIGHT), _p(_money(line.amount, c), _RIGHT)])
    table = Table(rows, colWidths=[None, 14 * mm, 22 * mm, 34 * mm, 30 * mm], repeatRows=1, style=_GRID)
    table.setStyle(TableStyle([("ALIGN", (1, 0), (-1, -1), "RIGHT")]))
    story.append(table)
    story.append(Spacer(1, 4 * mm))
    summary = [
        ["Total", _p(f"{_money(inv.total, c)} {c}", _RIGHT)],
        ["Paid from the prepaid balance", _p(f"{_money(inv.paid_from_balance, c)} {c}", _RIGHT)],
        ["Balance before", _p(f"{_money(inv.balance_before, c)} {c}", _RIGHT)],
        ["Balance after", _p(f"{_money(inv.balance_after, c)} {c}", _RIGHT)],
        ["Amount due", _p(f"{_money(0, c)} {c}", _RIGHT)],
    ]
    story.append(Table(summary, colWidths=[60 * mm, 45 * mm], style=_PLAIN, hAlign="RIGHT"))
    story.append(Spacer(1, 6 * mm))
    story.append(_p("Amount = seats x price per seat-year x days / days in the term, rounded half up to the "
                    "minor unit. Paid in advance from the prepaid balance.", _SMALL))
    footer = f"Invoice {inv.number} | {inv.buyer.domain}"
    return _build_pdf(f"Invoice {inv.number}", story, footer)


# -- .xlsx -----------------------------------------------------------------------------------------


class _Sheet:
    """Writes rows with the formats a billing document needs."""

    def __init__(self, workbook: Any, name: str, currency: str) -> None:
        self.ws = workbook.add_worksheet(name)
        self.currency = currency
        digits = minor_digits(currency)
        self.money = workbook.add_format({"num_format": "#,##0" + ("." + "0" * digits if digits else "")})
        self.integer = workbook.add_format({"num_format": "0"})
        self.date = workbook.add_format({"num_format": "yyyy-mm-dd"})
        self.bold = workbook.add_format({"bold": True})
        self.header = workbook.add_format({"bold": True, "bottom": 1, "bg_color": "#EEEEEE"})

    def cell(self, row: int, col: int, value: Any, kind: str = "") -> None:
        ws = self.ws
        if value is None or value == "":
            ws.write_blank(row, col, None)
        elif kind == "money":
            ws.write_number(row, col, to_decimal(value, self.currency), self.money)
        elif kind == "minor":
            # The exact figure: a number while a double holds it, else its digits as text.
            if abs(value) < _EXACT:
                ws.write_number(row, col, value, self.integer)
            else:
                ws.write_string(row, col, str(value))
        elif isinstance(value, datetime | date):
            ws.write_datetime(row, col, value.replace(tzinfo=None) if isinstance(value, datetime) else value,
                              self.date)
        elif isinstance(value, int):
            ws.write_number(row, col, value)
        else:
            ws.write_string(row, col, str(value), self.bold if kind == "bold" else None)

    def headers(self, row: int, names: list[str]) -> None:
        for col, name in enumerate(names):
            self.ws.write_string(row, col, name, self.header)


def _workbook(fill: Callable[[Any], None]) -> bytes:
    buffer = io.BytesIO()
    # in_memory: documents are small; large exports will use constant_memory with a temporary file.
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False,
                                            "strings_to_urls": False})
    fill(workbook)
    workbook.close()
    return buffer.getvalue()


STATEMENT_COLUMNS = ["Entry", "Date", "Kind", "Description", "Seats", "Days", "Amount", "Balance after",
                     "Amount (minor units)", "Balance after (minor units)", "Invoice"]


def statement_xlsx(st: Statement) -> bytes:
    c = st.currency
    contract = st.contract

    def fill(workbook: Any) -> None:
        s = _Sheet(workbook, "Statement", c)
        rows: list[tuple[str, Any, str]] = [
            ("Tenant", st.buyer.name, ""), ("Domain", st.buyer.domain, ""),
            ("Period from", st.start, ""), ("Period to (last day)", st.last_day, ""),
            ("Currency", c, ""), ("Price per seat-year", contract.price_per_seat_year, "money"),
            ("Term start", contract.term_start, ""), ("Term end (first day after)", contract.term_end, ""),
            ("Seats paid", contract.seats_paid, ""), ("Seats in use", contract.seats_in_use, ""),
            ("Opening balance", st.opening_balance, "money"),
            *((f"Total: {kind_name(kind)}", total, "money") for kind, total in st.totals.items()),
            ("Closing balance", st.closing_balance, "money"),
            ("Generated (UTC)", st.generated_at, ""),
        ]
        s.headers(0, ["", c, "Minor units"])
        for row, (label, value, kind) in enumerate(rows, start=1):
            s.cell(row, 0, label, "bold")
            s.cell(row, 1, value, kind)
            if kind == "money":
                s.cell(row, 2, value, "minor")
        s.ws.set_column(0, 0, 28)
        s.ws.set_column(1, 2, 22)

        e = _Sheet(workbook, "Entries", c)
        e.headers(0, [*STATEMENT_COLUMNS[:6], f"Amount ({c})", f"Balance after ({c})", *STATEMENT_COLUMNS[8:]])
        for row, line in enumerate(st.lines, start=1):
            values: list[tuple[Any, str]] = [
                (line.entry_id, ""), (line.at, ""), (kind_name(line.kind), ""), (line.description, ""),
                (line.seats, ""), (line.days, ""), (line.amount, "money"), (line.balance_after, "money"),
                (line.amount, "minor"), (line.balance_after, "minor"), (line.invoice or "", ""),
            ]
            for col, (value, kind) in enumerate(values):
                e.cell(row, col, value, kind)
        e.ws.freeze_panes(1, 0)
        e.ws.autofilter(0, 0, max(len(st.lines), 1), len(STATEMENT_COLUMNS) - 1)
        e.ws.set_column(1, 1, 12)
        e.ws.set_column(2, 2, 13)
        e.ws.set_column(3, 3, 60)
        e.ws.set_column(6, 9, 18)
        e.ws.set_column(10, 10, 18)

    return _workbook(fill)


def invoice_xlsx(inv: Invoice) -> bytes:
    c = inv.currency

    def fill(workbook: Any) -> None:
        s = _Sheet(workbook, "Invoice", c)
        head: list[tuple[str, Any]] = [
            ("Invoice number", inv.number), ("Issue date", inv.issued_on), ("Currency", c),
            ("Service from", inv.service_start), ("Service to (first day after)", inv.service_end),
            ("Seller", inv.seller.name), ("Seller address", inv.seller.address), ("Seller tax id", inv.seller.tax_id),
            ("Buyer", inv.buyer.name), ("Buyer domain", inv.buyer.domain),
        ]
        for row, (label, value) in enumerate(head):
            s.cell(row, 0, label, "bold")
            s.cell(row, 1, value)
        row = len(head) + 1
        s.headers(row, ["Description", "Seats", "Days", "Days in the term", f"Price per seat-year ({c})",
                        f"Amount ({c})", "Amount (minor units)"])
        for line in inv.lines:
            row += 1
            for col, (value, kind) in enumerate([(line.description, ""), (line.seats, ""), (line.days, ""),
                                                 (line.term_days, ""), (line.price_per_seat_year, "money"),
                                                 (line.amount, "money"), (line.amount, "minor")]):
                s.cell(row, col, value, kind)
        row += 1
        for label, value in (("Total", inv.total), ("Paid from the prepaid balance", inv.paid_from_balance),
                             ("Balance before", inv.balance_before), ("Balance after", inv.balance_after),
                             ("Amount due", 0)):
            row += 1
            s.cell(row, 4, label, "bold")
            s.cell(row, 5, value, "money")
            s.cell(row, 6, value, "minor")
        s.ws.set_column(0, 0, 60)
        s.ws.set_column(1, 3, 10)
        s.ws.set_column(4, 6, 22)

    return _workbook(fill)


def filename(document: Statement | Invoice, fmt: str) -> str:
    """A download's name: ASCII only (domains and invoice numbers are)."""
    if isinstance(document, Statement):
        return f"statement-{document.buyer.domain}-{document.start.isoformat()}-{document.last_day.isoformat()}.{fmt}"
    return f"invoice-{document.number}.{fmt}"
