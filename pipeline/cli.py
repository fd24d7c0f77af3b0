"""The ``meterline`` command line."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("meterline: no commands yet", file=sys.stderr)
    return 2
