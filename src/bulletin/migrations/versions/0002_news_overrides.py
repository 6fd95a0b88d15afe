"""news items: source hash and staff overrides

Revision ID: 0002_news
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_news"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("news_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("overrides", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.create_index("ix_news_items_link", ["link"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("news_items", schema=None) as batch_op:
        batch_op.drop_index("ix_news_items_link")
        batch_op.drop_column("overrides")
        batch_op.drop_column("source_hash")
