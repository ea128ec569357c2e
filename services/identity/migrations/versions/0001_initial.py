"""users, tokens, sessions, copies of organizations and locks, outbox

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

S = "identity"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table("tenants", sa.Column("slug", sa.Text, primary_key=True), sa.Column("name", sa.Text, nullable=False),
                    sa.Column("settings", JSONB, nullable=False), schema=S)
    op.create_table("domains", sa.Column("host", sa.Text, primary_key=True),
                    sa.Column("slug", sa.Text, nullable=False, index=True), schema=S)
    op.create_table("locks", sa.Column("tenant", sa.Text, primary_key=True), sa.Column("email", sa.Text, primary_key=True),
                    sa.Column("source", sa.Text, primary_key=True), sa.Column("locked_until", TS, nullable=False), schema=S)
    op.create_table(
        "users",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text),
        sa.Column("confirmed_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("tenant", "email"),
        schema=S,
    )
    op.create_table(
        "tokens",
        sa.Column("token_hash", sa.Text, primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("user_id", UUID(as_uuid=True), sa.ForeignKey("identity.users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS),
        sa.Column("superseded_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Index("tokens_user_purpose", "user_id", "purpose"),
        schema=S,
    )
    op.create_table(
        "sessions",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("user_id", UUID(as_uuid=True), sa.ForeignKey("identity.users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("remember", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("idle_expires_at", TS, nullable=False),
        sa.Column("absolute_expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
        schema=S,
    )
    create_messaging_tables(S)
