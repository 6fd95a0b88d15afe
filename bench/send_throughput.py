"""Benchmark: send an edition to N subscribers through Postfix's smtp-sink and compare with smtp-source.

Usage: python bench/send_throughput.py [--subscribers 100000] [--connections 2] [--keep]

In a fresh SQLite database in a temporary folder it creates N active subscribers spread over the
486 variants of the composer benchmark (3 languages x 162 interest sets of one to four of eight
interests), renders the edition with the real composer (bulletin.compose), and runs the real
``bulletin edition send ID --json`` in a child process against ``smtp-sink -u nobody -c
127.0.0.1:PORT 1000``: recipient list frozen, every delivery moved to ``sending`` and then ``sent``
in committed transactions, C SMTP connections, no rate limit. In the same run it times Postfix's
own ``smtp-source -d -s C -m N -l SIZE`` against the same sink, with the same connection count
and the average size of the messages bulletin sent, and prints both rates, their ratio and the
sender's peak RSS, how long freezing the list took (one INSERT ... SELECT) and the wall time of
``edition send`` against its sending time. Targets: ratio >= 0.9 (aim 0.95) at 100,000 subscribers
and 2 connections; sender peak RSS <= 120 MB at 100,000 and 1,000,000; freezing 1,000,000 in under
15 s; wall time within 1.1 x the sending time.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bulletin.app.editions import create_edition
from bulletin.app.links import subscriber_url
from bulletin.compose import placeholders
from bulletin.compose.approval import note_checked
from bulletin.compose.render import render_edition
from bulletin.compose.variants import variant_key, variant_subscriber_counts
from bulletin.config import settings_from_dict
from bulletin.db import make_engine, reading, transaction
from bulletin.migrate import upgrade
from bulletin.models import Approval, Edition, EditionStatus, EditionVariant, Subscriber, utcnow
from bulletin.mta import mail
from bulletin.mta.devsmtp import free_port
from bulletin.mta.recipients import freeze_recipients
from population import insert_active_subscribers

INTERESTS = ["cities", "cybercrime", "drugs", "policing", "research", "trafficking", "violence", "youth"]
LANGUAGES = ["fr", "en", "es"]


def tool(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/lib/postfix/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    sys.exit(f"{name} not found: install Debian's postfix package (apt-get install postfix)")


def high_water_kb(pid: int) -> int:
    """Peak resident memory of a running process so far, from /proc (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a running process has used so far, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def news_items(engine: Any, stories: int) -> None:
    """The composer benchmark's stories (it also adds one reader per variant, kept here)."""
    path = Path(__file__).with_name("render_variants.py")
    spec = importlib.util.spec_from_file_location("render_variants", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.populate(engine, stories)


def add_subscribers(engine: Any, total: int, seed: int = 3) -> None:
    """Bring the active subscribers up to ``total``, spread at random over the 486 variants."""
    sets = [",".join(c) for size in range(1, 5) for c in itertools.combinations(INTERESTS, size)]
    combos = list(itertools.product(LANGUAGES, sets))
    assert len(combos) == 486
    rng = random.Random(seed)
    with reading(engine) as session:
        existing = len(session.scalars(select(Subscriber.id)).all())
    insert_active_subscribers(
        engine,
        (
            (f"subscriber{n}@bench.example.net", f"Lecteur {n}" if n % 3 else None, *rng.choice(combos))
            for n in range(existing, total)
        ),
        batch=20000,
    )


def approve_as_rendered(engine: Any, edition_id: int) -> tuple[int, int, float]:
    """Lock the approval to the stored rendering and mark the edition approved; return variant stats."""
    with transaction(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        variants = session.scalars(select(EditionVariant).where(EditionVariant.edition_id == edition_id)).all()
        hashes = {variant_key(v.language, v.interests): v.content_hash for v in variants}
        session.add(Approval(edition_id=edition_id, approver="bench", at=utcnow(), variant_hashes=hashes))
        edition.status = EditionStatus.APPROVED
        # As approve() does: the variants were just rendered to these hashes, no need to render them again.
        note_checked(session, edition)
        sizes = [v.html_size for v in variants]
        return len(variants), sum(1 for v in variants if v.item_count), sum(sizes) / len(sizes)


def average_message_size(engine: Any, settings: Any, edition_id: int) -> int:
    """Mean size of a personalised message, weighted by the readers of each variant."""
    total = count = 0
    with reading(engine) as session:
        readers = variant_subscriber_counts(session, settings)
        marker = placeholders.edition_marker(session, edition_id)
        for variant in session.scalars(select(EditionVariant).where(EditionVariant.edition_id == edition_id)):
            weight = readers.get((variant.language, variant.interests), 0)
            if not weight or not variant.item_count:
                continue
            template = mail.VariantTemplate.build(
                settings, subject=variant.subject, html=variant.html, text=variant.text, marker=marker
            )
            email = "subscriber123456@bench.example.net"
            data = template.personalise(
                mail.Recipient(
                    email=email,
                    name="Lecteur 123456",
                    message_id=mail.make_message_id(settings, edition_id, 123456),
                    unsubscribe_url=subscriber_url(settings, "unsubscribe", 123456, email, "n" * 16),
                    preferences_url=subscriber_url(settings, "preferences", 123456, email, "n" * 16),
                    delivery_id=123456,
                )
            )
            total += len(data) * weight
            count += weight
    return total // max(count, 1)


def freeze_only(engine: Any, settings: Any, edition_id: int) -> None:
    """Time freezing the recipient list as ``edition send`` does, in this process."""
    started = time.perf_counter()
    with transaction(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        added = freeze_recipients(session, settings, edition)
    took = time.perf_counter() - started
    print(f"freezing the list:   {added:,} recipients in {took:.1f} s, committed (target < 15 s at 1,000,000)")
    print(f"machine:             {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def write_config(path: Path, database: Path, port: int, connections: int, batch: int) -> None:
    path.write_text(
        "\n".join(
            [
                "[database]",
                f'url = "sqlite:///{database}"',
                "[smtp]",
                'host = "127.0.0.1"',
                f"port = {port}",
                f"connections = {connections}",
                # No provider quota in the way: the point is the sender's own speed.
                "messages_per_second = 100000.0",
                "messages_per_hour = 1000000000",
                "[delivery]",
                f"batch_size = {batch}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=2, help="SMTP connections (smtp-source -s)")
    parser.add_argument("--batch-size", type=int, default=500, help="delivery.batch_size")
    parser.add_argument("--stories", type=int, default=20, help="stories in the edition (as the composer bench)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--freeze-only", action="store_true", help="only time freezing the list (one INSERT ... SELECT); send nothing"
    )
    args = parser.parse_args()
    os.environ.setdefault("BULLETIN_SECRET_KEY", "bench-secret-key-0123456789")
    sink_bin, source_bin = tool("smtp-sink"), tool("smtp-source")

    folder = Path(tempfile.mkdtemp(prefix="bulletin-send-bench-"))
    database = folder / "bench.db"
    port = free_port()
    config = folder / "bulletin.toml"
    write_config(config, database, port, args.connections, args.batch_size)
    settings = settings_from_dict(
        {"database": {"url": f"sqlite:///{database}"}, "smtp": {"port": port, "connections": args.connections}},
        folder,
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)

    started = time.perf_counter()
    news_items(engine, args.stories)
    add_subscribers(engine, args.subscribers)
    print(f"subscribers:         {args.subscribers:,} active ({time.perf_counter() - started:.1f} s to create)")
    started = time.perf_counter()
    with transaction(engine) as session:
        edition = create_edition(session, settings)
        render_edition(session, settings, edition)
        edition_id = edition.id
    variants, with_news, html_size = approve_as_rendered(engine, edition_id)
    print(
        f"variants:            {variants} rendered by bulletin.compose ({with_news} with news, "
        f"mean HTML {html_size / 1024:.1f} KB) in {time.perf_counter() - started:.1f} s"
    )
    if args.freeze_only:
        freeze_only(engine, settings, edition_id)
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)
        return
    size = average_message_size(engine, settings, edition_id)
    engine.dispose()
    print(f"mean message size:   {size:,} bytes")

    sink = subprocess.Popen(
        [sink_bin, "-u", "nobody", "-c", f"127.0.0.1:{port}", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    # CPU seconds the sink spent on each side's messages.
    sink_cpu = {"smtp-source": 0.0, "bulletin": 0.0}

    def smtp_source(messages: int) -> float:
        sink_before = cpu_seconds(sink.pid)
        started = time.perf_counter()
        command = [source_bin, "-d", "-s", str(args.connections), "-m", str(messages), "-l", str(size)]
        source = subprocess.run([*command, f"127.0.0.1:{port}"], capture_output=True, text=True)
        if source.returncode != 0:
            sys.exit(f"smtp-source failed: {source.stderr.strip()}")
        took = time.perf_counter() - started
        sink_cpu["smtp-source"] += cpu_seconds(sink.pid) - sink_before
        return took

    try:
        time.sleep(0.5)
        expected = args.subscribers
        # smtp-source runs before and after bulletin, so a change in the machine's load hits both sides.
        source_before = smtp_source(expected // 2)
        sink_before = cpu_seconds(sink.pid)
        reaped_before = children_cpu_seconds()
        started = time.perf_counter()
        command = [sys.executable, "-m", "bulletin", "--config", str(config), "edition", "send", str(edition_id)]
        child = subprocess.Popen([*command, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The child's own high-water mark (VmHWM), read while it runs: ru_maxrss of a child would
        # count this benchmark's memory too, which the child had until it called exec.
        peak_kb = 0
        while child.poll() is None:
            peak_kb = max(peak_kb, high_water_kb(child.pid))
            time.sleep(0.1)
        stdout, stderr = child.communicate()
        wall = time.perf_counter() - started
        # Only the sender was reaped meanwhile: its user and system time, start-up included.
        bulletin_cpu = children_cpu_seconds() - reaped_before
        sink_cpu["bulletin"] += cpu_seconds(sink.pid) - sink_before
        if child.returncode != 0:
            sys.exit(f"bulletin edition send failed: {stderr.strip()}")
        report = json.loads(stdout)
        sent = report["sent"]
        bulletin_rate = sent / report["elapsed"]
        source_after = smtp_source(expected - expected // 2)
        source_elapsed = source_before + source_after
        source_rate = expected / source_elapsed
    finally:
        sink.terminate()
        sink.wait()

    counts = report["counts"]
    print(f"ledger:              {counts} (edition {report['status']}; SQLite WAL, synchronous=FULL, group commit)")
    print(
        f"before sending:      approval check {report['check_seconds']:.1f} s, "
        f"pre-flight (DKIM key, SMTP login) {report['preflight_seconds']:.2f} s"
    )
    print(f"freezing the list:   {sent:,} recipients in {report['freeze_seconds']:.1f} s (target < 15 s at 1,000,000)")
    print(
        f"bulletin wall time:  {wall:.1f} s (start-up, checks, freezing, sending) = "
        f"{wall / report['elapsed']:.2f} x the sending time (target <= 1.1)"
    )
    print(
        f"bulletin send:       {sent:,} messages in {report['elapsed']:.1f} s = {bulletin_rate:,.0f} msg/s "
        f"({report['journal_commits']:,} ledger commits)"
    )
    print(
        f"smtp-source:         {expected:,} messages of {size:,} bytes in {source_elapsed:.1f} s = "
        f"{source_rate:,.0f} msg/s (half before, half after bulletin: "
        f"{expected // 2 / source_before:,.0f} and {(expected - expected // 2) / source_after:,.0f} msg/s)"
    )
    print(f"connections:         {args.connections}")
    cpus = os.cpu_count() or 1
    sink_per_message = sink_cpu["smtp-source"] / expected
    bulletin_per_message = bulletin_cpu / sent
    print(
        f"CPU per message:     smtp-sink {sink_per_message * 1e6:,.0f} us (smtp-source's), "
        f"{sink_cpu['bulletin'] / sent * 1e6:,.0f} us (bulletin's); "
        f"bulletin {bulletin_per_message * 1e6:,.0f} us (user + system, start-up included)"
    )
    target_rate = 0.9 * source_rate
    print(
        f"CPU at the target:   {target_rate:,.0f} msg/s (0.9 x smtp-source) needs "
        f"{target_rate * sink_per_message:.2f} CPU for smtp-sink and {target_rate * bulletin_per_message:.2f} "
        f"for bulletin at these costs, of the machine's {cpus}"
    )
    print(f"ratio:               {bulletin_rate / source_rate:.2f} (target >= 0.9, aim 0.95)")
    print(f"sender peak RSS:     {peak_kb / 1024:.0f} MB (target <= 120 MB)")
    print(f"machine:             {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.keep:
        print(f"kept:                {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
