"""Settings: declared once here, with default and help text, read from one TOML file.

Every section is a frozen dataclass; each field carries its help text in ``metadata``.
The loader checks unknown keys and types against these declarations and the sample file
written by ``bulletin init`` is generated from them, so nothing is declared twice.
Secrets never live in the file: they come from ``BULLETIN_SECRET_KEY``,
``BULLETIN_SMTP_PASSWORD`` and ``BULLETIN_BOUNCE_PASSWORD``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import ipaddress
import math
import os
import re
import tomllib
import typing
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bulletin.paths import shown as shown_path

DEFAULT_CONFIG_NAME = "bulletin.toml"
CONFIG_ENV = "BULLETIN_CONFIG"
SECRET_KEY_ENV = "BULLETIN_SECRET_KEY"
SMTP_PASSWORD_ENV = "BULLETIN_SMTP_PASSWORD"
BOUNCE_PASSWORD_ENV = "BULLETIN_BOUNCE_PASSWORD"


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file and key."""


def setting(default: Any, help: str) -> Any:
    """Declare a setting with its default and help text."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: _copy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Organisation:
    name: str = setting("International Centre for Crime Prevention", "Organisation name shown in every bulletin.")
    address: str = setting(
        "1200 avenue Exemple, bureau 300, Montréal (Québec) H0H 0H0, Canada",
        "Postal address printed in the footer (bulk-sender rules ask for one).",
    )
    contact_email: str = setting("info@example.org", "Contact address printed in the footer.")
    website: str = setting("https://www.example.org", "Organisation website linked from the header.")
    list_name: str = setting("Bulletin", "Name of the mailing list, used in List-Id and page titles.")


@dataclass(frozen=True)
class Sender:
    from_address: str = setting("bulletin@example.org", "From address of every bulletin.")
    from_name: str = setting("Bulletin", "Display name in the From header.")
    reply_to: str = setting("", "Reply-To address; empty means replies go to From.")
    unsubscribe_mailto: str = setting(
        "unsubscribe@example.org", "Mailbox named in List-Unsubscribe as the mailto alternative."
    )
    list_id: str = setting("bulletin.example.org", "Domain-like identifier used in the List-Id header.")


@dataclass(frozen=True)
class Web:
    base_url: str = setting("https://bulletin.example.org", "Public base URL of the subscription pages.")
    confirm_emails_per_address: int = setting(3, "Most opt-in emails sent to one address in 24 hours.")
    confirm_emails_per_ip: int = setting(20, "Most opt-in emails requested from one client IP address in an hour.")
    login_attempts: int = setting(
        5, "Failed staff logins allowed per account (and 4 times that per client IP) in 15 minutes."
    )
    session_hours: int = setting(12, "How long a staff login lasts, in hours.")
    embed_origins: list[str] = setting(
        [],
        "Other sites (origins such as 'https://www.example.org') whose pages may post the embedded "
        "subscription form of 'bulletin web snippet'.",
    )
    welcome_email: bool = setting(
        True, "Send a welcome email (topics and preferences link) once a subscription is confirmed."
    )


@dataclass(frozen=True)
class Interest:
    key: str = setting("", "Short identifier of the topic, e.g. 'youth'.")
    labels: dict[str, str] = setting({}, "Label of the topic in each language.")
    keywords: dict[str, list[str]] = setting({}, "Words that tag a news item with this topic, per language.")


DEFAULT_INTERESTS: list[dict[str, Any]] = [
    {
        "key": "youth",
        "labels": {"fr": "Jeunesse", "en": "Youth", "es": "Juventud"},
        "keywords": {
            "fr": ["jeunes", "jeunesse", "adolescents", "école"],
            "en": ["youth", "young people", "teenagers", "school"],
            "es": ["jóvenes", "juventud", "adolescentes", "escuela"],
        },
    },
    {
        "key": "cities",
        "labels": {"fr": "Sécurité urbaine", "en": "Urban safety", "es": "Seguridad urbana"},
        "keywords": {
            "fr": ["ville", "villes", "urbain", "urbaine", "municipal", "quartier"],
            "en": ["city", "cities", "urban", "municipal", "neighbourhood", "neighborhood"],
            "es": ["ciudad", "ciudades", "urbana", "urbano", "municipal", "barrio"],
        },
    },
    {
        "key": "cybercrime",
        "labels": {"fr": "Cybercriminalité", "en": "Cybercrime", "es": "Ciberdelincuencia"},
        "keywords": {
            "fr": ["cybercriminalité", "numérique", "en ligne", "internet"],
            "en": ["cybercrime", "digital", "online", "internet"],
            "es": ["ciberdelincuencia", "cibercriminalidad", "digital", "en línea", "internet"],
        },
    },
    {
        "key": "violence",
        "labels": {"fr": "Violences", "en": "Violence", "es": "Violencia"},
        "keywords": {
            "fr": ["violence", "violences", "exploitation sexuelle", "féminicide"],
            "en": ["violence", "sexual exploitation", "femicide", "abuse"],
            "es": ["violencia", "explotación sexual", "feminicidio"],
        },
    },
    {
        "key": "policing",
        "labels": {"fr": "Police et justice", "en": "Policing and justice", "es": "Policía y justicia"},
        "keywords": {
            "fr": ["police", "policière", "justice", "tribunal"],
            "en": ["police", "policing", "justice", "court"],
            "es": ["policía", "policial", "justicia", "tribunal"],
        },
    },
    {
        "key": "drugs",
        "labels": {"fr": "Drogues", "en": "Drugs", "es": "Drogas"},
        "keywords": {
            "fr": ["drogue", "drogues", "stupéfiants", "cannabis"],
            "en": ["drug", "drugs", "narcotics", "cannabis"],
            "es": ["droga", "drogas", "estupefacientes", "cannabis"],
        },
    },
    {
        "key": "trafficking",
        "labels": {"fr": "Traite et trafics", "en": "Trafficking", "es": "Trata y tráfico"},
        "keywords": {
            "fr": ["traite", "trafic", "trafics", "migrants"],
            "en": ["trafficking", "smuggling", "migrants"],
            "es": ["trata", "tráfico", "migrantes"],
        },
    },
    {
        "key": "research",
        "labels": {"fr": "Rapports et recherche", "en": "Reports and research", "es": "Informes e investigación"},
        "keywords": {
            "fr": ["rapport", "étude", "recherche", "publication"],
            "en": ["report", "study", "research", "publication"],
            "es": ["informe", "estudio", "investigación", "publicación"],
        },
    },
]


@dataclass(frozen=True)
class Database:
    url: str = setting(
        "sqlite:///subscribers.db",
        "SQLAlchemy database URL; a relative SQLite path is relative to the config file. "
        "Use postgresql+psycopg://... when one machine is not enough.",
    )
    busy_timeout_ms: int = setting(10000, "How long SQLite waits for a lock before giving up, in milliseconds.")


@dataclass(frozen=True)
class Smtp:
    host: str = setting("localhost", "SMTP server host name.")
    port: int = setting(25, "SMTP server port.")
    security: Literal["none", "starttls", "tls"] = setting("none", "Transport security: none, starttls or tls.")
    user: str = setting("", "SMTP AUTH user; the password comes from BULLETIN_SMTP_PASSWORD.")
    connections: int = setting(2, "Parallel SMTP connections.")
    messages_per_connection: int = setting(500, "Reopen a connection after this many messages.")
    messages_per_second: float = setting(14.0, "Most messages handed to the server in any one second.")
    messages_per_hour: int = setting(50000, "Most messages handed to the server in any one hour.")
    timeout: float = setting(30.0, "Seconds to wait for any SMTP reply before deferring the message.")
    helo_name: str = setting("", "Name announced in EHLO; empty uses the machine's name.")
    ca_file: str = setting(
        "", "PEM file of the authorities that sign the server's TLS certificate; empty uses the system's."
    )


@dataclass(frozen=True)
class Delivery:
    retry_first: float = setting(300.0, "Seconds before the first retry of a deferred message.")
    retry_max: float = setting(3600.0, "Longest wait between retries, in seconds (the wait doubles up to this).")
    give_up_after: float = setting(259200.0, "Seconds after the first attempt when a deferred message is failed.")
    bounce_after: int = setting(3, "Editions with a permanent failure after which a subscriber becomes bounced.")
    batch_size: int = setting(500, "Deliveries claimed from the ledger at a time.")
    # Bounces that arrive after the SMTP transaction (see bulletin.mta.bounces).
    bounce_address: str = setting(
        "",
        "Envelope sender; each message goes out as bounces+TOKEN@ its domain (VERP). Empty means "
        "bounces@ the From address's domain.",
    )
    soft_bounce_limit: int = setting(
        3, "Temporary failures (4.x.x reports) within soft_bounce_days after which a subscriber becomes bounced."
    )
    soft_bounce_days: int = setting(30, "Window, in days, in which temporary failures are counted.")


@dataclass(frozen=True)
class Dkim:
    key_path: str = setting("", "Path to the PEM private key; empty disables DKIM signing.")
    selector: str = setting("", "DKIM selector published in DNS.")
    domain: str = setting("", "Signing domain (d=); empty uses the From address's domain.")


@dataclass(frozen=True)
class Compose:
    fallback: Literal["original", "skip"] = setting(
        "original",
        "When a story lacks the reader's language: 'original' includes it in another language, marked; "
        "'skip' leaves it out.",
    )
    max_html_bytes: int = setting(102400, "Largest HTML part allowed; Gmail clips bigger messages.")
    templates_dir: str = setting("", "Folder of email templates; empty uses the ones shipped with bulletin.")
    preview_dir: str = setting("previews", "Folder where previews are written, relative to the config file.")
    excerpt_words: int = setting(
        70, "Longest excerpt of an item in the email, in words; 'Read more' links to the rest."
    )


@dataclass(frozen=True)
class Schedule:
    cron: str = setting("0 8 * * 1", "When the periodic edition is drafted (crontab: minute hour day month weekday).")
    timezone: str = setting("America/Toronto", "Time zone of the cron expression and of --at times.")
    misfire_grace_seconds: int = setting(86400, "How late a missed job may still run after downtime.")
    tick_seconds: int = setting(60, "How often the scheduler starts due editions and retries deferred deliveries.")


@dataclass(frozen=True)
class Workflow:
    approvals_required: int = setting(1, "Distinct approvers needed before an edition may be sent.")
    reviewers: list[str] = setting([], "Addresses that receive test sends of every new draft.")


@dataclass(frozen=True)
class Ingest:
    feeds: list[str] = setting([], "Feed URLs polled by the periodic edition.")
    folders: list[str] = setting([], "Folders of text and Markdown news read by the periodic edition.")
    timeout: float = setting(20.0, "Seconds before a feed fetch gives up.")
    max_bytes: int = setting(10_000_000, "Largest source accepted, in bytes.")
    max_topics: int = setting(3, "Most topics an item gets from its keywords: the strongest ones are kept.")
    topic_min_score: float = setting(
        2.0, "Keyword evidence a topic needs: a keyword in the title counts 3, in the text 1 (its repeats less)."
    )


@dataclass(frozen=True)
class Archive:
    noindex: bool = setting(False, "Ask search engines not to index the public archive (robots noindex).")
    per_page: int = setting(10, "Editions listed on each page of the archive index.")
    feed_entries: int = setting(20, "Newest editions listed in each language's Atom feed.")


@dataclass(frozen=True)
class Bounces:
    imap_host: str = setting("", "IMAP server holding the bounce mailbox (TLS, port 993); empty disables fetching.")
    imap_port: int = setting(993, "IMAP over TLS port.")
    user: str = setting("", "IMAP user; the password comes from BULLETIN_BOUNCE_PASSWORD.")
    folder: str = setting("INBOX", "Folder read by 'bulletin bounces fetch'.")
    processed_folder: str = setting("bulletin-processed", "Folder the processed messages are moved to.")
    ca_file: str = setting("", "PEM file of the authorities that sign the IMAP server's certificate; empty: system's.")
    poll_seconds: int = setting(300, "How often the scheduler fetches the bounce mailbox when imap_host is set.")


@dataclass(frozen=True)
class Settings:
    """All of bulletin's settings; build one in tests with ``Settings()`` or ``load_settings``."""

    organisation: Organisation = setting(Organisation(), "Who publishes the bulletin.")
    sender: Sender = setting(Sender(), "Envelope and header addresses.")
    web: Web = setting(Web(), "Public web pages.")
    languages: list[str] = setting(["fr", "en", "es"], "Languages of the bulletin, as ISO 639-1 codes.")
    default_language: str = setting("fr", "Language used when none is known.")
    interests: list[Interest] = setting(
        [Interest(key=i["key"], labels=i["labels"], keywords=i["keywords"]) for i in DEFAULT_INTERESTS],
        "Topics subscribers choose from.",
    )
    database: Database = setting(Database(), "Where subscribers, news and editions are stored.")
    smtp: Smtp = setting(Smtp(), "Outgoing mail server.")
    delivery: Delivery = setting(Delivery(), "Retries and bounces.")
    dkim: Dkim = setting(Dkim(), "Optional DKIM signing.")
    compose: Compose = setting(Compose(), "How editions are rendered.")
    schedule: Schedule = setting(Schedule(), "Periodic editions.")
    workflow: Workflow = setting(Workflow(), "Review and approval.")
    ingest: Ingest = setting(Ingest(), "Sources read by the periodic edition.")
    archive: Archive = setting(Archive(), "The public archive of sent editions.")
    bounces: Bounces = setting(Bounces(), "The mailbox where bounces, complaints and unsubscribe requests arrive.")
    # Not from the file: where it was read from, to resolve relative paths.
    base_dir: Path = field(default=Path("."), metadata={"help": "", "internal": True}, compare=False)

    @property
    def interest_keys(self) -> list[str]:
        return [interest.key for interest in self.interests]

    def interest(self, key: str) -> Interest:
        for interest in self.interests:
            if interest.key == key:
                return interest
        raise KeyError(key)

    @property
    def database_url(self) -> str:
        """The database URL, with a relative SQLite path resolved against the config folder."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith("sqlite:////") and ":memory:" not in url:
            path = url[len(prefix) :]
            if path:
                return prefix + str((self.base_dir / path).resolve())
        return url

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def secret_key(self) -> str:
        """Key that signs unsubscribe and preference links; required for anything that makes links."""
        key = os.environ.get(SECRET_KEY_ENV, "")
        _checked_secret_key(key)
        return key

    @property
    def smtp_password(self) -> str:
        return os.environ.get(SMTP_PASSWORD_ENV, "")

    @property
    def bounce_password(self) -> str:
        return os.environ.get(BOUNCE_PASSWORD_ENV, "")


# ---------------------------------------------------------------------------
# Loading and validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, dict):
        return {list: "a list", dict: "a table"}[origin]
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (item_type,) = typing.get_args(tp)
        return [_convert(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        _, value_type = typing.get_args(tp)
        return {str(k): _convert(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        assert isinstance(tp, type)
        return _build(tp, value, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"{name}: unknown setting (known: {', '.join(fields)})")
        kwargs[key] = _convert(value, hints[key], name)
    return cls(**kwargs)


def _check(settings: Settings) -> None:
    languages = settings.languages
    if not languages:
        raise ConfigError("languages: at least one language is needed")
    duplicates = sorted({lang for lang in languages if languages.count(lang) > 1})
    if duplicates:
        raise ConfigError(f"languages: {', '.join(duplicates)} given more than once")
    for lang in languages:
        if not (len(lang) == 2 and lang.isalpha() and lang.islower()):
            raise ConfigError(f"languages: {lang!r} is not a two-letter language code")
    if settings.default_language not in languages:
        raise ConfigError(f"default_language: {settings.default_language!r} is not one of languages {languages}")
    seen: set[str] = set()
    for index, interest in enumerate(settings.interests):
        where = f"interests[{index}]"
        if not interest.key or not interest.key.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{where}.key: {interest.key!r} must be a non-empty word (letters, digits, - or _)")
        if interest.key != interest.key.lower():
            raise ConfigError(f"{where}.key: {interest.key!r} must be lower case")
        if interest.key in seen:
            raise ConfigError(f"{where}.key: {interest.key!r} is declared twice")
        seen.add(interest.key)
        for lang in list(interest.labels) + list(interest.keywords):
            if lang not in languages:
                raise ConfigError(f"{where}.labels: unknown language {lang!r} (languages are {languages})")
        for lang in languages:
            if not interest.labels.get(lang):
                raise ConfigError(f"{where}.labels.{lang}: missing label for topic {interest.key!r}")
    if settings.smtp.connections < 1:
        raise ConfigError("smtp.connections: must be at least 1")
    if settings.smtp.messages_per_second <= 0 or settings.smtp.messages_per_hour <= 0:
        raise ConfigError("smtp.messages_per_second and messages_per_hour: must be positive")
    if settings.delivery.soft_bounce_limit < 1 or settings.delivery.soft_bounce_days < 1:
        raise ConfigError("delivery.soft_bounce_limit and soft_bounce_days: must be at least 1")
    if settings.bounces.poll_seconds < 1:
        raise ConfigError("bounces.poll_seconds: must be at least 1")
    if settings.workflow.approvals_required < 1:
        raise ConfigError("workflow.approvals_required: must be at least 1")
    if settings.ingest.max_topics < 0 or settings.ingest.topic_min_score <= 0:
        raise ConfigError("ingest.max_topics: must be 0 or more, and ingest.topic_min_score positive")
    if not settings.web.base_url.startswith(("https://", "http://")):
        raise ConfigError(f"web.base_url: {settings.web.base_url!r} must start with https://")
    from zoneinfo import ZoneInfo

    # Loaded here only: reading a crontab line needs APScheduler, which most commands never use.
    from bulletin.cron import CronError, crontab_trigger

    try:
        zone = ZoneInfo(settings.schedule.timezone)
    except Exception:
        raise ConfigError(f"schedule.timezone: unknown time zone {settings.schedule.timezone!r}") from None
    if settings.compose.excerpt_words < 10:
        raise ConfigError("compose.excerpt_words: must be at least 10")
    if settings.archive.per_page < 1 or settings.archive.feed_entries < 1:
        raise ConfigError("archive.per_page and archive.feed_entries: must be at least 1")
    for index, origin in enumerate(settings.web.embed_origins):
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("https", "http")
            or not parts.netloc
            or origin.rstrip("/") != f"{parts.scheme}://{parts.netloc}"
        ):
            raise ConfigError(
                f"web.embed_origins[{index}]: {origin!r} must be an origin like 'https://www.example.org'"
            )
    if settings.schedule.tick_seconds < 1:
        raise ConfigError("schedule.tick_seconds: must be at least 1")
    try:
        crontab_trigger(settings.schedule.cron, zone)
    except CronError as exc:
        raise ConfigError(f"schedule.cron: {exc}") from None
    _check_values(settings)


# ---------------------------------------------------------------------------
# Values checked at load, so that nothing fails later half-way through a send

SECRET_KEY_MIN_LENGTH = 16
SECRET_KEY_MIN_DISTINCT = 8

# (lowest, highest) of each number; every number must also be finite.
NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "database.busy_timeout_ms": (1, 3_600_000),
    "smtp.port": (1, 65535),
    "smtp.connections": (1, 64),
    "smtp.messages_per_connection": (1, 10_000_000),
    "smtp.messages_per_second": (0.001, 100_000),
    "smtp.messages_per_hour": (1, 1_000_000_000),
    "smtp.timeout": (0.001, 3600),
    "delivery.retry_first": (0.001, 31_622_400),
    "delivery.retry_max": (0.001, 31_622_400),
    "delivery.give_up_after": (0.001, 31_622_400),
    "delivery.bounce_after": (1, 1000),
    "delivery.batch_size": (1, 100_000),
    "compose.max_html_bytes": (1, 100_000_000),
    "schedule.misfire_grace_seconds": (1, 31_622_400),
    "schedule.tick_seconds": (1, 86400),
    "workflow.approvals_required": (1, 100),
    "ingest.timeout": (0.001, 3600),
    "ingest.max_bytes": (1, 2_000_000_000),
    "web.confirm_emails_per_address": (1, 1_000_000),
    "web.confirm_emails_per_ip": (1, 1_000_000),
    "web.login_attempts": (1, 1_000_000),
    "web.session_hours": (1, 8784),
}
# Addresses (empty allowed where the setting says so) and host names.
ADDRESSES = ("sender.from_address", "sender.unsubscribe_mailto", "organisation.contact_email")
OPTIONAL_ADDRESSES = ("sender.reply_to",)
HOSTS = ("smtp.host",)
OPTIONAL_HOSTS = ("smtp.helo_name", "dkim.domain", "sender.list_id")
# Multi-line text is allowed only here (it never reaches a header).
MULTILINE = ("organisation.address",)
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _value(settings: Settings, name: str) -> Any:
    section, key = name.split(".")
    return getattr(getattr(settings, section), key)


def is_host_name(value: str) -> bool:
    """A host name (letters, digits and hyphens in dot-separated labels) or an IP address."""
    try:
        ipaddress.ip_address(value.strip("[]"))
        return True
    except ValueError:
        pass
    try:
        ascii_name = value.encode("idna").decode("ascii").lower().removesuffix(".")
    except UnicodeError:
        return False
    return 0 < len(ascii_name) <= 253 and all(_HOST_LABEL.match(label) for label in ascii_name.split("."))


def _check_address(name: str, value: str) -> None:
    try:
        validate_email(value, check_deliverability=False, globally_deliverable=False)
    except EmailNotValidError as exc:
        raise ConfigError(f"{name}: {value!r} is not an email address ({exc})") from None


def _control_characters(value: str, *, multiline: bool) -> bool:
    allowed = "\n" if multiline else ""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") and ch not in allowed for ch in value)


def _strings(value: Any, where: str) -> typing.Iterator[tuple[str, str]]:
    """(name, text) of every string inside a setting value."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if not f.metadata.get("internal"):
                yield from _strings(getattr(value, f.name), f"{where}.{f.name}" if where else f.name)


@functools.lru_cache(maxsize=4)
def _checked_secret_key(key: str) -> None:
    """:func:`check_secret_key`, remembered for a key that passed: every signed link asks for the key."""
    check_secret_key(key)


def check_secret_key(key: str) -> None:
    """Refuse a missing or guessable link-signing key (16 spaces, one character repeated...)."""
    advice = "(try: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        raise ConfigError(
            f"{SECRET_KEY_ENV} must be set to a random string of at least {SECRET_KEY_MIN_LENGTH} characters {advice}"
        )
    if len(set(key) - set(" \t")) < SECRET_KEY_MIN_DISTINCT or _control_characters(key, multiline=False):
        raise ConfigError(
            f"{SECRET_KEY_ENV} is too easy to guess (it needs at least {SECRET_KEY_MIN_DISTINCT} different "
            f"characters and no control characters): set a random one {advice}"
        )


def _check_values(settings: Settings) -> None:
    for name, (lowest, highest) in NUMBER_RANGES.items():
        number = _value(settings, name)
        if not math.isfinite(number) or not lowest <= number <= highest:
            raise ConfigError(f"{name}: {number!r} is out of range (give a number from {lowest:g} to {highest:g})")
    for where, text in _strings(settings, ""):
        if _control_characters(text, multiline=where in MULTILINE):
            raise ConfigError(f"{where}: {text!r} holds a line break or another control character")
    for name in ADDRESSES + OPTIONAL_ADDRESSES:
        value = _value(settings, name)
        if value or name not in OPTIONAL_ADDRESSES:
            _check_address(name, value)
    for index, reviewer in enumerate(settings.workflow.reviewers):
        _check_address(f"workflow.reviewers[{index}]", reviewer)
    for name in HOSTS + OPTIONAL_HOSTS:
        value = _value(settings, name)
        if (value or name not in OPTIONAL_HOSTS) and not is_host_name(value):
            raise ConfigError(f"{name}: {value!r} is not a host name")
    _check_database_url(settings.database.url)
    key = os.environ.get(SECRET_KEY_ENV, "")
    if key:
        check_secret_key(key)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _check_database_url(url: str) -> None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"database.url: {url!r} is not a database URL (use sqlite:///subscribers.db or "
            "postgresql://user@host/dbname)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql", "postgres"):
        raise ConfigError(f"database.url: {backend!r} databases are not supported (use sqlite or postgresql)")
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg") and not _installed("psycopg"):
        raise ConfigError(
            "database.url is a PostgreSQL URL but its driver psycopg is not installed: pip install 'bulletin[postgres]'"
        )


def settings_from_dict(data: Mapping[str, Any], base_dir: Path = Path(".")) -> Settings:
    """Build and check settings from a parsed TOML document."""
    settings: Settings = _build(Settings, data, "")
    _check(settings)
    return dataclasses.replace(settings, base_dir=base_dir.resolve())


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: the option, else ``BULLETIN_CONFIG``, else ./bulletin.toml."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME)


def load_settings(path: str | os.PathLike[str] | None = None, *, missing_ok: bool = True) -> Settings:
    """Read and check a config file; raise ConfigError whose message starts with the file name."""
    file = config_path(path)
    shown = shown_path(file)
    try:
        exists = file.exists()
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read the config file ({exc.strerror or exc})") from None
    if not exists:
        if missing_ok and path is None and not os.environ.get(CONFIG_ENV):
            return dataclasses.replace(Settings(), base_dir=Path(".").resolve())
        raise ConfigError(f"{shown}: no such config file (create one with 'bulletin init')")
    if file.is_dir():
        raise ConfigError(f"{shown}: is a folder, not a config file (give the path of a .toml file)")
    if not file.is_file():
        raise ConfigError(f"{shown}: is not a regular file (a device or pipe), not a config file")
    try:
        if file.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{shown}: is larger than {MAX_CONFIG_BYTES // 1_000_000} MB, not a config file")
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read the config file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown}: not valid TOML: {exc}") from None
    try:
        return settings_from_dict(data, file.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{shown}: {exc}") from None


MAX_CONFIG_BYTES = 10_000_000


# ---------------------------------------------------------------------------
# The commented sample written by ``bulletin init``


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else _toml_value(key)


def _comment(text: str) -> list[str]:
    import textwrap

    return ["# " + line for line in textwrap.wrap(text, 88)]


def sample_config(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """A complete, commented config file listing every setting with its default."""
    overrides = overrides or {}
    defaults = Settings()
    lines = [
        "# bulletin configuration. Every setting is shown with its default value.",
        f"# Secrets are not kept here: set {SECRET_KEY_ENV}, {SMTP_PASSWORD_ENV} and {BOUNCE_PASSWORD_ENV}"
        " in the environment.",
        "",
    ]
    sections: list[tuple[str, dataclasses.Field[Any], Any]] = []
    for f in dataclasses.fields(Settings):
        if f.metadata.get("internal"):
            continue
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value) or f.name == "interests":
            sections.append((f.name, f, value))
            continue
        lines += _comment(f.metadata["help"])
        lines.append(f"{f.name} = {_toml_value(value)}")
        lines.append("")
    for name, f, value in sections:
        if name == "interests":
            continue
        lines += _comment(f.metadata["help"])
        lines.append(f"[{name}]")
        for sub in dataclasses.fields(value):
            sub_value = overrides.get(name, {}).get(sub.name, getattr(value, sub.name))
            lines += _comment(sub.metadata["help"])
            lines.append(f"{sub.name} = {_toml_value(sub_value)}")
        lines.append("")
    interests_field = next(f for f in dataclasses.fields(Settings) if f.name == "interests")
    lines += _comment(interests_field.metadata["help"] + " Each has a key, a label per language and keywords.")
    for interest in defaults.interests:
        lines.append("[[interests]]")
        lines.append(f"key = {_toml_value(interest.key)}")
        lines.append(f"labels = {_toml_value(interest.labels)}")
        lines.append(f"keywords = {_toml_value(interest.keywords)}")
        lines.append("")
    return "\n".join(lines)


def all_settings_help() -> list[tuple[str, str, str]]:
    """(name, default, help) of every setting, for documentation."""
    rows: list[tuple[str, str, str]] = []
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        if f.metadata.get("internal"):
            continue
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            for sub in dataclasses.fields(value):
                rows.append((f"{f.name}.{sub.name}", _toml_value(getattr(value, sub.name)), sub.metadata["help"]))
        elif f.name != "interests":
            rows.append((f.name, _toml_value(value), f.metadata["help"]))
    return rows
