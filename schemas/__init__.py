"""meterline's published contracts: the usage event JSON Schema, its examples, and ClickHouse migrations."""

from pathlib import Path

SCHEMAS_DIR = Path(__file__).resolve().parent
USAGE_EVENT_SCHEMA = SCHEMAS_DIR / "usage-event.v1.schema.json"
EXAMPLES_DIR = SCHEMAS_DIR / "examples"
MIGRATIONS_DIR = SCHEMAS_DIR / "migrations"
