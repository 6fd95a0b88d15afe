"""inbound mail: bounces, complaints and unsubscribe requests processed once; reports on deliveries

Revision ID: 0005
Revises: 0003_send_rate
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bulletin.models.base

revision: str = "0005_inbound_mail"
# The integrator re-chains the round's migrations; 0003 is the last one on main.
down_revision: str | Sequence[str] | None = "0004_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_key", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=True),
        sa.Column(
            "kind",
            sa.Enum(
                "hard",
                "soft",
                "complaint",
                "unsubscribe",
                "auto-reply",
                name="inbound_kind",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("edition_id", sa.Integer(), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("received_at", bulletin.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name=op.f("fk_inbound_mail_delivery_id_deliveries"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["edition_id"], ["editions.id"], name=op.f("fk_inbound_mail_edition_id_editions"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_inbound_mail_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_mail")),
        sa.UniqueConstraint("message_key", name=op.f("uq_inbound_mail_message_key")),
    )
    with op.batch_alter_table("inbound_mail", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbound_mail_delivery_id"), ["delivery_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_inbound_mail_edition_id"), ["edition_id"], unique=False)
        batch_op.create_index("ix_inbound_mail_subscriber_kind", ["subscriber_id", "kind", "received_at"], unique=False)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("report_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("report_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("report_detail", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reported_at", bulletin.models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("reported_at")
        batch_op.drop_column("report_detail")
        batch_op.drop_column("report_status")
        batch_op.drop_column("report_kind")
    with op.batch_alter_table("inbound_mail", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_mail_subscriber_kind")
        batch_op.drop_index(batch_op.f("ix_inbound_mail_edition_id"))
        batch_op.drop_index(batch_op.f("ix_inbound_mail_delivery_id"))
    op.drop_table("inbound_mail")
