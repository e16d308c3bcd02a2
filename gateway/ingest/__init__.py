"""Ingest: source lanes → codec → durable store → ack."""
