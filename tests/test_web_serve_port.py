"""`bulletin serve` on a port that is taken: one line, no server log."""

from __future__ import annotations

import socket
from pathlib import Path

from click.testing import CliRunner

from bulletin.cli import cli


def test_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "bulletin.toml"
    config.write_text("", encoding="utf-8")
    assert CliRunner().invoke(cli, ["--config", str(config), "init"]).exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["--config", str(config), "serve", "--port", str(port)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"]
