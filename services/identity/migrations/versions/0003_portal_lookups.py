"""when each address was last sent its list of portals (find-portal)

Revision ID: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "identity"


def upgrade() -> None:
    op.create_table(
        "portal_lookups",
        sa.Column("email_hash", sa.Text, primary_key=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("portal_lookups", schema=S)
