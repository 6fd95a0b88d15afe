"""news corrections: splits and merges staff made, replayed at each ingest of their page

Revision ID: 0006
Revises: 0003_send_rate
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bulletin.models.base

revision: str = "0006_news_corrections"
down_revision: str | Sequence[str] | None = "0005_inbound_mail"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "news_corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=2000), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("item_key", sa.String(length=700), nullable=False),
        sa.Column("other_key", sa.String(length=700), nullable=True),
        sa.Column("at", sa.String(length=500), nullable=True),
        sa.Column("created_at", bulletin.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_news_corrections")),
    )
    op.create_index("ix_news_corrections_source", "news_corrections", ["source"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_news_corrections_source", table_name="news_corrections")
    op.drop_table("news_corrections")
