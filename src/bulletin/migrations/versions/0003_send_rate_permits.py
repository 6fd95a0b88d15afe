"""send rate permits: the rate limit shared by PostgreSQL workers

Revision ID: 0003_send_rate
Revises: 0002_news
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_send_rate"
down_revision: str | Sequence[str] | None = "0002_news"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "send_rate_permits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("ends_at", sa.Float(precision=53), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_rate_permits")),
    )
    op.create_index("ix_send_rate_permits_ends_at", "send_rate_permits", ["ends_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_send_rate_permits_ends_at", table_name="send_rate_permits")
    op.drop_table("send_rate_permits")
