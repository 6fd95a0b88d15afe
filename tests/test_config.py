"""Configuration: defaults, the sample file, and one clear line for every bad file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from bulletin.cli import cli
from bulletin.config import ConfigError, Settings, load_settings, sample_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bulletin.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_sample_config_round_trips_to_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, sample_config())
    settings = load_settings(path)
    assert settings == Settings()
    assert settings.languages == ["fr", "en", "es"]
    assert len(settings.interests) == 8
    # Every setting is documented in the sample with a comment line above it.
    text = sample_config()
    assert "[smtp]" in text and "messages_per_second = 14.0" in text
    assert text.count("\n# ") > 40


def test_relative_sqlite_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert load_settings(path).database_url == f"sqlite:///{tmp_path / 'subscribers.db'}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'blue'\n", "colour: unknown setting"),
        ("[smtp]\nport = 'twenty-five'\n", "smtp.port: expected an integer"),
        ("[smtp]\nsecurity = 'ssl'\n", "smtp.security: expected 'none' or 'starttls' or 'tls'"),
        ("[smtp]\nprot = 25\n", "smtp.prot: unknown setting"),
        ("languages = 'fr'\n", "languages: expected a list"),
        (
            "[[interests]]\nkey = 'youth'\n"
            "labels = { fr = 'Jeunesse', en = 'Youth', es = 'Juventud', de = 'Jugend' }\n",
            "interests[0].labels: unknown language 'de'",
        ),
        ("default_language = 'it'\n", "default_language: 'it' is not one of languages"),
        ("[schedule]\ntimezone = 'Mars/Olympus'\n", "schedule.timezone: unknown time zone"),
        ("this is not toml\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_line_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)

    result = CliRunner().invoke(cli, ["--config", str(path), "subscribers", "stats"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0]


def test_missing_explicit_config_file_is_reported(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.toml"), "subscribers", "stats"])
    assert result.exit_code == 2
    assert "no such config file" in result.output


def test_init_writes_a_commented_config_and_creates_the_database(tmp_path: Path) -> None:
    config = tmp_path / "site" / "bulletin.toml"
    result = CliRunner().invoke(cli, ["--config", str(config), "init"])
    assert result.exit_code == 0, result.output
    assert tomllib.loads(config.read_text(encoding="utf-8"))["languages"] == ["fr", "en", "es"]
    assert (tmp_path / "site" / "subscribers.db").exists()
    # Running it again keeps the file an admin may have edited.
    config.write_text(config.read_text(encoding="utf-8").replace('list_name = "Bulletin"', 'list_name = "Mine"'))
    result = CliRunner().invoke(cli, ["--config", str(config), "init"])
    assert result.exit_code == 0
    assert 'list_name = "Mine"' in config.read_text(encoding="utf-8")


def test_commands_refuse_a_database_that_was_never_set_up(tmp_path: Path) -> None:
    import sqlite3

    config = write(tmp_path, "")
    sqlite3.connect(tmp_path / "subscribers.db").close()
    result = CliRunner().invoke(cli, ["--config", str(config), "subscribers", "list"])
    assert result.exit_code == 1
    assert "is not set up or is out of date: run 'bulletin db upgrade'" in result.output


def test_secret_key_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BULLETIN_SECRET_KEY")
    with pytest.raises(ConfigError, match="BULLETIN_SECRET_KEY"):
        _ = Settings().secret_key
    monkeypatch.setenv("BULLETIN_SECRET_KEY", "q8Zr-2mT_vLw9kXa")
    assert Settings().secret_key == "q8Zr-2mT_vLw9kXa"
    monkeypatch.setenv("BULLETIN_SECRET_KEY", "x" * 32)
    with pytest.raises(ConfigError, match="too easy to guess"):
        _ = Settings().secret_key


def test_a_command_on_a_missing_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    config = write(tmp_path, "")
    result = CliRunner().invoke(cli, ["--config", str(config), "subscribers", "list"])
    assert result.exit_code == 1
    assert f"no database at {tmp_path / 'subscribers.db'}: run 'bulletin init'" in result.output
    assert not (tmp_path / "subscribers.db").exists()


def test_reading_commands_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    import sqlite3

    config = write(tmp_path, "")
    assert CliRunner().invoke(cli, ["--config", str(config), "init"]).exit_code == 0
    writer = sqlite3.connect(tmp_path / "subscribers.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        result = CliRunner().invoke(cli, ["--config", str(config), "subscribers", "list", "--json"])
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "[\n]"
