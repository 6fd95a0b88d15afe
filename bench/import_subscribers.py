"""Benchmark: import a generated subscriber CSV through the real CLI; print rows/s and peak RSS.

Usage: python bench/import_subscribers.py [--rows 100000] [--also 10000]

Each import runs `bulletin subscribers import` in a fresh process on a fresh SQLite database,
so the peak RSS printed is that of the import alone. Running two sizes shows whether memory
grows with the file (it should not: the file is streamed and written in batches).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bulletin.db import make_engine
from bulletin.migrate import upgrade

INTERESTS = ["youth", "cities", "cybercrime", "violence", "policing", "drugs", "trafficking", "research"]


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["email", "name", "language", "interests"])
        for index in range(rows):
            interests = rng.sample(INTERESTS, rng.randint(0, 3))
            writer.writerow(
                [f"person{index}@example.org", f"Person {index}", rng.choice(["fr", "en", "es"]), ";".join(interests)]
            )


def run_import(workdir: Path, csv_path: Path) -> tuple[float, int, str]:
    config = workdir / "bulletin.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{workdir / "subscribers.db"}"\n', encoding="utf-8")
    # The schema is created in this process, so the only child measured is the import.
    engine = make_engine(f"sqlite:///{workdir / 'subscribers.db'}")
    upgrade(engine)
    engine.dispose()
    bulletin = [sys.executable, "-m", "bulletin", "--config", str(config)]
    start = time.perf_counter()
    result = subprocess.run(
        [*bulletin, "subscribers", "import", str(csv_path), "--confirmed"], check=True, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, peak_kb, result.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--also", type=int, default=10_000, help="a smaller size to compare memory with (0: skip)")
    args = parser.parse_args()
    # Each size runs in its own child process; RUSAGE_CHILDREN keeps the largest peak so far,
    # so the smaller size goes first and each figure is that import's own peak.
    sizes = [size for size in (args.also, args.rows) if size]
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="bulletin-bench-") as tmp:
            workdir = Path(tmp)
            csv_path = workdir / "people.csv"
            generate(csv_path, size)
            megabytes = os.path.getsize(csv_path) / 1e6
            elapsed, peak_kb, summary = run_import(workdir, csv_path)
            print(
                f"rows={size} file={megabytes:.1f}MB time={elapsed:.2f}s "
                f"rate={size / elapsed:,.0f} rows/s peak_rss={peak_kb / 1024:.1f}MB ({summary})"
            )


if __name__ == "__main__":
    main()
