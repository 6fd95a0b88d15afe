"""``bulletin serve`` (issue 13, findings 6 and 7): no token in the access log, no forged client address."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from .smtp_server import free_port
from .test_web_serve import config, start, stop, wait_until_up  # noqa: F401  (config is a fixture)

TOKEN = "WzEsImFiYyIsIm5vbmNlIl0.c2lnbmF0dXJlLW9mLWEtdG9rZW4"


@pytest.mark.slow
def test_the_access_log_never_records_a_token_and_ignores_forwarded_for(config) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Finding 6: /preferences/TOKEN and /confirm/TOKEN were logged in full; finding 7: X-Forwarded-For was trusted."""
    import httpx

    port = free_port()
    process = start(config, port)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        for path in ("preferences", "confirm", "unsubscribe"):
            httpx.get(f"http://127.0.0.1:{port}/{path}/{TOKEN}?x=1", timeout=5)
        httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Forwarded-For": "203.0.113.66"}, timeout=5)
    finally:
        output = stop(process)
    assert TOKEN not in output
    for path in ("preferences", "confirm", "unsubscribe"):
        assert f"GET /{path}/[redacted]?x=1 HTTP/1.1" in output, output
    # No proxy was named, so the header is not believed.
    assert "203.0.113.66" not in output


@pytest.mark.slow
def test_forwarded_for_is_believed_only_from_the_proxies_named(config) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    import httpx

    port = free_port()
    process = start(config, port, "--forwarded-allow-ips", "127.0.0.1")
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Forwarded-For": "203.0.113.66"}, timeout=5)
    finally:
        output = stop(process)
    assert "203.0.113.66" in output


def test_redaction_keeps_everything_but_the_token() -> None:
    from bulletin.web.logs import RedactTokens, redact_path

    assert redact_path("/confirm/abc.def?lang=fr") == "/confirm/[redacted]?lang=fr"
    assert redact_path("/staff/editions/3") == "/staff/editions/3"
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", f"/preferences/{TOKEN}", "1.1", 200),
        None,
    )
    assert RedactTokens().filter(record)
    assert TOKEN not in record.getMessage() and "/preferences/[redacted]" in record.getMessage()


def test_serve_help_says_forwarded_for_is_off_by_default() -> None:
    from bulletin.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert "Without it the header is ignored" in " ".join(result.output.split())
