"""Self-service exception requests (from a refusal's signed link).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exception_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("check_name", sa.String(16), nullable=False),
        sa.Column("refusal", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("visitor", sa.String(45), nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_exception_requests_ip_at", "exception_requests", ["ip", "at"])


def downgrade() -> None:
    op.drop_index("ix_exception_requests_ip_at", "exception_requests")
    op.drop_table("exception_requests")
