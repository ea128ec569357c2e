"""organizations, portal domains, outbox

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("slug", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("settings", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="tenant",
    )
    op.create_table(
        "domains",
        sa.Column("host", sa.Text, primary_key=True),
        sa.Column("slug", sa.Text, sa.ForeignKey("tenant.tenants.slug", ondelete="CASCADE"), nullable=False, index=True),
        schema="tenant",
    )
    create_messaging_tables("tenant")
