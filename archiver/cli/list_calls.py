"""`osvi-archiver list`: every listed call once, printed as CSV (the call fields as header, so
it feeds `osvi-archiver run -`) or JSON Lines, streamed."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TextIO

from archiver.osvi.listing import (
    CALL_FIELDS,
    PER_PAGE,
    Filters,
    Pages,
    page_verdict,
    walk,
)
from archiver.osvi.times import Span, api_time

log = logging.getLogger("archiver.osvi.listing")


async def all_calls(
    api: Pages,
    filters: Filters,
    until: datetime | None = None,
    skipped: list[str] | None = None,
    gaps: list[str] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """With no start: page through everything, newest first. Arrivals push calls to later
    pages (repeats, never misses: calls are not deleted), so recent ids are remembered. No
    count from the API is trusted (osvi/listing.py): paging goes on while a page is full or the
    hints say more, and stops at an empty page or one with no new id; when that page was full,
    the rest of the listing cannot be reached, and `gaps` says so."""
    recent: dict[str, None] = {}
    page, count = 1, 0
    bound = {"end_date": api_time(until)} if until else {}
    while True:
        params = {**filters.params(), **bound, "page": str(page), "per_page": str(PER_PAGE)}
        listed = await api.list_page(params)
        new = [item for item in listed.items if item["call_id"] not in recent]
        bad = [value for value in listed.unusable if f"?{value}" not in recent]
        _tell_unusable(bad, skipped)
        count += len(new)
        for key in [item["call_id"] for item in new] + [f"?{value}" for value in bad]:
            recent[key] = None
            if len(recent) > 10 * PER_PAGE:
                del recent[next(iter(recent))]
        for item in new:
            yield item
        more, problem = page_verdict(listed, page, len(new) + len(bad), count)
        if problem is not None and gaps is not None:
            gaps.append(f"the whole listing after page {page - 1}: {problem}")
        if not more:
            return
        page += 1


async def listed_calls(
    api: Pages,
    filters: Filters,
    span: Span,
    skipped: list[str] | None = None,
    gaps: list[str] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Every listed call once: closed windows when there is a start, else plain paging. The
    unusable call_id values are logged, and added to `skipped`; what could not be listed
    completely is logged, and added to `gaps`."""
    if span.since is None:
        async for item in all_calls(api, filters, span.until, skipped, gaps):
            yield item
        return
    async for step in walk(api, filters, span.since, span.until or span.now):
        _tell_unusable(step.unusable, skipped)
        gap = step.window.gap()
        if gap is not None:
            log.error("could not list %s", gap.text(), extra={"event": "listing_incomplete"})
            if gaps is not None:
                gaps.append(gap.text())
        for item in step.calls:
            yield item


UNUSABLE_EVENT = "listing_bad_id"


def _tell_unusable(values: list[str], skipped: list[str] | None) -> None:
    if skipped is not None:
        skipped += values
    for value in values:
        log.warning(
            "the listing gave a call_id that is not a UUID: %s; skipped",
            value,
            extra={"event": UNUSABLE_EVENT, "value": value},
        )


async def print_listing(
    api: Pages,
    filters: Filters,
    span: Span,
    output_format: str,
    out: TextIO,
    skipped: list[str] | None = None,
    gaps: list[str] | None = None,
) -> int:
    """Stream the listing to `out` as CSV (header: the call fields) or JSON Lines; how many
    calls it printed. Items with an unusable call_id are not printed: logged, in `skipped`;
    what could not be listed completely is in `gaps`."""
    writer = csv.writer(out, lineterminator="\n") if output_format == "csv" else None
    if writer:
        writer.writerow(CALL_FIELDS)
    count = 0
    async for item in listed_calls(api, filters, span, skipped, gaps):
        if writer:
            writer.writerow([_cell(item.get(name)) for name in CALL_FIELDS])
        else:
            out.write(json.dumps(item, separators=(",", ":")) + "\n")
        count += 1
    out.flush()
    return count


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
