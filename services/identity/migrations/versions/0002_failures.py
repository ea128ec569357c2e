"""failed logins seen by identity, to hold back a burst until lockout's verdict arrives

Revision ID: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "identity"


def upgrade() -> None:
    op.create_table(
        "failures",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )
    op.create_index("failures_account", "failures", ["tenant", "email", "failed_at"], schema=S)

