"""Staff commands check the account before asking for a password."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bulletin.cli import cli


def test_password_for_an_unknown_member_fails_before_any_prompt(tmp_path: Path) -> None:
    config = tmp_path / "bulletin.toml"
    config.write_text("", encoding="utf-8")
    assert CliRunner().invoke(cli, ["--config", str(config), "init"]).exit_code == 0
    result = CliRunner().invoke(cli, ["--config", str(config), "staff", "password", "nobody"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: no staff member named 'nobody'"

    added = CliRunner().invoke(
        cli,
        ["--config", str(config), "staff", "add", "marie", "--role", "editor", "--password-stdin"],
        input="a long enough passphrase\n",
    )
    assert added.exit_code == 0, added.output
    again = CliRunner().invoke(cli, ["--config", str(config), "staff", "add", "Marie", "--role", "admin"])
    assert again.exit_code == 1
    assert again.output.strip() == "Error: a staff member named 'Marie' already exists"
