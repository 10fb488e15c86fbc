"""Roles and API tokens; who changed the whitelist and the fleet, and when.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("admins") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="admin"))
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False, server_default=""),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )
    for table in ("whitelist", "fleet"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("changed_by", sa.String(100), nullable=False, server_default=""))
            batch.add_column(sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_changes_at", "changes", ["at"])


def downgrade() -> None:
    op.drop_index("ix_changes_at", "changes")
    op.drop_table("changes")
    for table in ("fleet", "whitelist"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("changed_at")
            batch.drop_column("changed_by")
    op.drop_table("api_tokens")
    with op.batch_alter_table("admins") as batch:
        batch.drop_column("role")
