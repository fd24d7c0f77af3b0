"""The time zones the usage API accepts: names both Python's zoneinfo and ClickHouse know, whose UTC offsets
agree between the two over the whole supported range (1970..2106).

The API computes range bounds, bucket bounds and bucket labels in Python and the buckets themselves in
ClickHouse, so a zone the two read differently (their tz databases are different IANA releases) would put
usage in one bucket and label it as another. Regenerate the list after upgrading chdb/ClickHouse or tzdata:

    PYTHONPATH=tests .venv/bin/python -m support.time_zones > pipeline/usage/time_zones.txt
"""

from __future__ import annotations

import sys
import tempfile
import zoneinfo
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

FIRST_S, LAST_S = 0, 4_291_747_200  # 1970-01-01 .. 2106-01-01 UTC
# Odd steps so the samples drift through hours of the day and days of the week.
FINE_STEP_S = 7 * 86_400 + 3 * 3_600 + 1_800
COARSE_STEP_S = 29 * 86_400 + 7 * 3_600 + 1_800


def clickhouse_zones(client: Client) -> set[str]:
    return {row[0] for row in client.query("SELECT time_zone FROM system.time_zones").result_rows}


def disagreement(client: Client, zone: str, step_s: int) -> list[int]:
    """Epoch seconds (sampled every ``step_s``) at which ClickHouse and zoneinfo give ``zone`` different
    UTC offsets."""
    count = (LAST_S - FIRST_S) // step_s
    ch = client.query("SELECT groupArray(timeZoneOffset(toDateTime({first:UInt32} + number * {step:UInt32}, "
                      "{zone:String})))  FROM numbers({count:UInt32})",
                      parameters={"first": FIRST_S, "step": step_s, "count": count, "zone": zone}).result_rows[0][0]
    info = zoneinfo.ZoneInfo(zone)
    return [FIRST_S + i * step_s for i in range(count)
            if datetime.fromtimestamp(FIRST_S + i * step_s, info).utcoffset().total_seconds() != ch[i]]


def agreeing_zones(client: Client, step_s: int = FINE_STEP_S) -> list[str]:
    known = clickhouse_zones(client) & zoneinfo.available_timezones()
    return sorted(zone for zone in known if not disagreement(client, zone, step_s))


def main() -> int:
    from pipeline.clickhouse import connect
    with tempfile.TemporaryDirectory() as folder:
        client = connect(f"chdb://{folder}")
        try:
            zones = agreeing_zones(client)
            left_out = sorted((clickhouse_zones(client) & zoneinfo.available_timezones()) - set(zones))
        finally:
            client.close()
    print(f"# {len(zones)} zones; generated {datetime.now(UTC):%Y-%m-%d} by tests/support/time_zones.py "
          f"(left out, read differently by zoneinfo and ClickHouse: {', '.join(left_out) or 'none'})")
    print("\n".join(zones))
    return 0


if __name__ == "__main__":
    sys.exit(main())
