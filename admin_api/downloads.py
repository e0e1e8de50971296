"""The audit and login logs as downloads: CSV or .xlsx, of whatever the filters match.

CSV is streamed as it is read (a batch of rows per short read transaction, core.audit.rows), UTF-8
with a byte-order mark so that Excel opens Chinese names right. The .xlsx is written by xlsxwriter
in ``constant_memory`` mode (a row at a time, to a temporary file, in a thread), then streamed from
that file.

Cells are formula-safe: a spreadsheet would run a text starting with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return as a formula (an agent's name, a target id, a user agent are anyone's
text). In CSV such a value is written with a leading ``'``; in .xlsx every text is written with
``write_string``, which a spreadsheet never evaluates.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import queue
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import xlsxwriter
from aiohttp import web

FORMATS = ("csv", "xlsx")
Format = Literal["csv", "xlsx"]
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8",
                 "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
MEDIA_TYPES = "text/csv, application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
_CHUNK = 64 * 1024


def safe_text(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    return "'" + value if value.startswith(_DANGEROUS) else value


Column = tuple[str, Callable[[dict[str, Any]], Any]]


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(
        ["" if v is None else safe_text(v) if isinstance(v, str) else v for v in values])
    return out.getvalue()


def _headers(name: str, fmt: str) -> dict[str, str]:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return {"Content-Type": CONTENT_TYPES[fmt],
            "Content-Disposition": f'attachment; filename="{name}-{stamp}.{fmt}"',
            "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}


async def respond(request: web.Request, fmt: str, name: str, columns: list[Column],
                  batches: AsyncIterator[list[dict[str, Any]]]) -> web.StreamResponse:
    """Stream ``batches`` (dicts) as a CSV or .xlsx download named ``name``, one column per
    ``columns`` entry (a heading and how to get its value from a row)."""
    if fmt == "csv":
        response = web.StreamResponse(headers=_headers(name, fmt))
        await response.prepare(request)
        await response.write(("\ufeff" + _csv_line([c[0] for c in columns])).encode("utf-8"))
        async for batch in batches:
            text = "".join(_csv_line([get(row) for _, get in columns]) for row in batch)
            await response.write(text.encode("utf-8"))
        await response.write_eof()
        return response
    return await _xlsx(request, name, columns, batches)


def _write_xlsx(path: str, name: str, columns: list[Column], rows: queue.Queue[list[dict[str, Any]] | None]) -> None:
    workbook = xlsxwriter.Workbook(path, {"constant_memory": True, "strings_to_formulas": False,
                                          "strings_to_urls": False, "strings_to_numbers": False})
    try:
        sheet = workbook.add_worksheet(name[:31])
        bold = workbook.add_format({"bold": True})
        for col, (heading, _) in enumerate(columns):
            sheet.write_string(0, col, heading, bold)
        r = 1
        while (batch := rows.get()) is not None:
            for row in batch:
                for col, (_, get) in enumerate(columns):
                    value = get(row)
                    if value is None:
                        continue
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        sheet.write_string(r, col, str(value))
                    else:
                        sheet.write_number(r, col, value)
                r += 1
    finally:
        workbook.close()


async def _xlsx(request: web.Request, name: str, columns: list[Column],
                batches: AsyncIterator[list[dict[str, Any]]]) -> web.StreamResponse:
    fd, path = tempfile.mkstemp(prefix="channelhub-export-", suffix=".xlsx")
    os.close(fd)
    try:
        # The writer runs in a thread (xlsxwriter is blocking), fed batch by batch as they are read
        # (unbounded: it writes faster than the database reads, and a failed writer must not block us).
        handoff: queue.Queue[list[dict[str, Any]] | None] = queue.Queue()
        writer = asyncio.create_task(asyncio.to_thread(_write_xlsx, path, name, columns, handoff))
        try:
            async for batch in batches:
                handoff.put(batch)
        finally:
            handoff.put(None)
            await writer
        response = web.StreamResponse(headers=_headers(name, "xlsx"))
        response.content_length = await asyncio.to_thread(os.path.getsize, path)
        await response.prepare(request)
        with open(path, "rb") as f:  # noqa: ASYNC230 - read a chunk at a time, off the loop below
            while chunk := await asyncio.to_thread(f.read, _CHUNK):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        os.unlink(path)
