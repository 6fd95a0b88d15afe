"""Sent editions for the archive tests: news in French, English and Spanish, sent through the real sender."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Engine

from bulletin.compose.approval import approve
from bulletin.config import Settings
from bulletin.db import transaction
from bulletin.models import Edition, EditionStatus, utcnow
from bulletin.mta.sender import send_edition

from .factories import add_news_item
from .smtp_server import RecordingSMTPServer
from .web_support import add_subscriber_row, make_edition

LONG_FR = (
    "Dans le quartier de la gare, les habitants ont formé des équipes de voisins qui parcourent les rues chaque soir. "
    "La mairie leur prête un local et finance des formations à la médiation. "
    "Les commerçants disent se sentir moins seuls face aux incivilités. "
    "Les agents municipaux saluent une collaboration qui change leur travail au quotidien. "
    "Le bilan de la première année montre une baisse nette des plaintes pour dégradations. "
    "La ville compte étendre le dispositif à trois autres quartiers dès le printemps prochain, "
    "avec l'aide des associations locales et des écoles du secteur."
)
LONG_EN = (
    "In the station district, residents have formed teams of neighbours who walk the streets every evening. "
    "The city lends them a room and pays for training in mediation. "
    "Shopkeepers say they feel less alone when facing antisocial behaviour. "
    "Municipal staff welcome a partnership that changes their daily work. "
    "The first year's results show a clear drop in complaints about vandalism. "
    "The city plans to extend the scheme to three more districts next spring, "
    "with the help of local associations and the schools of the area, and to publish its figures every quarter."
)
LONG_ES = (
    "En el barrio de la estación, los vecinos formaron equipos que recorren las calles cada noche. "
    "El ayuntamiento les presta un local y financia cursos de mediación. "
    "Los comerciantes dicen sentirse menos solos ante los actos incívicos. "
    "El personal municipal celebra una colaboración que cambia su trabajo diario. "
    "El balance del primer año muestra una clara baja de las denuncias por daños. "
    "La ciudad quiere extender el programa a otros tres barrios la próxima primavera, "
    "con la ayuda de las asociaciones locales y de las escuelas de la zona."
)
SCHOOL_FR = (
    "Un collège de Lyon a mis en place un programme de prévention du harcèlement conduit par les élèves eux-mêmes. "
    "Chaque classe désigne deux médiateurs formés pendant trois jours. "
    "Ils interviennent dans la cour et orientent les victimes vers les adultes. "
    "Après deux ans, les signalements ont doublé, signe que la parole se libère, "
    "et les cas graves ont diminué de moitié selon l'équipe de direction, qui présentera ses résultats "
    "aux autres établissements de l'académie lors d'une journée d'échange au mois de juin, "
    "en présence de chercheurs et de parents d'élèves venus de toute la région."
)
SCHOOL_EN = (
    "A secondary school in Lyon has set up an anti-bullying programme run by the pupils themselves. "
    "Each class chooses two mediators who are trained for three days. "
    "They step in on the playground and refer victims to adults. "
    "After two years, reports have doubled, a sign that pupils speak up more, "
    "and serious cases have halved according to the school's management, which will present its results "
    "to the other schools of the region at a day of exchanges in June, "
    "together with researchers and parents coming from all over the area."
)

# Names and addresses of the subscribers: they must never appear on a public page.
SUBSCRIBERS = [
    ("marie.curie@example.org", "Marie Curie", "fr", ""),
    ("john.smith@example.org", "John Smith", "en", "youth"),
    ("lucia.perez@example.org", "Lucía Pérez", "es", ""),
]


@dataclass
class SentEdition:
    edition_id: int
    items: dict[str, int]
    messages: list[EmailMessage]

    def message_to(self, address: str) -> EmailMessage:
        return next(message for message in self.messages if address in str(message["To"]))


def add_archive_news(engine: Engine) -> dict[str, int]:
    """Three stories: a long linked one (fr, en, es), a long one without link (fr, en), a short one (fr, en)."""
    published = utcnow() - timedelta(days=1)
    stories: list[tuple[str, str, str, str, dict[str, Any]]] = [
        ("quartiers-fr", "fr", "Des voisins veillent sur leur quartier", "cities", {"text": LONG_FR}),
        ("quartiers-en", "en", "Neighbours watch over their district", "cities", {"text": LONG_EN}),
        ("quartiers-es", "es", "Vecinos que cuidan su barrio", "cities", {"text": LONG_ES}),
        ("ecole-fr", "fr", "Les élèves médiateurs contre le harcèlement", "youth", {"text": SCHOOL_FR}),
        ("ecole-en", "en", "Pupils as mediators against bullying", "youth", {"text": SCHOOL_EN}),
        ("bref-fr", "fr", "Nouveau rapport sur la cybercriminalité", "cybercrime", {"text": "Le rapport est paru."}),
        ("bref-en", "en", "New report on cybercrime", "cybercrime", {"text": "The report is out."}),
    ]
    ids = {}
    with transaction(engine) as session:
        for index, (name, language, title, topics, fields) in enumerate(stories):
            key = name.rsplit("-", 1)[0]
            link = f"https://www.example.org/{language}/{key}" if key == "quartiers" else None
            item = add_news_item(
                session,
                title,
                language,
                topics,
                key=key,
                link=link,
                published_at=published - timedelta(minutes=index),
                **fields,
            )
            ids[name] = item.id
    return ids


def send_archive_edition(engine: Engine, settings: Settings, smtp: RecordingSMTPServer) -> SentEdition:
    """Subscribers, news and one edition sent to them through the sender and the recording SMTP server."""
    for email, name, language, interests in SUBSCRIBERS:
        add_subscriber_row(engine, email, language=language, interests=interests, name=name)
    items = add_archive_news(engine)
    edition_id = make_edition(engine, settings)
    approve(engine, settings, edition_id, "test-approver")
    already = len(smtp.messages)
    outcome = send_edition(engine, settings, edition_id, actor="test", worker="archive-test")
    assert outcome.started, outcome.refused
    messages = [message.parse() for message in smtp.wait_for(already + len(SUBSCRIBERS))[already:]]
    return SentEdition(edition_id, items, messages)


def set_status(engine: Engine, edition_id: int, status: EditionStatus) -> None:
    """Put an edition in a state directly (the archive only reads the state)."""
    with transaction(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        edition.status = status
