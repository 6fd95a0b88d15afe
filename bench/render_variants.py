"""Benchmark: render every variant of an edition; print total time, time per variant and peak memory.

Usage: python bench/render_variants.py [--items 20] [--store]

Three languages, eight interests and one active subscriber for each interest set of one to four
interests in each language (8 + 28 + 56 + 70 = 162 sets, 486 variants). The edition holds twenty
stories, each written in the three languages, with one or two topics, a summary and a link; every
fourth has an image. Rendering runs the whole pipeline (Jinja2, MJML, premailer, text part, checks,
content hash) for every variant; --store also times saving them in the database.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import resource
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bulletin.app.editions import create_edition
from bulletin.compose.render import render_variants, store_variants
from bulletin.compose.variants import plan_variants
from bulletin.config import settings_from_dict
from bulletin.db import make_engine, reading, transaction
from bulletin.migrate import upgrade
from bulletin.models import NewsItem, Subscriber, SubscriberStatus, utcnow

WORDS = [
    *[
        "prevention",
        "safety",
        "community",
        "local",
        "partners",
        "evaluation",
        "programme",
        "youth",
        "cities",
        "report",
        "network",
    ],
    *[
        "training",
        "violence",
        "police",
        "justice",
        "research",
        "support",
        "practice",
        "strategy",
        "municipal",
        "action",
        "survey",
    ],
]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def populate(engine: object, items: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    keys = ["youth", "cities", "cybercrime", "violence", "policing", "drugs", "trafficking", "research"]
    now = utcnow()
    with transaction(engine) as session:  # type: ignore[arg-type]
        for story in range(items):
            topics = ",".join(sorted(rng.sample(keys, rng.randint(1, 2))))
            for lang in ("fr", "en", "es"):
                session.add(
                    NewsItem(
                        title=f"[{lang}] " + sentence(rng, 9),
                        summary=" ".join(sentence(rng, 14) for _ in range(3)),
                        body=[{"type": "paragraph", "text": " ".join(sentence(rng, 14) for _ in range(6))}],
                        link=f"https://www.example.org/{lang}/news/{story}",
                        image=f"https://www.example.org/images/{story}.jpg" if story % 4 == 0 else None,
                        image_alt=sentence(rng, 5) if story % 4 == 0 else None,
                        language=lang,
                        published_at=now - timedelta(hours=story + 1),
                        topics=topics,
                        translation_key=f"story-{story}",
                        source=f"https://www.example.org/{lang}/news/{story}",
                        source_kind="bench",
                        source_id=f"{lang}-{story}",
                        content_hash=f"{lang}-{story}",
                    )
                )
        number = 0
        for lang in ("fr", "en", "es"):
            for size in range(1, 5):
                for interests in itertools.combinations(sorted(keys), size):
                    number += 1
                    session.add(
                        Subscriber(
                            email=f"reader{number}@example.org",
                            email_key=f"reader{number}@example.org",
                            language=lang,
                            interests=",".join(interests),
                            status=SubscriberStatus.ACTIVE,
                            consent_source="bench",
                            consent_at=now,
                        )
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20, help="stories in the edition (each in 3 languages)")
    parser.add_argument("--store", action="store_true", help="also store the variants in the database")
    args = parser.parse_args()
    os.environ.setdefault("BULLETIN_SECRET_KEY", "bench-secret-key-0123456789")

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        settings = settings_from_dict({"database": {"url": f"sqlite:///{workdir / 'bench.db'}"}}, workdir)
        engine = make_engine(settings.database_url)
        upgrade(engine)
        populate(engine, args.items)
        with transaction(engine) as session:
            edition_id = create_edition(session, settings).id

        with reading(engine) as session:
            from bulletin.models import Edition

            edition = session.get(Edition, edition_id)
            assert edition is not None
            planned = plan_variants(session, settings, edition)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            start = time.perf_counter()
            rendered = render_variants(session, settings, edition, planned)
            elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        sizes = sorted(v.html_size for v in rendered)
        items = sorted(v.item_count for v in rendered)
        with_problems = sum(1 for v in rendered if v.problems)
        print(f"variants rendered:   {len(rendered)} ({args.items} stories x 3 languages, 8 interests)")
        print(f"total time:          {elapsed:.2f} s")
        print(f"time per variant:    {elapsed / len(rendered) * 1000:.1f} ms")
        print(f"peak memory (RSS):   {peak / 1024:.0f} MB (before rendering: {rss_before / 1024:.0f} MB)")
        print(f"items per variant:   min {items[0]}, median {items[len(items) // 2]}, max {items[-1]}")
        print(f"HTML size:           min {sizes[0] / 1024:.1f} KB, max {sizes[-1] / 1024:.1f} KB")
        print(f"variants with problems: {with_problems}")
        if args.store:
            start = time.perf_counter()
            with transaction(engine) as session:
                edition = session.get(Edition, edition_id)
                assert edition is not None
                store_variants(session, settings, edition, rendered)
            print(f"storing variants:    {time.perf_counter() - start:.2f} s")
        engine.dispose()
        if elapsed > 15:
            print("slower than the 15 s target", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
