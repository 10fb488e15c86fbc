"""Tables (SQLAlchemy Core).  Changes go through an Alembic migration in migrations/versions, and REVISION
becomes the new migration's."""

from __future__ import annotations

import sqlalchemy as sa

REVISION = "0006"  # the newest migration's: the schema these tables are (a test holds it to Alembic's head)

metadata = sa.MetaData()

whitelist = sa.Table(
    "whitelist",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # network | domain
    sa.Column("value", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("ticket", sa.String(100), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("changed_by", sa.String(100), nullable=False, server_default=""),  # who added or last changed it
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("kind", "value", name="uq_whitelist_kind_value"),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("node", sa.String(255), nullable=False, server_default=""),
    sa.Column("session", sa.String(64), nullable=False),
    sa.Column("client_ip", sa.String(45), nullable=False),
    sa.Column("ptr", sa.String(255), nullable=True),
    sa.Column("helo", sa.String(255), nullable=True),
    sa.Column("sender", sa.String(320), nullable=True),
    sa.Column("recipients", sa.JSON, nullable=False),
    sa.Column("profile", sa.String(32), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("stage", sa.String(8), nullable=True),
    sa.Column("reply", sa.Text, nullable=True),
    sa.Column("checks", sa.JSON, nullable=False),
    sa.Column("whitelisted", sa.Text, nullable=True),
    sa.Index("ix_decisions_ip_at", "client_ip", "at"),
    sa.Index("ix_decisions_at", "at"),
    sa.Index("ix_decisions_sender", "sender"),
)

fleet = sa.Table(
    "fleet",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ip", sa.String(45), nullable=False, unique=True),
    sa.Column("helo", sa.String(255), nullable=True),
    sa.Column("label", sa.String(100), nullable=False, server_default=""),
    sa.Column("state", sa.String(16), nullable=False, server_default="unknown"),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_good", sa.JSON, nullable=True),
    sa.Column("candidate", sa.String(16), nullable=True),
    sa.Column("candidate_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_checked", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_chain", sa.JSON, nullable=True),
    sa.Column("next_check", sa.DateTime(timezone=True), nullable=True),  # NULL: due now
    sa.Column("lease_node", sa.String(255), nullable=True),  # the monitor node checking it now
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),  # when another node may take it over
    sa.Column("changed_by", sa.String(100), nullable=False, server_default=""),  # who added or last changed it
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_fleet_next_check", "next_check"),
)

fleet_checks = sa.Table(
    "fleet_checks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fleet_id", sa.Integer, sa.ForeignKey("fleet.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("seen", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("chain", sa.JSON, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_fleet_checks_fleet_at", "fleet_id", "at"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fleet_id", sa.Integer, sa.ForeignKey("fleet.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("before", sa.String(16), nullable=False),
    sa.Column("after", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("roles", sa.String(100), nullable=False, server_default=""),
    sa.Column("version", sa.String(32), nullable=False, server_default=""),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("backlog", sa.Integer, nullable=False, server_default="0"),
    sa.Column("dropped", sa.Integer, nullable=False, server_default="0"),
)

admins = sa.Table(
    "admins",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("role", sa.String(16), nullable=False, server_default="admin"),  # admin | helpdesk
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # SHA-256 of the token, hex
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False, server_default=""),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
)

changes = sa.Table(  # every whitelist and fleet change: who, when, what
    "changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("subject", sa.String(16), nullable=False),  # whitelist | fleet
    sa.Column("action", sa.String(16), nullable=False),  # add | update | remove
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_changes_at", "at"),
)

app_secrets = sa.Table(
    "app_secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

exception_requests = sa.Table(  # a refused sender's request for a temporary whitelist entry
    "exception_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ip", sa.String(45), nullable=False),
    sa.Column("check_name", sa.String(16), nullable=False),  # the failing check of the refusal
    sa.Column("refusal", sa.String(32), nullable=False),  # the refusal's id from its signed link
    sa.Column("message", sa.Text, nullable=False, server_default=""),  # the sender's words
    sa.Column("visitor", sa.String(45), nullable=False, server_default=""),  # who asked (web visitor address)
    sa.Column("state", sa.String(16), nullable=False),  # pending | granted | refused
    sa.Column("decided_by", sa.String(100), nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),  # of the whitelist entry, once granted
    sa.Index("ix_exception_requests_ip_at", "ip", "at"),
)
