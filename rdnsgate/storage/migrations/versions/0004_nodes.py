"""Several nodes on one store: the node list, and leases so that one monitor checks each server.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("roles", sa.String(100), nullable=False, server_default=""),
        sa.Column("version", sa.String(32), nullable=False, server_default=""),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("backlog", sa.Integer, nullable=False, server_default="0"),
        sa.Column("dropped", sa.Integer, nullable=False, server_default="0"),
    )
    with op.batch_alter_table("fleet") as batch:
        batch.add_column(sa.Column("next_check", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lease_node", sa.String(255), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_fleet_next_check", "fleet", ["next_check"])


def downgrade() -> None:
    op.drop_index("ix_fleet_next_check", "fleet")
    with op.batch_alter_table("fleet") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_node")
        batch.drop_column("next_check")
    op.drop_table("nodes")
