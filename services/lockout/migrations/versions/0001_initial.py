"""copies of organizations' settings, failures in the window, locks, outbox

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.migrations import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "lockout"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table("tenants", sa.Column("slug", sa.Text, primary_key=True), sa.Column("settings", JSONB, nullable=False),
                    schema=S)
    op.create_table(
        "failures",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        schema=S,
    )
    op.create_index("failures_account", "failures", ["tenant", "email", "occurred_at"], schema=S)
    op.create_table(
        "locks",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("email", sa.Text, primary_key=True),
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("locked_at", TS, nullable=False),
        sa.Column("locked_until", TS, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("lifted_at", TS),
        sa.Column("lift_reason", sa.Text),
        sa.Column("expiry_announced", sa.Boolean, nullable=False, server_default=sa.false()),
        schema=S,
    )
    op.create_index("locks_due", "locks", ["locked_until"], schema=S,
                    postgresql_where=sa.text("lifted_at IS NULL AND NOT expiry_announced"))
    create_messaging_tables(S)
