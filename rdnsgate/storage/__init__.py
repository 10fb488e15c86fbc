"""The only SQL: the whitelist and the decision log, in SQLite (default) or PostgreSQL."""

from rdnsgate.storage.sql import SqlStore, open_store

__all__ = ["SqlStore", "open_store"]
