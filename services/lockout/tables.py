import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.runtime import service_metadata

SCHEMA = "lockout"
metadata = service_metadata(SCHEMA)

# Lockout's own copy of each organization's settings, fed by tenant.events.
tenants = sa.Table(
    "tenants", metadata,
    sa.Column("slug", sa.Text, primary_key=True),
    sa.Column("settings", JSONB, nullable=False),
)

# One row per LoginFailed still inside its organization's window: the sliding window is counted
# over these rows, by the time the event occurred.
failures = sa.Table(
    "failures", metadata,
    sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("failures_account", "tenant", "email", "occurred_at"),
)

# The latest lock of each (organization, email, source); source "" holds for every address.
# The row outlives the lock: its locked_at is where counting toward the next lock starts.
locks = sa.Table(
    "locks", metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("email", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("lifted_at", sa.DateTime(timezone=True)),
    sa.Column("lift_reason", sa.Text),  # admin | password_changed | email_link
    sa.Column("expiry_announced", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("locks_due", "locked_until", postgresql_where=sa.text("lifted_at IS NULL AND NOT expiry_announced")),
)

applied_events = metadata.tables[f"{SCHEMA}.applied_events"]
