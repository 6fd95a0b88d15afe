"""The whole job on embedded defaults: ``make demo`` runs ``python -m bulletin.demo DEMO_DIR``.

It creates DEMO_DIR with its config and SQLite database, ingests the sample news shipped in
``samples/news``, imports the sample subscribers of ``samples/subscribers.csv``, creates an
edition, previews it, approves it as ``demo`` and sends it to an SMTP server started in this
process, which files every message in ``DEMO_DIR/Maildir``. Each step is the ``bulletin``
command a person would type, run in-process; the demo ends with the deliveries per variant and
where to look at the previews and the mail.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from sqlalchemy import func, select

from bulletin.cli import cli
from bulletin.compose import preview
from bulletin.config import SECRET_KEY_ENV, load_settings, sample_config
from bulletin.db import engine_for, reading
from bulletin.errors import BulletinError
from bulletin.models import Delivery, Edition, EditionVariant
from bulletin.mta.devsmtp import MaildirSMTPServer, free_port

MARKER = ".bulletin-demo"
SECRET_FILE = "secret.key"
REPO_ROOT = Path(__file__).resolve().parents[2]


class DemoError(BulletinError):
    """The demo cannot run (a missing sample, a folder that is not a demo folder)."""


@dataclass
class DemoResult:
    """Where the demo put things, and what it sent."""

    demo_dir: Path
    config: Path
    edition_id: int
    preview_index: Path
    maildir: Path
    delivered: int
    rows: list[tuple[str, str, int, int, int]] = field(default_factory=list)


def samples_dir() -> Path:
    """The ``samples`` folder of the source tree (the demo runs from a checkout)."""
    folder = REPO_ROOT / "samples"
    if not (folder / "news").is_dir() or not (folder / "subscribers.csv").is_file():
        raise DemoError(f"the sample news and subscribers are not in {folder}: run the demo from a bulletin checkout")
    return folder


def prepare_folder(demo_dir: Path) -> None:
    """Create DEMO_DIR, or empty it when an earlier demo made it; never touch anything else."""
    if demo_dir.exists():
        if not demo_dir.is_dir():
            raise DemoError(f"{demo_dir} exists and is not a folder")
        if any(demo_dir.iterdir()) and not (demo_dir / MARKER).exists():
            raise DemoError(f"{demo_dir} is not empty and was not made by the demo: choose another folder")
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True)
    (demo_dir / MARKER).write_text("made by python -m bulletin.demo; deleted and remade by the next run\n")


def _secret_key(demo_dir: Path) -> str:
    key = os.environ.get(SECRET_KEY_ENV, "")
    if len(key) >= 16:
        return key
    key = secrets.token_urlsafe(32)
    path = demo_dir / SECRET_FILE
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(0o600)
    os.environ[SECRET_KEY_ENV] = key
    return key


def write_config(demo_dir: Path, smtp_port: int, samples: Path) -> Path:
    """The demo's bulletin.toml: the commented sample with a local SMTP server and the sample news."""
    config = demo_dir / "bulletin.toml"
    overrides: dict[str, dict[str, Any]] = {
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "messages_per_second": 1000.0, "connections": 2},
        "web": {"base_url": "http://localhost:8000"},
        "ingest": {"folders": [str(samples / "news")]},
        "workflow": {"reviewers": ["review@example.org"]},
    }
    config.write_text(sample_config(overrides), encoding="utf-8")
    return config


Step = Callable[[Sequence[str]], None]


def run_command(config: Path, args: Sequence[str], *, last_lines: int | None = None) -> None:
    """Run one ``bulletin`` command in this process, echoing it first (and only its last lines if asked)."""

    click.secho("$ bulletin " + " ".join(_quote(a) for a in args), fg="cyan", bold=True)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured) if last_lines else contextlib.nullcontext():
            cli.main(["--config", str(config), *args], prog_name="bulletin", standalone_mode=False)
    except click.ClickException as exc:
        raise DemoError(f"'bulletin {' '.join(args)}' failed: {exc.format_message()}") from None
    if last_lines:
        lines = captured.getvalue().splitlines()
        if len(lines) > last_lines:
            click.echo(f"[{len(lines) - last_lines} more lines]")
        click.echo("\n".join(lines[-last_lines:]))
    click.echo()


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or "|" in arg) else arg


def delivery_table(config: Path, edition_id: int) -> list[tuple[str, str, int, int, int]]:
    """(language, interests, sent, not sent (skipped, deferred or failed), total) per variant."""
    settings = load_settings(config)
    engine = engine_for(settings)
    try:
        with reading(engine) as session:
            query = (
                select(EditionVariant.language, EditionVariant.interests, Delivery.state, func.count(Delivery.id))
                .join(Delivery, Delivery.variant_id == EditionVariant.id)
                .where(Delivery.edition_id == edition_id)
                .group_by(EditionVariant.language, EditionVariant.interests, Delivery.state)
            )
            counts: dict[tuple[str, str], dict[str, int]] = {}
            for language, interests, state, count in session.execute(query):
                counts.setdefault((language, interests), {})[str(state)] = int(count)
    finally:
        engine.dispose()
    rows = []
    for (language, interests), states in sorted(counts.items()):
        sent = states.get("sent", 0)
        total = sum(states.values())
        rows.append((language, interests or "(all topics)", sent, total - sent, total))
    return rows


def _latest_edition(config: Path) -> int:
    settings = load_settings(config)
    engine = engine_for(settings)
    try:
        with reading(engine) as session:
            edition_id = session.scalar(select(func.max(Edition.id)))
    finally:
        engine.dispose()
    if edition_id is None:
        raise DemoError("no edition was created")
    return int(edition_id)


def print_table(rows: list[tuple[str, str, int, int, int]]) -> None:
    width = max([len("Interests"), *(len(r[1]) for r in rows)])
    header = f"{'Lang':<5} {'Interests':<{width}} {'Sent':>6} {'Unsent':>6} {'Total':>6}"
    click.echo(header)
    click.echo("-" * len(header))
    for language, interests, sent, other, total in rows:
        click.echo(f"{language:<5} {interests:<{width}} {sent:>6} {other:>6} {total:>6}")
    click.echo("-" * len(header))
    sums = [sum(row[2] for row in rows), sum(row[3] for row in rows), sum(row[4] for row in rows)]
    click.echo(f"{'':<5} {f'{len(rows)} variants':<{width}} {sums[0]:>6} {sums[1]:>6} {sums[2]:>6}")


def run_demo(demo_dir: Path) -> DemoResult:
    """Run the whole pipeline into ``demo_dir`` and return where everything is."""
    started = time.monotonic()
    samples = samples_dir()
    demo_dir = demo_dir.resolve()
    prepare_folder(demo_dir)
    _secret_key(demo_dir)
    port = free_port()
    config = write_config(demo_dir, port, samples)
    maildir = demo_dir / "Maildir"

    with MaildirSMTPServer(maildir, port=port) as server:
        click.secho(f"SMTP server listening on 127.0.0.1:{port}, delivering to {maildir}\n", fg="green")
        run_command(config, ["init"])
        run_command(config, ["news", "ingest", str(samples / "news")])
        report = demo_dir / "subscribers-import-report.csv"
        run_command(
            config,
            ["subscribers", "import", str(samples / "subscribers.csv"), "--confirmed", "--report", str(report)],
        )
        run_command(config, ["edition", "create"])
        edition_id = _latest_edition(config)
        run_command(config, ["edition", "preview", str(edition_id), "--all"], last_lines=3)
        run_command(config, ["edition", "submit", str(edition_id), "--by", "demo"])
        run_command(config, ["edition", "approve", str(edition_id), "--by", "demo"])
        run_command(config, ["edition", "send", str(edition_id)])
        delivered = server.delivered

    settings = load_settings(config)
    result = DemoResult(
        demo_dir=demo_dir,
        config=config,
        edition_id=edition_id,
        preview_index=preview.index_path(settings, edition_id),
        maildir=maildir,
        delivered=delivered,
        rows=delivery_table(config, edition_id),
    )
    click.secho(f"Deliveries of edition {edition_id} per variant", bold=True)
    print_table(result.rows)
    click.echo()
    click.echo(f"Messages in the Maildir: {delivered}")
    click.echo(f"Preview index:           {result.preview_index}")
    click.echo(f"Maildir:                 {maildir}")
    click.echo(f"Config:                  {config}")
    click.echo(f"Done in {time.monotonic() - started:.1f} s.")
    return result


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        click.echo("usage: python -m bulletin.demo DEMO_DIR", err=True)
        sys.exit(2)
    try:
        run_demo(Path(args[0]))
    except BulletinError as exc:
        click.secho(f"demo failed: {exc}", fg="red", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
