"""Database-outage spool: durable local records replayed in order when the database returns."""
