"""tenant consumes no events: its applied-events record goes

Revision ID: 0002
"""
import sqlalchemy as sa
from alembic import op

from shared.messaging import applied_events_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "tenant"


def upgrade() -> None:
    op.drop_table("applied_events", schema=S)


def downgrade() -> None:
    applied_events_table(sa.MetaData(schema=S)).create(op.get_bind())
