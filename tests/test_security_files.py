"""Files holding personal data are private (issue 13, finding 7): database, -wal/-shm, previews, config."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from click.testing import CliRunner

from bulletin.cli import cli
from bulletin.compose.preview import write_previews
from bulletin.compose.render import RenderedVariant
from bulletin.config import settings_from_dict
from bulletin.db import engine_for, transaction
from bulletin.migrate import upgrade

from .factories import add_subscriber, write_config


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_its_wal_and_shm_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        folder = tmp_path / "data" / "bulletin"
        settings = settings_from_dict({"database": {"url": f"sqlite:///{folder / 'subscribers.db'}"}}, tmp_path)
        # Created the way `bulletin init` creates it (the tests' template copy would bypass that path).
        engine = engine_for(settings)
        upgrade(engine)
        with transaction(engine) as session:
            add_subscriber(session, "ana@example.org", "es")
            # While the connection is open, SQLite keeps its -wal and -shm files.
            files = [folder / "subscribers.db", folder / "subscribers.db-wal", folder / "subscribers.db-shm"]
            assert all(path.exists() for path in files)
            assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
        engine.dispose()
        assert mode(folder) == 0o700 and mode(folder.parent) == 0o700
    finally:
        os.umask(old_umask)


def test_previews_are_written_in_a_private_folder(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        settings = settings_from_dict({}, tmp_path)
        variant = RenderedVariant("fr", "", "Sujet", "Aperçu", "<html lang='fr'></html>", "Texte\n", "0" * 64, 20, 1)
        folder = tmp_path / "previews" / "edition-1"
        (file,) = write_previews(settings, [variant], folder, {})
        assert mode(folder) == 0o700 and mode(folder.parent) == 0o700
        assert mode(file.html) == 0o600 and mode(file.text) == 0o600
    finally:
        os.umask(old_umask)


def test_init_warns_about_a_config_others_can_change(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bulletin.toml", {"database": {"url": f"sqlite:///{tmp_path / 'b.db'}"}})
    config.chmod(0o664)
    result = CliRunner().invoke(cli, ["--config", str(config), "init"])
    assert result.exit_code == 0, result.output
    assert "can be changed by its group (mode 664)" in result.output and "chmod go-w" in result.output
    config.chmod(0o646)
    assert "can be changed by everyone" in CliRunner().invoke(cli, ["--config", str(config), "init"]).output
    config.chmod(0o644)
    assert "Warning" not in CliRunner().invoke(cli, ["--config", str(config), "init"]).output


def test_upgrading_keeps_the_subscribers_history_and_never_reuses_an_id(tmp_path: Path) -> None:
    """The 0004 migration rebuilds subscribers with AUTOINCREMENT without losing rows that point at it."""
    from sqlalchemy import text

    from bulletin.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0003_send_rate")
    with engine.begin() as connection:
        for number in (1, 2):
            connection.execute(
                text(
                    "INSERT INTO subscribers (id, email, email_key, language, interests, status, consent_source,"
                    " consent_at, hard_bounces, created_at, updated_at) VALUES (:id, :email, :email, 'fr', '',"
                    " 'active', 'cli', '2026-01-01 00:00:00', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                ),
                {"id": number, "email": f"p{number}@example.org"},
            )
            connection.execute(
                text(
                    "INSERT INTO subscriber_events (subscriber_id, at, action, actor)"
                    " VALUES (:id, '2026-01-01 00:00:00', 'subscribed', 'cli')"
                ),
                {"id": number},
            )
    upgrade(engine)
    with engine.begin() as connection:
        assert connection.execute(text("SELECT count(*) FROM subscriber_events")).scalar() == 2
        nonces = connection.execute(text("SELECT link_nonce FROM subscribers")).scalars().all()
        assert len(set(nonces)) == 2 and all(len(n) >= 16 for n in nonces)
        connection.execute(text("DELETE FROM subscribers WHERE id = 2"))
        connection.execute(
            text(
                "INSERT INTO subscribers (email, email_key, language, interests, status, consent_source, consent_at,"
                " hard_bounces, created_at, updated_at, link_nonce) VALUES ('p3@example.org', 'p3@example.org', 'fr',"
                " '', 'active', 'cli', '2026-01-01 00:00:00', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 'n')"
            )
        )
        new_id = connection.execute(text("SELECT id FROM subscribers WHERE email = 'p3@example.org'")).scalar()
        assert new_id == 3
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()
