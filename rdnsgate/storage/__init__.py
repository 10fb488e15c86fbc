"""The only SQL: one module per table family (whitelist, decisions, fleet, admins), SQLite or PostgreSQL."""

from rdnsgate.storage.sql import SqlStore, open_store

__all__ = ["SqlStore", "open_store"]
