"""The fleet: watched sending servers, their checks and alerts.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet",
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
    )
    op.create_table(
        "fleet_checks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fleet_id", sa.Integer, sa.ForeignKey("fleet.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("chain", sa.JSON, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_fleet_checks_fleet_at", "fleet_checks", ["fleet_id", "at"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fleet_id", sa.Integer, sa.ForeignKey("fleet.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("before", sa.String(16), nullable=False),
        sa.Column("after", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("fleet_checks")
    op.drop_table("fleet")
