"""The development SMTP server: an empty folder becomes a Maildir, and a message it cannot store is a
temporary failure with the reason on its console, never a 500 to every client."""

from __future__ import annotations

import mailbox
import shutil
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bulletin.mta.devsmtp import MaildirError, MaildirSMTPServer, open_maildir

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nbody\r\n"


def _send(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("a@example.org", ["b@example.org"], MESSAGE)


def test_an_existing_empty_folder_becomes_a_maildir(tmp_path: Path) -> None:
    folder = tmp_path / "Maildir"
    folder.mkdir()
    with MaildirSMTPServer(folder) as server:
        _send(server.port)
    assert server.delivered == 1
    stored = list(mailbox.Maildir(str(folder), create=False))
    assert len(stored) == 1 and stored[0]["Subject"] == "hello"


def test_a_folder_holding_other_files_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "letter.txt").write_text("keep me")
    with pytest.raises(MaildirError, match="is not a Maildir"):
        open_maildir(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["letter.txt"]


def test_a_message_that_cannot_be_stored_is_a_temporary_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "Maildir"
    with MaildirSMTPServer(folder) as server:
        # The Maildir loses its tmp folder while the server runs (a cleanup script, a full disk...).
        shutil.rmtree(folder / "tmp")
        (folder / "tmp").write_text("not a folder")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            _send(server.port)
    assert refused.value.smtp_code == 451
    assert b"Cannot store the message" in refused.value.smtp_error
    assert server.delivered == 0 and server.store_failures == 1
    assert "cannot store a message in" in capsys.readouterr().err


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("make", "message", "status"),
    [
        (lambda p: p.write_text("a file"), "exists and is not a folder", 2),
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), "is not a Maildir", 2),
    ],
    ids=["a-file", "a-folder-with-files"],
)
def test_the_command_refuses_an_unusable_folder_in_one_line(tmp_path: Path, make, message: str, status: int) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "target"
    make(target)
    completed = subprocess.run(
        [sys.executable, "-m", "bulletin.mta.devsmtp", str(target), "--port", "1025"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == status
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in completed.stderr


@pytest.mark.timeout(60)
def test_the_command_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        completed = subprocess.run(
            [sys.executable, "-m", "bulletin.mta.devsmtp", str(tmp_path / "Maildir"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert completed.returncode == 1
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0]
