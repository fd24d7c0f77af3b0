"""How the CLI shows numbers to people: money the way the usage page does (pipeline/web/js/format.js), and
tables whose columns are as wide as their widest value, so no name is ever cut.

Only what people read is rounded; ``--json`` and CSV output keep the API's exact decimal strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")
# Below a cent, two significant digits ($0.0012); below this, "< $0.000001" rather than a long tail.
SMALLEST_SHOWN = Decimal("0.000001")


def usd(amount: Decimal | str) -> str:
    """An exact USD amount (a Decimal or the API's decimal string) for people, rounded half-even as the page
    rounds it: ``"12.3456"`` -> ``$12.35``, ``"1234567.891"`` -> ``$1,234,567.89``, ``"0"`` -> ``$0.00``,
    ``"0.00123"`` -> ``$0.0012``, ``"0.0000004"`` -> ``< $0.000001``. Raises ``decimal.InvalidOperation`` for
    text that is not a decimal number."""
    value = Decimal(amount)
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if magnitude == 0 or magnitude >= CENT:
        rounded = magnitude.quantize(CENT, rounding=ROUND_HALF_EVEN)
        return f"{sign if rounded else ''}${rounded:,.2f}"
    if magnitude < SMALLEST_SHOWN:
        return f"< ${SMALLEST_SHOWN}"
    # Two significant digits: quantize to the place one below the leading digit.
    rounded = magnitude.quantize(Decimal(1).scaleb(magnitude.adjusted() - 1), rounding=ROUND_HALF_EVEN)
    return f"{sign}${rounded.normalize():f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    """Lines of a plain-text table: every column as wide as its widest cell (header included), two spaces
    apart; columns whose positions are in ``right`` are right-aligned (numbers)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(cell).rjust(width) if i in right else str(cell).ljust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths))).rstrip()

    return [line(header), *(line(row) for row in rows)]
