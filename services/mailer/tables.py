import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from shared.runtime import service_metadata

metadata = service_metadata("mailer")

# The mailer's own copy of the tenant service's organizations: what an email shows and links to.
organizations = sa.Table(
    "organizations", metadata,
    sa.Column("slug", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("display_name", sa.Text),
    sa.Column("support_email", sa.Text),
    sa.Column("domains", ARRAY(sa.Text), nullable=False),  # in the order they were added: the first is the fallback
)

# The stored queue. While an email is 'sending', next_attempt_at is its lease deadline: a sender
# that has not recorded an outcome by then is presumed dead and the email is due again.
emails = sa.Table(
    "emails", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("dedup_key", sa.Text, nullable=False, unique=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("to_address", sa.Text, nullable=False),
    sa.Column("context", JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claim_id", UUID(as_uuid=True)),
    sa.Column("claimed_by", sa.Text),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint("status in ('queued', 'sending', 'sent', 'failed', 'throttled')", name="emails_status"),
    sa.Index("emails_due", "next_attempt_at", postgresql_where=sa.text("status in ('queued', 'sending')")),
    sa.Index("emails_recipient", "tenant", "to_address", "created_at"),
)
