"""``bulletin serve`` starts uvicorn on the given port, with or without the scheduler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from bulletin.cli import cli

from .smtp_server import free_port


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "bulletin.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "serve.db"}"\n[web]\nbase_url = "https://news.example.org"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["--config", str(path), "db", "upgrade"])
    assert result.exit_code == 0, result.output
    return path


def start(config: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bulletin", "--config", str(config), "serve", "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "BULLETIN_SECRET_KEY": "test-secret-key-0123456789abcdef"},
    )


def wait_until_up(url: str, process: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            return httpx.get(url, timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("bulletin serve did not answer")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=20)
    return output


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--with-scheduler",)])
def test_serve_answers_on_the_port(config: Path, extra: tuple[str, ...]) -> None:
    port = free_port()
    process = start(config, port, *extra)
    try:
        response = wait_until_up(f"http://127.0.0.1:{port}/subscribe", process)
        assert response.status_code == 200
        assert "; secure" in response.headers["set-cookie"].lower()
        assert "server" not in response.headers
    finally:
        output = stop(process)
    assert f"Serving on http://127.0.0.1:{port}/" in output
    assert ("Scheduler running in this process." in output) == bool(extra)
    assert "Traceback" not in output


def test_serve_without_secret_key_says_so_in_one_line(config: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "BULLETIN_SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "bulletin", "--config", str(config), "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("Error: BULLETIN_SECRET_KEY must be set")
    assert len(result.stderr.strip().splitlines()) == 1
