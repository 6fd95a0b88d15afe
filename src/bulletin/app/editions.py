"""Editions: gather the news of a period, group the language versions of each story, order them.

An edition holds news items (each one story in one language). The versions of one story stay
together and share the story's place in the order; staff move whole stories, and exclude or
include single language versions (an excluded version leaves the story to the fallback rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date
from sqlalchemy import false, or_, select
from sqlalchemy.orm import Session

from bulletin.config import Settings
from bulletin.errors import Conflict, InvalidInput, NotFound
from bulletin.i18n import translations
from bulletin.models import Edition, EditionItem, EditionStatus, EditionTransition, NewsItem, NewsStatus, utcnow
from bulletin.news.translations import translations_of

# The reason of a log row that records a story edit rather than a change of status.
STORY_EDIT = "story edit: "
# Content may still change in these states; the workflow voids approvals whose hashes no longer match.
EDITABLE = frozenset({EditionStatus.DRAFT, EditionStatus.REVIEW, EditionStatus.APPROVED, EditionStatus.SCHEDULED})


@dataclass(frozen=True)
class Version:
    """One language version of a story, as placed in an edition."""

    entry: EditionItem
    item: NewsItem

    @property
    def excluded(self) -> bool:
        return bool(self.entry.excluded)


@dataclass(frozen=True)
class Story:
    """The versions of one story in an edition, at the story's place (1-based)."""

    position: int
    versions: tuple[Version, ...]

    @property
    def included(self) -> list[NewsItem]:
        return [v.item for v in self.versions if not v.excluded]

    @property
    def topics(self) -> frozenset[str]:
        """Topics of the story: those of any of its versions, so every language agrees."""
        return frozenset(key for v in self.versions for key in v.item.topic_list)


def get_edition(session: Session, edition_id: int) -> Edition:
    """The edition with this id, or NotFound."""
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise NotFound(f"no edition {edition_id}")
    return edition


def _language_rank(settings: Settings | None) -> dict[str, int]:
    if settings is None:
        return {}
    order = [settings.default_language] + [lang for lang in settings.languages if lang != settings.default_language]
    return {lang: index for index, lang in enumerate(order)}


def _group(session: Session, items: Iterable[NewsItem]) -> list[list[NewsItem]]:
    """Group items that are versions of the same story (translation key, links, staff pairing)."""
    items = list(items)
    by_id = {item.id: item for item in items}
    parent = {item.id: item.id for item in items}

    def root(key: int) -> int:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for item in items:
        for other in translations_of(session, item):
            if other.id in by_id:
                a, b = root(item.id), root(other.id)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: dict[int, list[NewsItem]] = {}
    for item in items:
        groups.setdefault(root(item.id), []).append(item)
    return list(groups.values())


def edition_stories(session: Session, settings: Settings | None, edition: Edition) -> list[Story]:
    """The edition's stories in order, each with its language versions (excluded ones too)."""
    rows = session.execute(
        select(EditionItem, NewsItem)
        .join(NewsItem, NewsItem.id == EditionItem.news_item_id)
        .where(EditionItem.edition_id == edition.id)
        .order_by(EditionItem.position, NewsItem.id)
    ).all()
    entries = {item.id: entry for entry, item in rows}
    rank = _language_rank(settings)
    stories = []
    for group in _group(session, [item for _, item in rows]):
        versions = sorted(
            (Version(entries[item.id], item) for item in group),
            key=lambda v: (rank.get(v.item.language, len(rank)), v.item.language, v.entry.position, v.item.id),
        )
        stories.append(versions)
    stories.sort(key=lambda versions: min((v.entry.position, v.item.id) for v in versions))
    return [Story(position=index, versions=tuple(versions)) for index, versions in enumerate(stories, start=1)]


def _renumber(stories: list[list[Version]]) -> None:
    position = 1
    for versions in stories:
        for version in versions:
            version.entry.position = position
            position += 1


def last_day(settings: Settings, period_end: datetime) -> date:
    """The last day a period ending at ``period_end`` (not included) covers, in the schedule's zone."""
    return (period_end - timedelta(microseconds=1)).astimezone(ZoneInfo(settings.schedule.timezone)).date()


def default_subject(settings: Settings, language: str, when: datetime) -> str:
    """The subject used when staff give none: the list name and the edition's date."""
    date = format_date(last_day(settings, when), format="long", locale=language)
    return translations(language).gettext("%(list)s of %(date)s") % {
        "list": settings.organisation.list_name,
        "date": date,
    }


def _check_languages(settings: Settings, texts: Mapping[str, str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for lang, text in (texts or {}).items():
        if lang not in settings.languages:
            raise InvalidInput(
                f"{what} in {lang!r}: not one of the configured languages ({', '.join(settings.languages)})"
            )
        text = text.strip()
        if text:
            result[lang] = text
    return result


def _taken_item_ids(session: Session) -> set[int]:
    """News items already placed (not excluded) in an edition that is not cancelled."""
    return set(
        session.scalars(
            select(EditionItem.news_item_id)
            .join(Edition, Edition.id == EditionItem.edition_id)
            .where(Edition.status != EditionStatus.CANCELLED, EditionItem.excluded.is_(False))
        )
    )


def create_edition(
    session: Session,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    subjects: dict[str, str] | None = None,
    intros: dict[str, str] | None = None,
    actor: str = "cli",
) -> Edition:
    """Create a draft edition of the news published in [since, until), newest story first.

    ``since`` defaults to the end of the previous edition's period (or the oldest news item);
    ``until`` to now. Items already in another edition that is not cancelled are left out.
    """
    for value, name in ((since, "since"), (until, "until")):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name}: give a date with a time zone")
    subjects = _check_languages(settings, subjects, "subject")
    intros = _check_languages(settings, intros, "introduction")
    until = until or utcnow()
    # With the default period, news ingested after the previous edition was made counts as new
    # even when its own date is older (a date-only item, a late feed entry).
    ingested_since: datetime | None = None
    if since is None:
        previous = session.scalar(
            select(Edition)
            .where(Edition.status != EditionStatus.CANCELLED)
            .order_by(Edition.period_end.desc(), Edition.id.desc())
            .limit(1)
        )
        if previous is not None:
            since = previous.period_end
            ingested_since = previous.created_at
        else:
            oldest = session.scalar(
                select(NewsItem.published_at)
                .where(NewsItem.status != NewsStatus.EXCLUDED)
                .order_by(NewsItem.published_at)
                .limit(1)
            )
            since = oldest or until
    if since >= until:
        raise InvalidInput(f"the period is empty: since {since.isoformat()} is not before until {until.isoformat()}")

    taken = _taken_item_ids(session)
    candidates = [
        item
        for item in session.scalars(
            select(NewsItem)
            .where(
                or_(
                    NewsItem.published_at >= since,
                    NewsItem.created_at >= ingested_since if ingested_since is not None else false(),
                ),
                NewsItem.published_at < until,
                NewsItem.status != NewsStatus.EXCLUDED,
            )
            .order_by(NewsItem.published_at, NewsItem.id)
        )
        if item.id not in taken
    ]
    if not candidates:
        raise InvalidInput(
            f"no news items published between {since.isoformat()} and {until.isoformat()} "
            "that are not already in an edition"
        )

    for lang in settings.languages:
        subjects.setdefault(lang, default_subject(settings, lang, until))
    edition = Edition(
        status=EditionStatus.DRAFT,
        period_start=since,
        period_end=until,
        subjects=subjects,
        intros=intros,
        created_by=actor,
    )
    session.add(edition)
    session.flush()

    rank = _language_rank(settings)
    groups = _group(session, candidates)
    # Newest story first; a story's date is that of its newest version.
    groups.sort(key=lambda group: (-max(i.published_at.timestamp() for i in group), min(i.id for i in group)))
    position = 1
    for group in groups:
        for item in sorted(group, key=lambda i: (rank.get(i.language, len(rank)), i.language, i.id)):
            session.add(EditionItem(edition_id=edition.id, news_item_id=item.id, position=position, excluded=False))
            item.status = NewsStatus.IN_EDITION
            position += 1
    session.flush()
    session.refresh(edition)
    return edition


def _editable(session: Session, edition_id: int, actor: str) -> Edition:
    """The edition, if its stories may still change; refused before anything changes."""
    if not actor.strip():
        raise InvalidInput("say who is editing (an empty name is not logged)")
    edition = get_edition(session, edition_id)
    if edition.status not in EDITABLE:
        raise Conflict(f"edition {edition.id} is {edition.status.value}: its items can no longer change")
    return edition


def _log_story_edit(session: Session, edition: Edition, actor: str, what: str) -> None:
    """Record who changed the stories of an edition in its log (a row that keeps the status)."""
    session.add(
        EditionTransition(
            edition_id=edition.id,
            at=utcnow(),
            from_status=edition.status.value,
            to_status=edition.status.value,
            actor=actor.strip(),
            reason=STORY_EDIT + what,
        )
    )


def story_edits(session: Session, edition_id: int) -> list[EditionTransition]:
    """The story edits of an edition (moves, exclusions, inclusions), oldest first."""
    query = select(EditionTransition).where(
        EditionTransition.edition_id == edition_id, EditionTransition.reason.startswith(STORY_EDIT)
    )
    return list(session.scalars(query.order_by(EditionTransition.at, EditionTransition.id)))


def _find(stories: list[Story], news_item_id: int, edition_id: int) -> tuple[int, Version]:
    for index, story in enumerate(stories):
        for version in story.versions:
            if version.item.id == news_item_id:
                return index, version
    raise NotFound(f"news item {news_item_id} is not in edition {edition_id}")


def move_item(
    session: Session,
    edition_id: int,
    news_item_id: int,
    position: int,
    *,
    settings: Settings | None = None,
    actor: str = "cli",
) -> Edition:
    """Move the story of a news item to ``position`` (1 = first), with all its language versions."""
    edition = _editable(session, edition_id, actor)
    stories = edition_stories(session, settings, edition)
    if not 1 <= position <= len(stories):
        raise InvalidInput(f"position {position} is out of range: edition {edition_id} has {len(stories)} stories")
    index, _ = _find(stories, news_item_id, edition_id)
    order = [list(story.versions) for story in stories]
    moved = order.pop(index)
    order.insert(position - 1, moved)
    _renumber(order)
    edition.updated_at = utcnow()
    _log_story_edit(session, edition, actor, f"moved the story of news item {news_item_id} to position {position}")
    session.flush()
    return edition


def exclude_item(
    session: Session, edition_id: int, news_item_id: int, *, settings: Settings | None = None, actor: str = "cli"
) -> Edition:
    """Leave one language version out of the edition; it keeps its place should it come back."""
    edition = _editable(session, edition_id, actor)
    _, version = _find(edition_stories(session, settings, edition), news_item_id, edition_id)
    if version.entry.excluded:
        raise Conflict(f"news item {news_item_id} is already excluded from edition {edition_id}")
    version.entry.excluded = True
    edition.updated_at = utcnow()
    _log_story_edit(session, edition, actor, f"excluded news item {news_item_id}")
    session.flush()
    return edition


def include_item(
    session: Session, edition_id: int, news_item_id: int, *, settings: Settings | None = None, actor: str = "cli"
) -> Edition:
    """Bring back an excluded version, or add a news item that is not in the edition yet.

    A new item joins its story when a version of it is already there, else it goes last.
    """
    edition = _editable(session, edition_id, actor)
    stories = edition_stories(session, settings, edition)
    for story in stories:
        for version in story.versions:
            if version.item.id == news_item_id:
                if not version.entry.excluded:
                    raise Conflict(f"news item {news_item_id} is already in edition {edition_id}")
                version.entry.excluded = False
                edition.updated_at = utcnow()
                _log_story_edit(session, edition, actor, f"included news item {news_item_id} again")
                session.flush()
                return edition
    item = session.get(NewsItem, news_item_id)
    if item is None:
        raise NotFound(f"no news item with id {news_item_id}")
    if item.id in _taken_item_ids(session):
        raise Conflict(f"news item {news_item_id} is already in another edition")
    entry = EditionItem(edition_id=edition.id, news_item_id=item.id, position=0, excluded=False)
    session.add(entry)
    session.flush()
    order = [list(story.versions) for story in stories]
    new_version = Version(entry, item)
    groups = _group(session, [item] + [v.item for story in stories for v in story.versions])
    partners = next({other.id for other in group} for group in groups if item in group)
    joined = False
    for versions in order:
        if any(v.item.id in partners for v in versions):
            versions.append(new_version)
            joined = True
            break
    if not joined:
        order.append([new_version])
    _renumber(order)
    item.status = NewsStatus.IN_EDITION
    edition.updated_at = utcnow()
    _log_story_edit(session, edition, actor, f"added news item {news_item_id}")
    session.flush()
    return edition
