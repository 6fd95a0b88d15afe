"""``make demo`` on a temporary folder: the whole job, checked through the Maildir it fills."""

from __future__ import annotations

import csv
import mailbox
import os
import shutil
import subprocess
import sys
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import select

from bulletin.app.links import subscriber_url
from bulletin.compose import placeholders
from bulletin.compose.variants import subscriber_variant, variant_key
from bulletin.config import SECRET_KEY_ENV, load_settings
from bulletin.db import engine_for, reading
from bulletin.models import Approval, EditionVariant, Subscriber

# Real processes and whole runs: seconds each. `make test PYTEST_ARGS='-m "not slow"'` skips them.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def run_make_demo(demo_dir: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # Run the Makefile's own target with this test's virtual environment, without reinstalling it.
    venv = Path(sys.prefix)
    env = {key: value for key, value in os.environ.items() if key != SECRET_KEY_ENV}
    return subprocess.run(
        ["make", "-C", str(REPO), "-o", str(venv / ".installed-stamp"), "demo", f"DEMO_DIR={demo_dir}", f"VENV={venv}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _sample_addresses() -> set[str]:
    with (REPO / "samples" / "subscribers.csv").open(encoding="utf-8") as handle:
        return {row["email"].lower() for row in csv.DictReader(handle)}


def _messages(maildir: Path) -> list[EmailMessage]:
    box = mailbox.Maildir(str(maildir), create=False)
    parsed = []
    for key in box.iterkeys():
        with box.get_file(key) as handle:
            message = BytesParser(policy=policy.default).parse(handle)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
    return parsed


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One run of ``make demo`` shared by the tests of this module."""
    demo_dir = tmp_path_factory.mktemp("make-demo") / "demo"
    return demo_dir, run_make_demo(demo_dir)


def test_make_demo_runs_the_whole_job_and_mails_every_sample_subscriber_what_was_approved(
    demo: tuple[Path, subprocess.CompletedProcess[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    demo_dir, result = demo
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    output = result.stdout
    for step in ("init", "news ingest", "subscribers import", "edition create", "edition preview", "edition approve"):
        assert f"$ bulletin {step}" in output
    index = demo_dir / "previews" / "edition-1" / "index.html"
    maildir = demo_dir / "Maildir"
    assert f"Preview index:           {index}" in output
    assert f"Maildir:                 {maildir}" in output
    assert index.is_file()

    sample = _sample_addresses()
    messages = _messages(maildir)
    assert len(messages) == len(sample) >= 200
    assert f"Messages in the Maildir: {len(sample)}" in output
    assert {str(m["Delivered-To"]).lower() for m in messages} == set(sample)
    assert len({str(m["Message-ID"]) for m in messages}) == len(messages)

    # Every message is its subscriber's approved variant, with only their own values filled in.
    monkeypatch.setenv(SECRET_KEY_ENV, (demo_dir / "secret.key").read_text(encoding="utf-8").strip())
    settings = load_settings(demo_dir / "bulletin.toml")
    engine = engine_for(settings)
    with reading(engine) as session:
        (approval,) = session.scalars(select(Approval)).all()
        variants = {(v.language, v.interests): v for v in session.scalars(select(EditionVariant))}
        people = {s.email.lower(): s for s in session.scalars(select(Subscriber))}
        marker = placeholders.edition_marker(session, approval.edition_id)
    engine.dispose()
    slot = placeholders.slot
    assert approval.approver == "demo" and approval.voided_at is None
    table_total = output.rsplit(f"{len(variants)} variants", 1)[1].split()
    assert table_total[:3] == [str(len(sample)), "0", str(len(sample))]
    for message in messages:
        person = people[str(message["Delivered-To"]).lower()]
        variant = variants[subscriber_variant(settings, person.language, person.interests)]
        assert approval.variant_hashes[variant_key(variant.language, variant.interests)] == (variant.content_hash)
        assert message["Subject"] == variant.subject
        assert str(message["List-Unsubscribe"]).startswith("<http://localhost:8000/unsubscribe/")
        unsubscribe = subscriber_url(settings, "unsubscribe", person.id, person.email, person.link_nonce)
        preferences = subscriber_url(settings, "preferences", person.id, person.email, person.link_nonce)
        text = message.get_body(("plain",))
        assert text is not None
        expected = (
            variant.text.replace(slot(marker, placeholders.NAME), f" {person.name}" if person.name else "")
            .replace(slot(marker, placeholders.UNSUBSCRIBE_URL), unsubscribe)
            .replace(slot(marker, placeholders.PREFERENCES_URL), preferences)
        )
        assert text.get_content().replace("\r\n", "\n") == expected


def test_the_demo_remakes_its_own_folder_and_leaves_any_other_alone(
    demo: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    demo_dir, first = demo
    assert first.returncode == 0
    again = run_make_demo(demo_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    # A fresh database and Maildir: each subscriber has one message, not two.
    assert len(_messages(demo_dir / "Maildir")) == len(_sample_addresses())
    assert f"Messages in the Maildir: {len(_sample_addresses())}" in again.stdout

    other = tmp_path / "documents"
    other.mkdir()
    (other / "thesis.txt").write_text("precious", encoding="utf-8")
    refused = run_make_demo(other)
    assert refused.returncode != 0
    assert f"demo failed: {other} is not empty and was not made by the demo: choose another folder" in refused.stderr
    assert (other / "thesis.txt").read_text(encoding="utf-8") == "precious"
