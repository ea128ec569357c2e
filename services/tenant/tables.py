import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from shared.runtime import service_metadata

metadata = service_metadata("tenant", consumes=False)  # tenant only publishes

tenants = sa.Table(
    "tenants", metadata,
    sa.Column("slug", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("settings", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# One domain, one organization: the primary key makes the database refuse a second owner.
domains = sa.Table(
    "domains", metadata,
    sa.Column("host", sa.Text, primary_key=True),
    sa.Column("slug", sa.Text, sa.ForeignKey("tenant.tenants.slug", ondelete="CASCADE"), nullable=False, index=True),
)
