"""CSV export: one row per bucket x api key x model x provider, streamed from ClickHouse block by block.

Only buckets with usage have rows (the CSV is a ledger, not a chart). Money is exact decimal text without
exponent notation; ``price_version`` lists the price sheets used in the bucket, sorted and joined with ';'
(empty for unpriced usage). Column sums equal :meth:`UsageQueries.summary` of the same request exactly.
The per-unit columns ``units`` and ``unit_costs`` hold ``name=value`` pairs of genai-prices unit names, sorted
and joined with ';', non-zero only (``input_audio_tokens=800;web_searches=2``); a row's ``unit_costs`` sum to
its ``total_cost`` (the remainders ``input_tokens`` and ``output_tokens`` derived as the API derives them,
pipeline/measures.py ``costs_by_unit``).

The last column, ``counted_through``, is the export's freshness (the same on every row, RFC 3339 UTC, empty when
nothing is counted yet): every event that reached Kafka before it is in the file; later events may still arrive
for windows within the lateness bound (:class:`~pipeline.usage.query.Freshness`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TextIO

from pipeline.measures import INPUT_COST, OUTPUT_COST, UNIT_COSTS, costs_by_unit
from pipeline.usage.query import EXPORT_MEASURES, UsageQueries
from pipeline.usage.ranges import UsageRequest, bucket_start

# The CSV's columns are EXPORT_SQL's, in order: the bucket and its grouping, the measures, the price sheets.
CSV_COLUMNS = ("bucket_start", "api_key_id", "model", "provider", *(m.name for m in EXPORT_MEASURES), "price_version",
               "counted_through")
_MONEY = [CSV_COLUMNS.index(m.name) for m in EXPORT_MEASURES if m.unit == "USD" and not m.per_unit]  # exact text
_PER_UNIT = [(CSV_COLUMNS.index(m.name), m.unit == "USD") for m in EXPORT_MEASURES if m.per_unit]
_UNIT_COSTS, _INPUT_COST, _OUTPUT_COST = (CSV_COLUMNS.index(m.name) for m in (UNIT_COSTS, INPUT_COST, OUTPUT_COST))


@dataclass(frozen=True)
class ExportStats:
    rows: int
    blocks: int


def decimal_text(value: Decimal) -> str:
    """Exact plain text: no exponent, no trailing zeros (``0E-24`` -> ``0``, ``1.500`` -> ``1.5``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def pairs_text(summed: dict, money: bool) -> str:
    """A summed per-unit Map as ``name=value;...``: sorted, non-zero entries only, money as exact text."""
    return ";".join(f"{name}={decimal_text(value) if money else value}"
                    for name, value in sorted(summed.items()) if value)


def write_csv(queries: UsageQueries, request: UsageRequest, out: TextIO, block_rows: int = 2048) -> ExportStats:
    """Write the header and every row to ``out`` (opened with ``newline=''``), one block in memory at a time."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    rows = blocks = 0
    for block in _formatted_blocks(queries, request, block_rows):
        writer.writerows(block)
        rows += len(block)
        blocks += 1
    return ExportStats(rows, blocks)


def csv_chunks(queries: UsageQueries, request: UsageRequest, block_rows: int = 2048) -> Iterator[bytes]:
    """The same CSV as UTF-8 byte chunks (the header, then one chunk per ClickHouse block), for HTTP."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield _drain(buffer)
    for block in _formatted_blocks(queries, request, block_rows):
        writer.writerows(block)
        yield _drain(buffer)


def _formatted_blocks(queries: UsageQueries, request: UsageRequest, block_rows: int) -> Iterator[list[list]]:
    zone, granularity = request.zone, request.granularity
    counted_through = queries.freshness().counted_through
    fresh = "" if counted_through is None else counted_through.isoformat()
    # Every bucket's label once (a bucket has a row per key x model x provider), not a zone lookup per row.
    labels = {key: start.isoformat() for key, start in request.bucket_starts().items()}
    with queries.export_blocks(request, block_rows) as stream:
        for block in stream:
            formatted = []
            for row in block:
                row = list(row)
                row[0] = labels.get(row[0]) or bucket_start(row[0], granularity, zone).isoformat()
                row[_UNIT_COSTS] = costs_by_unit(row[_UNIT_COSTS], row[_INPUT_COST], row[_OUTPUT_COST])
                for position in _MONEY:
                    row[position] = decimal_text(row[position])
                for position, money in _PER_UNIT:
                    row[position] = pairs_text(row[position], money)
                row.append(fresh)
                formatted.append(row)
            yield formatted


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data
