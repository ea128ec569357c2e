import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.runtime import service_metadata

metadata = service_metadata("identity")

# Identity's own copies of tenant and lockout events: the login path asks no other service.
tenants = sa.Table(
    "tenants", metadata,
    sa.Column("slug", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("settings", JSONB, nullable=False),
)
domains = sa.Table(
    "domains", metadata,
    sa.Column("host", sa.Text, primary_key=True),
    sa.Column("slug", sa.Text, nullable=False, index=True),
)
locks = sa.Table(
    "locks", metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("email", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, primary_key=True),  # "" means every source address
    sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
)
# Failed logins identity has seen, kept for one lockout window: they let identity hold back a
# burst until lockout's verdict arrives (domain.awaiting_lockout). Lockout keeps the real count.
failures = sa.Table(
    "failures", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("failures_account", "tenant", "email", "failed_at"),
)

users = sa.Table(
    "users", metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("display_name", sa.Text),
    sa.Column("confirmed_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("tenant", "email"),
)

tokens = sa.Table(
    "tokens", metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("user_id", UUID(as_uuid=True), sa.ForeignKey("identity.users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("purpose", sa.Text, nullable=False),  # confirm | reset | unlock
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True)),
    sa.Column("superseded_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("tokens_user_purpose", "user_id", "purpose"),
)

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("user_id", UUID(as_uuid=True), sa.ForeignKey("identity.users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("remember", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("idle_expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("absolute_expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

# When each address (by its SHA-256, as typed addresses of strangers need not be kept) was last
# sent its list of portals: at most one such email per address in FIND_PORTAL_INTERVAL.
portal_lookups = sa.Table(
    "portal_lookups", metadata,
    sa.Column("email_hash", sa.Text, primary_key=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
)
