"""The hostile input corpus (tests/data/hostile): byte strings with what meterline must make of each."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parents[1] / "data" / "hostile"
NOW_TOKEN = b"__NOW_MS__"


@dataclass(frozen=True)
class HostileCase:
    name: str
    key: bytes | None
    value: bytes
    counted: int  # events of it that are counted
    rejections: tuple[tuple[int | None, str], ...]  # (batch index or None for the whole message, reason)
    note: str = ""


def hostile_cases(now_ms: int) -> list[HostileCase]:
    """Every case of the corpus, with ``__NOW_MS__`` replaced by ``now_ms``."""
    expected = json.loads((CORPUS_DIR / "expected.json").read_text())
    cases = []
    for file_name, spec in sorted(expected.items()):
        data = (CORPUS_DIR / file_name).read_bytes()
        if file_name.endswith(".gz"):
            data = gzip.decompress(data)
        name = file_name.removesuffix(".gz").removesuffix(".bin")
        key = None if spec["key"] is None else spec["key"].encode()
        cases.append(HostileCase(name, key, data.replace(NOW_TOKEN, str(now_ms).encode()), spec["counted"],
                                 tuple((index, reason) for index, reason in spec["rejections"]),
                                 spec.get("note", "")))
    return cases
