"""Subcommands of the ``meterline`` CLI, one module per area."""
