"""organizations copy, the email queue, outbox

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from shared.migrations import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "mailer"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("slug", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text),
        sa.Column("support_email", sa.Text),
        sa.Column("domains", ARRAY(sa.Text), nullable=False),
        schema=S,
    )
    op.create_table(
        "emails",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("dedup_key", sa.Text, nullable=False, unique=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("to_address", sa.Text, nullable=False),
        sa.Column("context", JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("claim_id", UUID(as_uuid=True)),
        sa.Column("claimed_by", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("sent_at", TS),
        sa.CheckConstraint("status in ('queued', 'sending', 'sent', 'failed', 'throttled')", name="emails_status"),
        schema=S,
    )
    op.create_index("emails_due", "emails", ["next_attempt_at"], schema=S,
                    postgresql_where=sa.text("status in ('queued', 'sending')"))
    op.create_index("emails_recipient", "emails", ["tenant", "to_address", "created_at"], schema=S)
    create_messaging_tables(S)
