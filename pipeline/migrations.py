"""Numbered, append-only ClickHouse migrations (``schemas/migrations/NNNN_name.sql``).

``meterline migrate`` applies the files not yet recorded in ``meterline_migrations``, in order. Each statement
is idempotent (IF NOT EXISTS), so a migration interrupted half-way is simply run again. A file that changed
after it was applied is an error: fix forward with a new migration instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from schemas import MIGRATIONS_DIR

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS meterline_migrations
(
    id String,
    name String,
    checksum String,
    applied_at DateTime('UTC') DEFAULT now()
)
ENGINE = MergeTree
ORDER BY id
"""


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    id: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        code = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        return [s.strip() for s in re.split(r";\s*(?:\n|$)", code) if s.strip()]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_name.sql")
        migrations.append(Migration(match.group(1), match.group(2), path.read_text()))
    ids = [m.id for m in migrations]
    if len(set(ids)) != len(ids):
        raise MigrationError(f"two migrations share a number: {ids}")
    return migrations


class Migrator:
    def __init__(self, client: Client, migrations: list[Migration] | None = None) -> None:
        self._client = client
        self._migrations = discover() if migrations is None else migrations

    def applied(self) -> dict[str, str]:
        self._client.command(LEDGER_DDL)
        rows = self._client.query("SELECT id, checksum FROM meterline_migrations").result_rows
        return dict(rows)

    def pending(self) -> list[Migration]:
        applied = self.applied()
        for migration in self._migrations:
            recorded = applied.get(migration.id)
            if recorded is not None and recorded != migration.checksum:
                raise MigrationError(
                    f"migration {migration.id}_{migration.name} changed after it was applied; "
                    "migrations are append-only: add a new one instead"
                )
        return [m for m in self._migrations if m.id not in applied]

    def apply(self) -> list[Migration]:
        """Applies every pending migration in order; returns what ran."""
        ran = []
        for migration in self.pending():
            for statement in migration.statements():
                self._client.command(statement)
            self._client.insert(
                "meterline_migrations",
                [[migration.id, migration.name, migration.checksum]],
                column_names=["id", "name", "checksum"],
            )
            ran.append(migration)
        return ran
