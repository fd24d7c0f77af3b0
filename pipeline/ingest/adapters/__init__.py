"""Gateway formats -> contract v1 candidates. One module per format; see docs/ingest.md for the mappings."""
