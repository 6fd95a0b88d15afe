"""Benchmark: SIGKILL a real ``bulletin edition send`` K times at random moments, resume, and count.

Usage: python bench/crash_resume.py [--subscribers 4000] [--kills 5] [--connections 2] [--seed 1]
                                    [--database-url URL]

In a fresh SQLite database in a temporary folder (or the empty database of ``--database-url``,
for example a PostgreSQL one) it creates N active subscribers in 3 languages and 3 interest
sets, and an edition with an approved stored variant for each of the 9. It runs a recording SMTP
server (aiosmtpd) on loopback, with no rate limit anywhere, so the sender goes at full speed.
Then K times: start ``bulletin edition send ID --json``, wait until a random number of messages
has arrived, SIGKILL it, wait until the server has closed every connection, and read the ledger:
the rows handed over without a recorded answer (those the next run reports as uncertain) and,
among them, those the server had already accepted (each one is sent again: a duplicate).
Finally one more ``edition send`` resumes and finishes the send.

It prints, per kill and in total: duplicates, deliveries reported uncertain, and whether every
duplicate was reported; then delivered, lost, duplicates and reported-uncertain for the whole
send, and the send rate. Targets: per kill, duplicates <= 2 x connections and reported
uncertain <= 4 x connections; every duplicate reported; nothing lost.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from bulletin.compose import placeholders
from bulletin.compose.approval import note_checked
from bulletin.compose.checks import content_hash
from bulletin.compose.render import render_fingerprint
from bulletin.compose.variants import variant_key
from bulletin.config import settings_from_dict
from bulletin.db import make_engine, reading, transaction
from bulletin.migrate import upgrade
from bulletin.models import (
    Approval,
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    EditionVariant,
    Subscriber,
    utcnow,
)
from bulletin.mta.devsmtp import free_port
from population import insert_active_subscribers

LANGUAGES = ("fr", "en", "es")
INTEREST_SETS = ("", "youth", "cities,youth")


class Recorder:
    """What the SMTP server accepted, and how many client connections are open."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.recipients: list[str] = []
        self.open = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.recipients.extend(envelope.rcpt_tos)
        return "250 2.0.0 queued"


class CountingSMTP(SMTP):
    def __init__(self, recorder: Recorder, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorder = recorder

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        with self.recorder.lock:
            self.recorder.open -= 1


class RecordingController(Controller):
    def __init__(self, recorder: Recorder, **kwargs: Any) -> None:
        super().__init__(recorder, **kwargs)
        self.recorder = recorder

    def factory(self) -> SMTP:
        with self.recorder.lock:
            self.recorder.open += 1
        return CountingSMTP(self.recorder, self.handler, **self.SMTP_kwargs)


def add_subscribers(engine: Any, total: int) -> None:
    combos = list(itertools.product(LANGUAGES, INTEREST_SETS))
    insert_active_subscribers(
        engine,
        (
            (f"reader{n}@crash.example.net", f"Lecteur {n}" if n % 3 else None, *combos[n % len(combos)])
            for n in range(total)
        ),
    )


def approved_edition(engine: Any, settings: Any) -> int:
    """An approved edition with a stored variant per (language, interests), as approve() leaves it."""
    now = utcnow()
    with transaction(engine) as session:
        edition = Edition(
            status=EditionStatus.APPROVED,
            period_start=now,
            period_end=now,
            subjects={},
            intros={},
            render_fingerprint=render_fingerprint(settings),
        )
        session.add(edition)
        session.flush()
        hashes = {}
        marker = placeholders.edition_marker(session, edition.id)
        name, leave = (placeholders.slot(marker, slot) for slot in (placeholders.NAME, placeholders.UNSUBSCRIBE_URL))
        for language, interests in itertools.product(LANGUAGES, INTEREST_SETS):
            subject = f"[{language}] Bulletin {edition.id} · {interests or 'all topics'}"
            html = (
                f"<html><body><p>Bonjour{name},</p>"
                + "".join(f"<p>Nouvelle {n} : une initiative municipale. {'Texte ' * 40}</p>" for n in range(10))
                + f'<p><a href="{leave}">Se désabonner</a></p></body></html>'
            )
            text = f"Bonjour{name},\n\nNouvelles.\n\nSe désabonner : {leave}\n"
            hashes[variant_key(language, interests)] = digest = content_hash(subject, html, text)
            session.add(
                EditionVariant(
                    edition_id=edition.id,
                    language=language,
                    interests=interests,
                    subject=subject,
                    preheader="",
                    html=html,
                    text=text,
                    content_hash=digest,
                    html_size=len(html.encode()),
                    item_count=10,
                    problems="",
                )
            )
        session.add(Approval(edition_id=edition.id, approver="bench", at=now, variant_hashes=hashes))
        note_checked(session, edition)
        return edition.id


def handed_over(engine: Any, edition_id: int) -> set[str]:
    """Recipients whose row is handed over with no recorded answer."""
    with reading(engine) as session:
        return set(
            session.scalars(
                select(Subscriber.email)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .where(
                    Delivery.edition_id == edition_id,
                    Delivery.state == DeliveryState.SENDING,
                    Delivery.handed_at.is_not(None),
                )
            )
        )


def wait_until(condition: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"gave up waiting: {what}")
        time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=4000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=500, help="delivery.batch_size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="an empty database to use instead of a new SQLite file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    os.environ.setdefault("BULLETIN_SECRET_KEY", "bench-secret-key-0123456789")
    rng = random.Random(args.seed)

    folder = Path(tempfile.mkdtemp(prefix="bulletin-crash-bench-"))
    url = args.database_url or f"sqlite:///{folder / 'bench.db'}"
    port = free_port()
    config = folder / "bulletin.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nconnections = {args.connections}\n'
        "messages_per_second = 100000.0\nmessages_per_hour = 1000000000\n"
        f"[delivery]\nbatch_size = {args.batch_size}\n",
        encoding="utf-8",
    )
    settings = settings_from_dict({"database": {"url": url}, "smtp": {"port": port}}, folder)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    add_subscribers(engine, args.subscribers)
    edition_id = approved_edition(engine, settings)

    recorder = Recorder()
    controller = RecordingController(recorder, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    command = [sys.executable, "-m", "bulletin", "--config", str(config), "edition", "send", str(edition_id)]
    print(
        f"setup:       {args.subscribers:,} subscribers, {args.connections} connection(s), batch {args.batch_size}, "
        f"{'PostgreSQL' if url.startswith('postgres') else 'SQLite'}, no rate limit, seed {args.seed}"
    )
    # Per kill: messages that arrived in that run, rows reported uncertain, duplicates to come.
    per_kill: list[tuple[int, int, int]] = []
    handed_at_kills: set[str] = set()
    delivered_at_kills: set[str] = set()
    sending_seconds = 0.0
    try:
        for kill in range(1, args.kills + 1):
            before = len(recorder.recipients)
            started = time.perf_counter()
            child = subprocess.Popen([*command, "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            # A random moment: after 1 to 2/(K+1) of the list has arrived in this run.
            wanted = before + rng.randint(1, max(2 * args.subscribers // (args.kills + 1), 2))
            wait_until(
                lambda wanted=wanted, child=child: len(recorder.recipients) >= wanted or child.poll() is not None,
                "messages",
            )
            if child.poll() is not None:
                sys.exit(f"the send finished before kill {kill}: use more subscribers")
            child.send_signal(signal.SIGKILL)
            child.wait()
            sending_seconds += time.perf_counter() - started
            if child.stderr is not None:
                child.stderr.close()
            wait_until(lambda: recorder.open <= 0, "the server to close its connections")
            handed = handed_over(engine, edition_id)
            received = Counter(recorder.recipients)
            delivered = {email for email in handed if received[email]}
            handed_at_kills |= handed
            delivered_at_kills |= delivered
            per_kill.append((len(recorder.recipients) - before, len(handed), len(delivered)))
            print(
                f"kill {kill}:      after {len(recorder.recipients) - before:,} messages in this run: "
                f"{len(delivered)} duplicate(s) to come, {len(handed)} reported uncertain "
                f"(bounds {2 * args.connections} and {4 * args.connections})"
            )
        started = time.perf_counter()
        final = subprocess.run([*command, "--json"], capture_output=True, text=True)
        sending_seconds += time.perf_counter() - started
        if final.returncode != 0:
            sys.exit(f"the resumed send failed: {final.stderr.strip()}")
        report = json.loads(final.stdout)
        wait_until(lambda: recorder.open <= 0, "the server to close its connections")
    finally:
        controller.stop()

    received = Counter(recorder.recipients)
    with reading(engine) as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.state, Delivery.uncertain)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.edition_id == edition_id)
        ).all()
    expected = {email for email, state, _ in rows if state is not DeliveryState.SKIPPED}
    reported = {email for email, _, times in rows if times > 0}
    duplicates = {email for email, count in received.items() if count > 1}
    extra = sum(count - 1 for count in received.values())
    lost = expected - set(received)
    kills = max(args.kills, 1)
    print(f"resume:      {report['sent']:,} sent in {report['elapsed']:.1f} s, edition {report['status']}")
    print(f"delivered:   {len(set(received) & expected):,} of {len(expected):,}; lost {len(lost)}")
    print(
        f"duplicates:  {extra} in total ({len(duplicates)} recipients), {extra / kills:.1f} per kill "
        f"(target <= {2 * args.connections} per kill)"
    )
    print(
        f"uncertain:   {len(reported)} reported in total, {len(reported) / kills:.1f} per kill "
        f"(target <= {4 * args.connections} per kill); largest at one kill: {max(k[1] for k in per_kill)}"
    )
    print(
        f"reported:    every duplicate among the uncertain: {duplicates <= reported}; "
        f"reported = handed over at the kills: {reported == handed_at_kills}; "
        f"duplicates = accepted at the kills: {duplicates == delivered_at_kills}"
    )
    print(
        f"send rate:   {len(recorder.recipients):,} messages in {sending_seconds:.1f} s of sending processes = "
        f"{len(recorder.recipients) / sending_seconds:,.0f} msg/s (start-ups and kills included); "
        f"resume alone {report['sent'] / max(report['elapsed'], 1e-9):,.0f} msg/s"
    )
    print(f"machine:     {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    engine.dispose()
    if args.keep:
        print(f"kept:        {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
