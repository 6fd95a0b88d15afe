"""security: staff sessions, per-subscriber link nonces, subscriber ids never reused

Revision ID: 0004_security
Revises: 0003_send_rate
"""

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import bulletin.models.base

revision: str = "0004_security"
down_revision: str | Sequence[str] | None = "0003_send_rate"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    connection = op.get_bind()
    sqlite = connection.dialect.name == "sqlite"
    op.create_table(
        "staff_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("created_at", bulletin.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=400), nullable=True),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_staff_sessions_staff_id_staff"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_staff_sessions")),
    )
    op.create_index("ix_staff_sessions_staff_id", "staff_sessions", ["staff_id"], unique=False)

    # The secret that keys each edition's placeholder marker (bulletin.compose.placeholders).
    meta = sa.table(
        "bulletin_meta",
        sa.column("key"),
        sa.column("value"),
        sa.column("updated_at", bulletin.models.base.UTCDateTime()),
    )
    op.bulk_insert(
        meta,
        [{"key": "placeholder_salt", "value": secrets.token_hex(32), "updated_at": datetime.now(UTC)}],
    )

    # Rate-limit keys were unsalted digests of addresses; they are keyed now, so the old ones go.
    connection.exec_driver_sql("DELETE FROM rate_events")

    if sqlite:
        _sqlite_rebuild_subscribers(connection)
    else:
        op.add_column("subscribers", sa.Column("link_nonce", sa.String(length=32), nullable=False, server_default=""))
        # Every existing subscriber gets a random link nonce from the database's strong generator.
        connection.exec_driver_sql("UPDATE subscribers SET link_nonce = replace(gen_random_uuid()::text, '-', '')")
        op.alter_column("subscribers", "link_nonce", server_default=None)


def _sqlite_rebuild_subscribers(connection: sa.Connection) -> None:
    """Rebuild ``subscribers`` with AUTOINCREMENT and the nonce column (SQLite's 12-step table change)."""

    def rebuild() -> None:
        with op.batch_alter_table(
            "subscribers", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.alter_column("id", existing_type=sa.Integer(), autoincrement=True)
            batch.add_column(sa.Column("link_nonce", sa.String(length=32), nullable=False, server_default=""))
        connection.exec_driver_sql("UPDATE subscribers SET link_nonce = lower(hex(randomblob(12)))")

    _without_foreign_keys(connection, rebuild)


def _without_foreign_keys(connection: sa.Connection, change: Callable[[], None]) -> None:
    """Run a table rebuild with SQLite's foreign keys off, then check them.

    With foreign keys on, dropping the old ``subscribers`` table would cascade to every
    subscriber's history and deliveries; SQLite only switches them outside a transaction.
    """
    connection.exec_driver_sql("COMMIT")
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        change()
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"foreign keys broken by the subscribers rebuild: {broken[:3]}")
        connection.exec_driver_sql("COMMIT")
    except BaseException:
        connection.exec_driver_sql("ROLLBACK")
        raise
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":

        def drop_nonce() -> None:
            with op.batch_alter_table("subscribers", recreate="always") as batch:
                batch.drop_column("link_nonce")

        _without_foreign_keys(connection, drop_nonce)
    else:
        op.drop_column("subscribers", "link_nonce")
    connection.exec_driver_sql("DELETE FROM bulletin_meta WHERE key = 'placeholder_salt'")
    op.drop_index("ix_staff_sessions_staff_id", table_name="staff_sessions")
    op.drop_table("staff_sessions")
