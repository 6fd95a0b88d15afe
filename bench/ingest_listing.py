"""Benchmark: ingest a 5,000-item listing page in the centre's export shape; print times and peak RSS.

Usage: python bench/ingest_listing.py [--items 5000]

The page is built from the FR/EN/ES export fixtures (one blank line between everything, lists,
labels of dropped links, bare "read more" lines, dates in the text), each item's title numbered
so every item is distinct. It is then read three ways: split only (in this process), a dry run and
a real ingest through `bulletin news ingest` (each in a fresh process on a fresh SQLite file, so
the peak RSS printed is that of the command). The target is under 10 s for 5,000 items.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from bulletin.db import make_engine, reading
from bulletin.migrate import upgrade
from bulletin.models import NewsItem
from bulletin.news.text_pages import read_text_page

EXPORT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "news_export"


def fixture_items() -> list[tuple[str, str]]:
    """(title, text under it) of every item of the three fixtures, cut at their titles."""
    items = []
    for lang in ("fr", "en", "es"):
        text = (EXPORT / f"listing_{lang}.txt").read_text(encoding="utf-8")
        titles = [draft.title for draft in read_text_page(text, "x")]
        pattern = "|".join(re.escape(title) for title in titles)
        parts = re.split(rf"^({pattern})$", text, flags=re.MULTILINE)
        items.extend((parts[i], parts[i + 1].strip("\n")) for i in range(1, len(parts), 2))
    return items


def build_page(path: Path, count: int) -> list[str]:
    items = fixture_items()
    titles = []
    chunks = []
    for index in range(count):
        title, body = items[index % len(items)]
        numbered = f"{title} – {index + 1}"
        titles.append(numbered)
        chunks.append(f"{numbered}\n\n{body}")
    path.write_text("\n\n".join(chunks), encoding="utf-8")
    return titles


def run_cli(workdir: Path, *args: str) -> tuple[float, float, int, str]:
    config = workdir / "bulletin.toml"
    database = workdir / "news.db"
    config.write_text(f'[database]\nurl = "sqlite:///{database}"\n', encoding="utf-8")
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    engine.dispose()
    env = {**os.environ, "BULLETIN_SECRET_KEY": os.environ.get("BULLETIN_SECRET_KEY", "bench-secret-key-0123456789")}
    command = [sys.executable, "-m", "bulletin", "--config", str(config), "news", "ingest", *args]
    return _timed(command, env)


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (user + system) and peak RSS in kB of one command, and its output.

    The CPU time is printed too because the machine may be shared: wall time then includes the
    time other processes held the cores.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, after.ru_maxrss, result.stdout


def stored_count(workdir: Path) -> int:
    engine = make_engine(f"sqlite:///{workdir / 'news.db'}")
    with reading(engine) as session:
        value = int(session.scalar(select(func.count()).select_from(NewsItem)) or 0)
    engine.dispose()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        page = folder / "listing.txt"
        titles = build_page(page, args.items)
        size = page.stat().st_size
        print(f"page: {args.items} items, {size / 1_000_000:.2f} MB, {len(page.read_text().splitlines())} lines")

        start, cpu_start = time.perf_counter(), time.process_time()
        drafts = read_text_page(page.read_text(encoding="utf-8"), str(page))
        split_seconds, split_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        exact = [draft.title for draft in drafts] == titles
        print(
            f"split only (in process): {split_seconds:.2f} s ({split_cpu:.2f} s CPU), {len(drafts)} items, "
            f"titles exact: {exact}"
        )

        dry_dir = folder / "dry"
        dry_dir.mkdir()
        dry_seconds, dry_cpu, _, output = run_cli(dry_dir, str(page), "--as-of", "2026-03-01", "--dry-run")
        dry_ok = f": {args.items} items" in output and stored_count(dry_dir) == 0
        print(
            f"dry run (CLI, fresh process): {dry_seconds:.2f} s ({dry_cpu:.2f} s CPU), "
            f"listed {args.items} and wrote nothing: {dry_ok}"
        )

        real_dir = folder / "real"
        real_dir.mkdir()
        real_seconds, real_cpu, peak_kb, _ = run_cli(real_dir, str(page), "--as-of", "2026-03-01")
        stored = stored_count(real_dir)
        print(
            f"ingest (CLI, fresh process): {real_seconds:.2f} s ({real_cpu:.2f} s CPU), {stored} items stored, "
            f"{stored / real_seconds:.0f} items/s, peak RSS {peak_kb / 1024:.0f} MB"
        )
        again_seconds, again_cpu, _, output = run_cli_again(real_dir, page)
        print(f"re-ingest of the same page (nothing changes): {again_seconds:.2f} s ({again_cpu:.2f} s CPU)")
        load = os.getloadavg()[0]
        target = "met" if real_seconds < 10 and stored == args.items and exact else "MISSED"
        print(f"target (< 10 s for the page, every item exact): {target}")
        print(f"machine: load average {load:.2f} on {os.cpu_count()} cores at the end of the run")


def run_cli_again(workdir: Path, page: Path) -> tuple[float, float, int, str]:
    """The same ingest again on the same database (the schema is not recreated)."""
    config = workdir / "bulletin.toml"
    env = {**os.environ, "BULLETIN_SECRET_KEY": os.environ.get("BULLETIN_SECRET_KEY", "bench-secret-key-0123456789")}
    command = [sys.executable, "-m", "bulletin", "--config", str(config), "news", "ingest", str(page)]
    return _timed([*command, "--as-of", "2026-03-01"], env)


if __name__ == "__main__":
    main()
