"""Test harness: worker and server subprocesses, synthetic workloads and their ground-truth ledgers."""
