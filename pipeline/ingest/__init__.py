"""The HTTP collector (``meterline collect``) and the gateway-format adapters it reads; see docs/ingest.md."""
