"""Migration files: numbered, unique, statements split as ClickHouse expects (no database needed)."""

import pytest

from pipeline.migrations import Migration, MigrationError, Migrator, discover


def test_migrations_are_numbered_in_order_without_gaps():
    ids = [m.id for m in discover()]
    assert ids == [f"{i:04d}" for i in range(1, len(ids) + 1)]


def test_statements_are_split_and_comments_dropped():
    migration = Migration("0009", "x", "-- why\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\n-- more\nCREATE VIEW b AS SELECT 1;\n")
    assert migration.statements() == ["CREATE TABLE a (x UInt8) ENGINE = Memory", "CREATE VIEW b AS SELECT 1"]


class _Recorded:
    """Stands in for the migrations ledger only: no SQL is run (the real apply is tested on chDB)."""

    def __init__(self, applied: dict[str, str]) -> None:
        self._applied = applied

    def command(self, sql):
        pass

    def query(self, sql):
        return type("Result", (), {"result_rows": list(self._applied.items())})()


def test_a_migration_changed_after_it_was_applied_is_refused():
    original = Migration("0001", "rollups", "CREATE TABLE t (x UInt8) ENGINE = Memory")
    edited = Migration("0001", "rollups", "CREATE TABLE t (x UInt16) ENGINE = Memory")
    assert Migrator(_Recorded({"0001": original.checksum}), [original]).pending() == []
    with pytest.raises(MigrationError, match="append-only"):
        Migrator(_Recorded({"0001": original.checksum}), [edited]).pending()
