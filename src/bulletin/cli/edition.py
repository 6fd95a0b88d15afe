"""``bulletin edition ...``: create, arrange and preview editions (issue 4).

Other modules (send, workflow) add their commands to the ``edition`` group defined here.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click

from bulletin.cli import App, pass_app
from bulletin.compose.approval import refresh_edition
from bulletin.config import Settings
from bulletin.errors import InvalidInput
from bulletin.i18n import format_local


@click.group()
def edition() -> None:
    """Create, preview, approve and send editions of the bulletin."""


def parse_when(value: str, settings: Settings, *, end_of_day: bool = False) -> datetime:
    """A date or date-time from the command line; without a zone it is in ``schedule.timezone``.

    A bare date means the start of that day, or with ``end_of_day`` the start of the next one,
    so ``--until 2025-03-31`` includes the whole of March 31.
    """
    zone = ZoneInfo(settings.schedule.timezone)
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            moment = datetime.combine(day + timedelta(days=1) if end_of_day else day, time(0), zone)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a date (use 2025-03-31 or 2025-03-31T18:00)") from None
    return moment


def _language_texts(settings: Settings, args: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Read ``--subject-LANG TEXT`` and ``--intro-LANG TEXT`` (or ``=TEXT``) from the extra arguments."""
    subjects: dict[str, str] = {}
    intros: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        match = re.fullmatch(r"--(subject|intro)-([a-z]{2})(?:=(.*))?", arg, re.DOTALL)
        if not match:
            raise InvalidInput(f"no such option: {arg} (try 'bulletin edition create --help')")
        kind, lang, inline = match.groups()
        if lang not in settings.languages:
            raise InvalidInput(
                f"--{kind}-{lang}: {lang!r} is not one of the configured languages ({', '.join(settings.languages)})"
            )
        if inline is None:
            index += 1
            if index >= len(args):
                raise InvalidInput(f"--{kind}-{lang} needs a text")
            inline = args[index]
        (subjects if kind == "subject" else intros)[lang] = inline
        index += 1
    return subjects, intros


@edition.command(
    "create",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option("--since", help="Start of the period (default: end of the previous edition's period).")
@click.option("--until", help="End of the period, not included (default: now; a bare date includes that day).")
@click.pass_context
def create(ctx: click.Context, since: str | None, until: str | None) -> None:
    """Create a draft edition with the news of a period, newest story first.

    Give a subject and an introduction per configured language with --subject-LANG TEXT and
    --intro-LANG TEXT (e.g. --subject-fr, --intro-es); a language without a subject gets
    "<list name> of <date>". Dates without a time zone are in schedule.timezone.

    Example:

        bulletin edition create --since 2025-03-01 --until 2025-03-31 \\
            --subject-fr "Les nouvelles de mars" --intro-fr "Bonne lecture !"
    """
    from bulletin.app.editions import create_edition, edition_stories
    from bulletin.compose.variants import plan_variants

    app: App = ctx.find_object(App)  # type: ignore[assignment]
    settings = app.settings
    subjects, intros = _language_texts(settings, list(ctx.args))
    start = parse_when(since, settings) if since else None
    end = parse_when(until, settings, end_of_day=True) if until else None
    with app.transaction() as session:
        created = create_edition(
            session, settings, since=start, until=end, subjects=subjects, intros=intros, actor=app.actor
        )
        stories = edition_stories(session, settings, created)
        items = sum(len(story.versions) for story in stories)
        variants = len(plan_variants(session, settings, created))
        edition_id = created.id
        zone = ZoneInfo(settings.schedule.timezone)
        period = f"{_when(created.period_start, zone)} to {_when(created.period_end, zone)}"
    click.echo(f"Created edition {edition_id} (draft): {len(stories)} stories, {items} news items, {period}")
    click.echo(f"{variants} variants to render; see them with: bulletin edition show {edition_id}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _when(moment: datetime, zone: ZoneInfo) -> str:
    return format_local(moment, zone.key, with_zone=False)


def _topics(settings: Settings, interests: str) -> str:
    return interests.replace(",", ", ") if interests else "all topics"


@edition.command("show")
@click.argument("edition_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def show(app: App, edition_id: int, as_json: bool) -> None:
    """Show an edition: its stories and every variant its subscribers need.

    Each variant is rendered now (nothing is stored) to report its items, subscribers, HTML
    size and problems; variants with no items are listed as not sent. The stored rendering
    (from 'bulletin edition render') is compared with it.

    Example:

        bulletin edition show 3 --json
    """
    from bulletin.app.editions import edition_stories, get_edition
    from bulletin.compose.render import render_fingerprint, render_variants
    from bulletin.compose.variants import stored_variants, variant_subscriber_counts

    settings = app.settings
    zone = ZoneInfo(settings.schedule.timezone)
    with app.reading() as session:
        found = get_edition(session, edition_id)
        stories = edition_stories(session, settings, found)
        counts = variant_subscriber_counts(session, settings)
        rendered = render_variants(session, settings, found)
        stored = stored_variants(session, found)
        fingerprint = render_fingerprint(settings)
        if not stored:
            stored_state = "none"
        elif found.render_fingerprint != fingerprint or {
            (v.language, v.interests): v.content_hash for v in rendered
        } != {key: row.content_hash for key, row in stored.items()}:
            stored_state = "out of date"
        else:
            stored_state = "up to date"
        info: dict[str, Any] = {
            "id": found.id,
            "status": found.status.value,
            "period_start": found.period_start.isoformat(),
            "period_end": found.period_end.isoformat(),
            "subjects": dict(found.subjects or {}),
            "intros": dict(found.intros or {}),
            "stories": [
                {
                    "position": story.position,
                    "items": [
                        {
                            "id": v.item.id,
                            "language": v.item.language,
                            "title": v.item.title,
                            "topics": v.item.topic_list,
                            "excluded": v.excluded,
                        }
                        for v in story.versions
                    ],
                }
                for story in stories
            ],
            "variants": [
                {
                    "key": v.key,
                    "language": v.language,
                    "interests": v.interests,
                    "subscribers": counts.get((v.language, v.interests), 0),
                    "items": v.item_count,
                    "html_size": v.html_size,
                    "content_hash": v.content_hash,
                    "sent": not v.empty,
                    "problems": v.problems,
                }
                for v in rendered
            ],
            "stored_render": stored_state,
        }
    if as_json:
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    included = sum(1 for story in stories for v in story.versions if not v.excluded)
    excluded = sum(1 for story in stories for v in story.versions if v.excluded)
    click.echo(
        f"Edition {found.id} · {found.status.value} · "
        f"{_when(found.period_start, zone)} to {_when(found.period_end, zone)} ({settings.schedule.timezone})"
    )
    for lang in settings.languages:
        click.echo(f"  subject [{lang}]: {(found.subjects or {}).get(lang, '')}")
    click.echo(f"  {len(stories)} stories, {included} news items included, {excluded} excluded")
    click.echo("")
    header = f"{'variant':<40} {'subscribers':>11} {'items':>5} {'HTML':>9}  problems"
    click.echo(header)
    for v in rendered:
        name = f"{v.language} · {_topics(settings, v.interests)}"
        problems = "not sent: no items" if v.empty else (f"{len(v.problems)}" if v.problems else "-")
        size = f"{v.html_size / 1024:.1f} KB"
        subscribers = counts.get((v.language, v.interests), 0)
        click.echo(f"{name:<40} {subscribers:>11} {v.item_count:>5} {size:>9}  {problems}")
    for v in rendered:
        for problem in v.problems:
            click.echo(f"problem in {v.key}: {problem}")
    empty = [v for v in rendered if v.empty]
    if empty:
        people = sum(counts.get((v.language, v.interests), 0) for v in empty)
        click.echo(f"{_count(len(empty), 'variant')} without items will not be sent ({_count(people, 'subscriber')}).")
    if not rendered:
        click.echo("No active subscribers: nothing to send.")
    click.echo(
        f"Stored rendering: {stored_state}"
        + ("" if stored_state == "up to date" else f" (run 'bulletin edition render {found.id}')")
    )


@edition.command("render")
@click.argument("edition_id", type=int)
@pass_app
def render(app: App, edition_id: int) -> None:
    """Render every variant the subscribers need and store it (what reviewers approve).

    Example:

        bulletin edition render 3
    """
    # Rendered once in a reading session, stored in a short write one: the database is not locked meanwhile.
    refreshed = refresh_edition(app.engine, app.settings, edition_id, actor=app.actor)
    rendered, voided = refreshed.rendered, refreshed.voided
    if voided:
        click.echo(
            f"The approval of edition {edition_id} is void ({'; '.join(voided)}); it is back in review.", err=True
        )
    problems = sum(len(v.problems) for v in rendered)
    empty = sum(1 for v in rendered if v.empty)
    click.echo(f"Rendered and stored {len(rendered)} variants of edition {edition_id}: ", nl=False)
    click.echo(f"{problems} problems, {empty} without items")


@edition.command("items")
@click.argument("edition_id", type=int)
@click.option(
    "--move",
    nargs=2,
    type=int,
    multiple=True,
    metavar="ITEM POSITION",
    help="Move ITEM's story to POSITION (1 = first).",
)
@click.option(
    "--exclude", type=int, multiple=True, metavar="ITEM", help="Leave out this news item (one language version)."
)
@click.option(
    "--include", type=int, multiple=True, metavar="ITEM", help="Bring back an excluded item, or add a news item."
)
@pass_app
def items(
    app: App, edition_id: int, move: tuple[tuple[int, int], ...], exclude: tuple[int, ...], include: tuple[int, ...]
) -> None:
    """List an edition's stories in order, or change them.

    Changes apply together, in one transaction: includes, then excludes, then moves.

    Example:

        bulletin edition items 3 --move 42 1 --exclude 17
    """
    from bulletin.app.editions import edition_stories, exclude_item, get_edition, include_item, move_item

    settings = app.settings
    changing = bool(move or exclude or include)
    if changing:
        with app.transaction() as session:
            for item_id in include:
                include_item(session, edition_id, item_id, settings=settings, actor=app.actor)
            for item_id in exclude:
                exclude_item(session, edition_id, item_id, settings=settings, actor=app.actor)
            for item_id, position in move:
                move_item(session, edition_id, item_id, position, settings=settings, actor=app.actor)
    # The approval is checked against the new content (and the previews stored) outside the write.
    voided = refresh_edition(app.engine, settings, edition_id, actor=app.actor).voided if changing else []
    with app.reading() as session:
        stories = edition_stories(session, settings, get_edition(session, edition_id))
        lines = []
        for story in stories:
            for index, version in enumerate(story.versions):
                place = f"{story.position:>3}" if index == 0 else "   "
                mark = "excluded" if version.excluded else ""
                topics = ",".join(version.item.topic_list) or "-"
                title = version.item.title[:60]
                lines.append(
                    f"{place}  #{version.item.id:<6} {version.item.language}  {title:<60}  {topics}  {mark}".rstrip()
                )
    for line in lines:
        click.echo(line)
    if voided:
        click.echo(
            f"The approval of edition {edition_id} is void ({'; '.join(voided)}); it is back in review.", err=True
        )


@edition.command("preview")
@click.argument("edition_id", type=int)
@click.option("--lang", "language", help="Language of the variant to preview.")
@click.option("--interests", help="Comma-separated topics of the variant (default: all topics).")
@click.option("--all", "all_variants", is_flag=True, help="Every planned variant, with an index page.")
@click.option("--open", "open_browser", is_flag=True, help="Open the result in the web browser.")
@click.option("--screenshots", is_flag=True, help="Also save PNGs at 600 px and 375 px (needs Chromium).")
@click.option(
    "--out", type=click.Path(file_okay=False), help="Folder for the files (default: compose.preview_dir/edition-ID)."
)
@pass_app
def preview(
    app: App,
    edition_id: int,
    language: str | None,
    interests: str | None,
    all_variants: bool,
    open_browser: bool,
    screenshots: bool,
    out: str | None,
) -> None:
    """Write the HTML and text of variants to a folder and print their paths.

    Without options: the all-topics variant of each language. --lang and --interests choose one
    variant (any combination, even one no subscriber has); --all writes every variant the
    subscribers need. index.html shows each variant written at 600 px and 375 px side by side,
    with its subscriber count.

    Example:

        bulletin edition preview 3 --lang fr --interests youth,cities --open
    """
    from bulletin.app.editions import get_edition
    from bulletin.compose import preview as previews
    from bulletin.compose.render import render_variants
    from bulletin.compose.variants import plan_variants, variant_subscriber_counts

    settings = app.settings
    if all_variants and (language or interests):
        raise InvalidInput("--all previews every variant: leave out --lang and --interests")
    if screenshots:
        reason = previews.browser_unavailable_reason()
        if reason:
            raise InvalidInput(f"--screenshots needs a browser: {reason}")
    with app.reading() as session:
        found = get_edition(session, edition_id)
        counts = variant_subscriber_counts(session, settings)
        if all_variants:
            pairs = plan_variants(session, settings, found)
        else:
            languages = [language] if language else list(settings.languages)
            pairs = [(lang, interests or "") for lang in languages]
        rendered = render_variants(session, settings, found, pairs)
    folder = previews.preview_dir(settings, edition_id, out)
    files = previews.write_previews(settings, rendered, folder, counts)
    for file in files:
        note = " (no items: not sent)" if file.variant.empty else ""
        click.echo(f"{file.html}{note}")
        click.echo(f"{file.text}")
        for problem in file.variant.problems:
            click.echo(f"  problem: {problem}")
    index = previews.write_index(settings, found, files, folder)
    click.echo(f"{index}")
    if screenshots:
        for shot in previews.take_screenshots(files):
            click.echo(f"{shot}")
    if open_browser:
        previews.open_in_browser(index)


def register(cli: click.Group) -> None:
    cli.add_command(edition)
