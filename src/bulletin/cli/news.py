"""``bulletin news ...``: ingest and curate news items (issue 3)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bulletin.cli import App, pass_app
from bulletin.config import Settings
from bulletin.errors import InvalidInput
from bulletin.models import NewsItem, NewsStatus
from bulletin.news.curate import exclude_item, include_item, set_item_fields, tag_item
from bulletin.news.dates import parse_date_line
from bulletin.news.draft import plain_text
from bulletin.news.ingest import IngestReport, default_sources, ingest_sources
from bulletin.news.split_merge import merge_items, split_item
from bulletin.news.store import NewsFilter, get_item, item_as_dict, list_items
from bulletin.news.topics import TopicEvidence, topic_evidence
from bulletin.news.translations import link_translations, translations_of

# Items listed after an ingest; a page of thousands is summed up, 'news list' shows them all.
SHOWN_ITEMS = 100
STATUS_CHOICE = click.Choice([status.value for status in NewsStatus])
# Origins shown as a mark next to a value bulletin guessed rather than read.
GUESSED = {"detected": "?", "default": "?", "text": "?", "mtime": "~", "fetched": "~"}
LEGEND = (
    "? = guessed (language detected, date read in the text), ~ = date from the file time: "
    "correct with 'bulletin news set ID'"
)


def _console(err: bool = False) -> Console:
    return Console(highlight=False, soft_wrap=True, stderr=err)


def _parse_date(settings: Settings, value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    parsed = parse_date_line(value, settings.schedule.timezone)
    if parsed is None:
        raise InvalidInput(f"{option}: {value!r} is not a date (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)")
    return parsed


@click.group()
def news() -> None:
    """Ingest news items and adjust their language, topics and translations."""


@news.command("ingest")
@click.argument("sources", nargs=-1)
@click.option("--lang", help="Language of items whose source does not give one (else it is detected).")
@click.option("--date", "date_text", help="Publication date of every item (YYYY-MM-DD), instead of their own.")
@click.option("--topic", "topics", multiple=True, help="Topic key added to every item; repeat for several.")
@click.option(
    "--as-of", "as_of_text", help="The pages' own date (YYYY-MM-DD), for dates their text gives without a year."
)
@click.option("--dry-run", is_flag=True, help="Print the items that would be stored and write nothing.")
@pass_app
def ingest(
    app: App,
    sources: tuple[str, ...],
    lang: str | None,
    date_text: str | None,
    topics: tuple[str, ...],
    as_of_text: str | None,
    dry_run: bool,
) -> None:
    """Read news from text pages, Markdown files, feed files, folders and feed URLs.

    Each source is stored in its own transaction: one that fails is reported on one line and
    the others still go in. Ingesting the same source again changes nothing; a changed item is
    updated in place and flagged. Without SOURCE, reads ingest.feeds and ingest.folders.
    An item without a date line is dated from its text ("Le 14 février, ..."); a date without
    a year is placed on or before the page's date: the file's time, or --as-of.

    Example:

        bulletin news ingest samples/news https://www.example.org/feed/ --lang fr

        bulletin news ingest actualites.txt --as-of 2026-03-01 --dry-run
    """
    settings = app.settings
    chosen = list(sources) or default_sources(settings)
    if not chosen:
        raise InvalidInput("give files, folders or feed URLs (or set ingest.feeds / ingest.folders)")
    report = ingest_sources(
        app.engine,
        settings,
        chosen,
        lang=lang,
        date=_parse_date(settings, date_text, "--date"),
        topics=list(topics),
        as_of=_parse_date(settings, as_of_text, "--as-of"),
        dry_run=dry_run,
    )
    if dry_run:
        _print_previews(report)
    else:
        _print_report(app, report)
    if report.failed:
        raise click.exceptions.Exit(1)


def _print_report(app: App, report: IngestReport) -> None:
    console = _console()
    table = Table(title="News ingest", title_justify="left")
    table.add_column("Source", overflow="fold")
    table.add_column("Kind")
    for name in ("Added", "Updated", "Unchanged", "Rejected"):
        table.add_column(name, justify="right")
    table.add_column("Result", overflow="fold")
    for outcome in report.outcomes:
        result = "[red]failed[/red]" if outcome.error else "ok"
        table.add_row(
            escape(_shown_path(outcome.source)),
            outcome.kind,
            str(outcome.added),
            str(outcome.updated),
            str(outcome.unchanged),
            str(outcome.rejected),
            result,
        )
    if len(report.outcomes) > 1:
        table.add_section()
        table.add_row(
            "Total",
            "",
            str(report.added),
            str(report.updated),
            str(report.unchanged),
            str(report.rejected),
            f"{len(report.failed)} failed" if report.failed else "ok",
        )
    console.print(table)
    touched = [item_id for outcome in report.outcomes if outcome.ok for item_id in outcome.touched_ids]
    if touched:
        with app.reading() as session:
            items = [session.get(NewsItem, item_id) for item_id in touched[:SHOWN_ITEMS]]
            _print_items(console, [item for item in items if item is not None], title="Items added or updated")
        if len(touched) > SHOWN_ITEMS:
            console.print(f"... and {len(touched) - SHOWN_ITEMS} more: see 'bulletin news list'")
        console.print(LEGEND)
    for outcome in report.outcomes:
        for note in outcome.notes:
            console.print(f"{escape(_shown_path(outcome.source))}: {escape(note)}")
    errors = _console(err=True)
    for outcome in report.failed:
        errors.print(f"error: {escape(outcome.source)}: {escape(outcome.error or '')}")


def _print_previews(report: IngestReport) -> None:
    """What a dry run would store, item by item, and nothing else (plain lines: pages can be long)."""
    lines: list[str] = []
    for outcome in report.outcomes:
        if not outcome.ok:
            continue
        lines.append(f"{_shown_path(outcome.source)} ({outcome.kind}): {len(outcome.previews)} items")
        for position, (fields, stored_id) in enumerate(outcome.previews, start=1):
            state = f"already stored as #{stored_id}" if stored_id is not None else "new"
            where = f"{fields.date_origin}: {fields.date_phrase!r}" if fields.date_phrase else fields.date_origin
            scores = {evidence.key: evidence.score for evidence in fields.evidence}
            topic_text = ", ".join(
                f"{key} ({scores[key]:g})" if key in scores else key for key in fields.topics.split(",") if key
            )
            lines += [
                f"{position:>3}. {fields.title}  [{state}]",
                f"     date {fields.published_at.strftime('%Y-%m-%d')} ({where})"
                f" · language {fields.language} ({fields.language_origin})",
                f"     topics {topic_text or '-'} ({fields.topics_origin})",
                f"     {' '.join(fields.summary.split()[:14])}…",
            ]
        lines.extend(f"{_shown_path(outcome.source)}: {note}" for note in outcome.notes)
    lines.append("Dry run: nothing was written.")
    click.echo("\n".join(lines))
    errors = _console(err=True)
    for outcome in report.failed:
        errors.print(f"error: {escape(outcome.source)}: {escape(outcome.error or '')}")


def _shown_path(source: str) -> str:
    """A file under the current folder is shown relative to it, to keep the table narrow."""
    if "://" in source:
        return source
    try:
        return str(Path(source).resolve().relative_to(Path.cwd()))
    except ValueError:
        return source


def _print_items(console: Console, items: list[NewsItem], *, title: str | None = None) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("ID", justify="right")
    table.add_column("Date")
    table.add_column("Lang")
    table.add_column("Title", overflow="fold", max_width=70)
    table.add_column("Topics", overflow="fold")
    table.add_column("Status")
    for item in items:
        status = item.status.value + (" (changed)" if item.changed else "")
        table.add_row(
            str(item.id),
            item.published_at.strftime("%Y-%m-%d") + GUESSED.get(item.date_origin, ""),
            item.language + GUESSED.get(item.language_origin, ""),
            escape(item.title),
            ", ".join(item.topic_list),
            status,
        )
    console.print(table)


@news.command("list")
@click.option("--since", help="Items published on or after this date (YYYY-MM-DD).")
@click.option("--until", help="Items published before this date (YYYY-MM-DD).")
@click.option("--lang", help="Only items in this language.")
@click.option("--topic", help="Only items with this topic key.")
@click.option("--status", type=STATUS_CHOICE, help="Only items with this status.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many items, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def list_command(
    app: App,
    since: str | None,
    until: str | None,
    lang: str | None,
    topic: str | None,
    status: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List news items, newest first.

    Example:

        bulletin news list --since 2025-03-01 --lang es --topic youth
    """
    settings = app.settings
    if lang is not None and lang not in settings.languages:
        raise InvalidInput(f"unknown language {lang!r} (languages are {', '.join(settings.languages)})")
    if topic is not None and topic not in settings.interest_keys:
        raise InvalidInput(f"unknown topic {topic!r} (topics are {', '.join(settings.interest_keys)})")
    query = NewsFilter(
        since=_parse_date(settings, since, "--since"),
        until=_parse_date(settings, until, "--until"),
        language=lang,
        topic=topic,
        status=NewsStatus(status) if status else None,
        limit=limit,
    )
    with app.reading() as session:
        items = list(list_items(session, query))
        if as_json:
            click.echo(
                json.dumps([item_as_dict(item, with_body=False) for item in items], ensure_ascii=False, indent=2)
            )
            return
        if not items:
            click.echo("No news items match.")
            return
        _print_items(_console(), items)


@news.command("show")
@click.argument("item_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the body blocks and translations).")
@pass_app
def show(app: App, item_id: int, as_json: bool) -> None:
    """Show one news item: its fields, body and translations.

    Example:

        bulletin news show 12
    """
    with app.reading() as session:
        item = get_item(session, item_id)
        translations = translations_of(session, item)
        if as_json:
            data = item_as_dict(item)
            data["translations"] = [{"id": t.id, "language": t.language, "title": t.title} for t in translations]
            click.echo(json.dumps(data, ensure_ascii=False, indent=2))
            return
        console = _console()
        console.print(f"[bold]{escape(item.title)}[/bold]")
        guessed = ", guessed" if item.date_origin == "text" else ""
        rows = [
            ("ID", str(item.id)),
            ("Language", f"{item.language} ({item.language_origin})"),
            ("Date", f"{item.published_at.isoformat()} ({item.date_origin}{guessed})"),
            ("Topics", f"{', '.join(item.topic_list) or '-'} ({item.topics_origin})"),
            ("Keywords", "; ".join(e.describe() for e in _evidence_of(app.settings, item)) or "-"),
            ("Status", item.status.value + (", changed since ingested" if item.changed else "")),
            ("Link", item.link or "-"),
            ("Image", f"{item.image} ({item.image_alt or 'no alt text'})" if item.image else "-"),
            ("Translation key", item.translation_key or "-"),
            ("Translations", ", ".join(f"{t.language}: #{t.id} {t.title}" for t in translations) or "-"),
            ("Source", f"{item.source} ({item.source_kind})"),
            ("Set by staff", ", ".join(item.overrides or []) or "-"),
            ("Summary", item.summary or "-"),
        ]
        for name, value in rows:
            console.print(f"{name + ':':<17}{escape(value)}")
        console.print()
        for block in item.body:
            if block["type"] == "heading":
                console.print(f"[bold]{escape(block['text'])}[/bold]")
            elif block["type"] == "paragraph":
                console.print(escape(block["text"]))
            elif block["type"] == "list":
                for entry in block["items"]:
                    console.print(f"  • {escape(entry)}")
            elif block["type"] == "link":
                label = f"{block['label']}: " if block.get("label") else ""
                console.print(escape(f"{label}{block['url']}"))
            console.print()


def _evidence_of(settings: Settings, item: NewsItem) -> list[TopicEvidence]:
    """The keywords of the current settings found in the item, per topic, strongest first."""
    return topic_evidence(settings, item.title, plain_text("", "", item.body), item.language)


@news.command("split")
@click.argument("item_id", type=int)
@click.option("--at", "at", required=True, help="The line of the item that starts the new item (its title).")
@click.option("--as-of", "as_of_text", help="The page's date (YYYY-MM-DD), as given to 'news ingest --as-of'.")
@pass_app
def split(app: App, item_id: int, at: str, as_of_text: str | None) -> None:
    """Cut a news item in two at one of its lines; later ingests of the page keep the cut.

    Example:

        bulletin news split 12 --at "Bilan des cafés-rencontres du réseau jeunesse"
    """
    with app.transaction() as session:
        as_of = _parse_date(app.settings, as_of_text, "--as-of")
        first, second = split_item(session, app.settings, item_id, at, as_of)
        click.echo(f"News item {first.id} split: {first.title}")
        click.echo(f"New news item {second.id}: {second.title}")


@news.command("merge")
@click.argument("first_id", type=int)
@click.argument("second_id", type=int)
@click.option("--as-of", "as_of_text", help="The page's date (YYYY-MM-DD), as given to 'news ingest --as-of'.")
@pass_app
def merge(app: App, first_id: int, second_id: int, as_of_text: str | None) -> None:
    """Append the second news item to the first (one page's items); later ingests keep the merge.

    Example:

        bulletin news merge 12 13
    """
    with app.transaction() as session:
        as_of = _parse_date(app.settings, as_of_text, "--as-of")
        item = merge_items(session, app.settings, first_id, second_id, as_of)
        click.echo(f"News item {second_id} merged into {item.id}: {item.title}")


@news.command("set")
@click.argument("item_id", type=int)
@click.option("--lang", help="Language of the item (corrects a wrong guess).")
@click.option("--title", help="Title (one line).")
@click.option("--summary", help="Summary shown in the bulletin.")
@click.option("--date", "date_text", help="Publication date (YYYY-MM-DD or YYYY-MM-DDTHH:MM).")
@click.option("--link", help="Canonical link (empty to remove).")
@click.option("--image", help="Image URL (empty to remove).")
@click.option("--image-alt", help="Alternative text of the image.")
@click.option("--translation-key", help="Key shared by the versions of the story in other languages.")
@pass_app
def set_command(
    app: App,
    item_id: int,
    lang: str | None,
    title: str | None,
    summary: str | None,
    date_text: str | None,
    link: str | None,
    image: str | None,
    image_alt: str | None,
    translation_key: str | None,
) -> None:
    """Correct fields of a news item; a later ingest keeps what staff set.

    Example:

        bulletin news set 12 --lang es --title "Foro regional sobre prevención"
    """
    values = {
        "title": title,
        "summary": summary,
        "link": link,
        "image": image,
        "image_alt": image_alt,
        "translation_key": translation_key,
        "published_at": _parse_date(app.settings, date_text, "--date"),
    }
    if lang is None and all(value is None for value in values.values()):
        raise InvalidInput("nothing to set: give --lang, --title, --summary, --date, --link, --image, ...")
    with app.transaction() as session:
        item, changed = set_item_fields(session, app.settings, item_id, language=lang, **values)
        click.echo(f"News item {item.id} {'updated' if changed else 'unchanged'}: [{item.language}] {item.title}")


@news.command("tag", context_settings={"ignore_unknown_options": True, "help_option_names": ["--help"]})
@click.argument("item_id", type=int)
@click.argument("changes", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def tag(app: App, item_id: int, changes: tuple[str, ...]) -> None:
    """Add (+key) or remove (-key) topics of a news item.

    Example:

        bulletin news tag 12 +youth -cybercrime
    """
    with app.transaction() as session:
        item = tag_item(session, app.settings, item_id, list(changes))
        click.echo(f"News item {item.id} topics: {', '.join(item.topic_list) or '(none)'}")


@news.command("link")
@click.argument("item_ids", nargs=-1, type=int, required=True)
@pass_app
def link(app: App, item_ids: tuple[int, ...]) -> None:
    """Mark news items as the same story in different languages.

    Example:

        bulletin news link 12 15
    """
    with app.transaction() as session:
        key = link_translations(session, list(item_ids))
        members = [get_item(session, item_id) for item_id in item_ids]
        story = ", ".join(f"#{item.id} ({item.language})" for item in members)
        click.echo(f"Linked {story} as one story (translation key {key})")


@news.command("exclude")
@click.argument("item_id", type=int)
@pass_app
def exclude(app: App, item_id: int) -> None:
    """Keep a news item out of future editions (undo with 'news include').

    Example:

        bulletin news exclude 12
    """
    with app.transaction() as session:
        item = exclude_item(session, item_id)
        click.echo(f"News item {item.id} excluded: {item.title}")


@news.command("include")
@click.argument("item_id", type=int)
@pass_app
def include(app: App, item_id: int) -> None:
    """Let an excluded news item be selected again.

    Example:

        bulletin news include 12
    """
    with app.transaction() as session:
        item = include_item(session, item_id)
        click.echo(f"News item {item.id} can be selected again: {item.title}")


def register(cli: click.Group) -> None:
    cli.add_command(news)
