"""deliveries.handed_at: when the SMTP transaction of a claimed delivery began

A claimed row (``sending``) whose ``handed_at`` is NULL never reached the server: after a crash
it becomes due again silently. Only a row with ``handed_at`` set and no recorded answer is
uncertain (it may have been delivered).

Revision ID: 0007
Revises: 0003_send_rate
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bulletin.models.base

revision: str = "0007_handed_at"
down_revision: str | Sequence[str] | None = "0006_news_corrections"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("handed_at", bulletin.models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("handed_at")
