"""The centre's real listing pages: one blank line between everything, no date line, no separator,
no link between items; split into exactly their items, dated from their text, tagged with their
few strongest topics, each in its own language (real SQLite store, PostgreSQL when available)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select

from bulletin.config import Settings
from bulletin.db import reading
from bulletin.models import NewsItem
from bulletin.news.ingest import ingest_sources
from bulletin.news.store import content_hash
from bulletin.news.text_pages import read_text_page

FIXTURES = Path(__file__).parent / "fixtures" / "news_export"
# The pages' own date: dates without a year are placed on or before it.
AS_OF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# (title, local date, topics) of every item, in page order.
EXPECTED = {
    "fr": [
        ("Le Centre réunit la police municipale autour de la médiation de quartier", date(2026, 2, 10),
         ["cities", "policing"]),
        ("Bilan des ateliers d’écriture offerts aux jeunes du réseau", date(2025, 11, 4), ["youth"]),
        ("Le Centre présente une étude sur la sécurité des aînés", date(2026, 2, 2), ["research"]),
        ("Une troisième séance de formation sur la prévention du décrochage", date(2026, 1, 27), ["youth"]),
        ("Le Centre contribue à une consultation internationale sur la traite", date(2026, 1, 20), ["trafficking"]),
        ("Signature d’une entente avec une université du Mexique", date(2026, 1, 13), []),
        ("Publication du rapport du forum sur la violence", date(2021, 12, 8), ["research", "violence"]),
        ("Lancement d’un projet sur le cannabis dans les milieux scolaires", date(2025, 12, 12), ["drugs"]),
        ("Appel à communications pour le colloque sur la sécurité urbaine", date(2026, 11, 13), ["cities"]),
    ],
    "en": [
        ("Centre brings city police forces together on mediation", date(2026, 2, 10), ["cities", "policing"]),
        ("Review of the writing workshops offered to young people", date(2025, 11, 4), ["youth"]),
        ("Centre presents a study on the safety of older adults", date(2026, 2, 2), ["research"]),
        ("A third training session on preventing school dropout", date(2026, 1, 27), ["youth"]),
        ("Centre contributes to an international consultation on trafficking", date(2026, 1, 20), ["trafficking"]),
        ("Agreement signed with a university in Mexico", date(2026, 1, 13), []),
        ("Forum report on violence published", date(2021, 12, 8), ["research", "violence"]),
        ("Project on cannabis launched in secondary schools", date(2025, 12, 12), ["drugs"]),
        # "On March 3," is after the page's date of 1 March 2026: it was March 3 of the year before.
        ("Call for papers for the conference on urban safety", date(2025, 3, 3), ["cities"]),
    ],
    "es": [
        ("El Centro reúne a la policía municipal en torno a la mediación de barrio", date(2026, 2, 10),
         ["cities", "policing"]),
        ("Balance de los talleres de escritura para jóvenes de la red", date(2025, 11, 4), ["youth"]),
        ("El Centro presenta un estudio sobre la seguridad de las personas mayores", date(2026, 2, 2), ["research"]),
        ("Una tercera sesión de formación sobre el abandono escolar", date(2026, 1, 27), ["youth"]),
        ("El Centro participa en una consulta internacional sobre la trata", date(2026, 1, 20), ["trafficking"]),
        ("Firma de un convenio con una universidad de México", date(2026, 1, 13), []),
        ("Publicación del informe del foro sobre la violencia", date(2021, 12, 8), ["research", "violence"]),
        ("Lanzamiento de un proyecto sobre el cannabis en los centros escolares", date(2025, 12, 12), ["drugs"]),
        ("Reunión regional sobre la seguridad en los barrios", date(2026, 2, 5), []),
        # "el próximo 13 de noviembre": a date to come, so the next 13 November.
        ("Convocatoria de ponencias para el coloquio sobre seguridad urbana", date(2026, 11, 13), ["cities"]),
    ],
}  # fmt: skip


def stored(engine: Engine) -> list[NewsItem]:
    with reading(engine) as session:
        return list(session.scalars(select(NewsItem).order_by(NewsItem.id)))


def local(moment: datetime, settings: Settings) -> date:
    return moment.astimezone(ZoneInfo(settings.schedule.timezone)).date()


@pytest.mark.parametrize("lang", ["fr", "en", "es"])
def test_a_listing_page_ingests_as_exactly_its_items_dated_from_their_text_with_their_topics(
    any_engine: Engine, any_settings: Settings, lang: str
) -> None:
    page = FIXTURES / f"listing_{lang}.txt"
    assert not page.read_bytes().endswith(b"\n")

    report = ingest_sources(any_engine, any_settings, [str(page)], as_of=AS_OF)

    assert report.failed == [] and report.rejected == 0
    items = stored(any_engine)
    assert [(item.title, local(item.published_at, any_settings), item.topic_list) for item in items] == EXPECTED[lang]
    assert {item.date_origin for item in items} == {"text"}
    assert {(item.language, item.language_origin) for item in items} == {(lang, "detected")}
    assert all(len(item.topic_list) <= any_settings.ingest.max_topics for item in items)


@pytest.mark.parametrize(
    ("lang", "intro", "labels", "closing"),
    [
        (
            "fr",
            "En savoir plus à propos des autres séances du programme :",
            ["La place des familles dans la prévention", "Le travail de rue auprès des adolescents",
             "La collaboration entre l’école et les organismes"],
            "Ces séances sont offertes grâce au soutien financier du ministère.",
        ),
        (
            "en",
            "Find out more about the other sessions of the programme:",
            ["The place of families in prevention", "Street work with teenagers",
             "Cooperation between the school and community groups"],
            "These sessions are offered thanks to the financial support of the ministry.",
        ),
        (
            "es",
            "Más información sobre las otras sesiones del programa:",
            ["El lugar de las familias en la prevención", "El trabajo de calle con adolescentes",
             "La colaboración entre la escuela y las organizaciones"],
            "Estas sesiones se ofrecen gracias al apoyo financiero del ministerio.",
        ),
    ],
)  # fmt: skip
def test_labels_of_dropped_links_lists_and_one_sentence_paragraphs_stay_in_their_item(
    lang: str, intro: str, labels: list[str], closing: str
) -> None:
    drafts = read_text_page((FIXTURES / f"listing_{lang}.txt").read_text(encoding="utf-8"), "x")

    session = drafts[3]
    texts = [block.get("text") for block in session.body]
    # The intro line, each label as a paragraph of its own, then the closing sentence.
    position = texts.index(intro)
    assert texts[position + 1 : position + 5] == [*labels, closing]
    assert session.body[position - 1]["type"] == "list" and len(session.body[position - 1]["items"]) == 3
    # The list under "... :" and the one-sentence paragraphs stay in their items.
    workshops = drafts[1]
    assert [block["type"] for block in workshops.body] == ["paragraph", "paragraph", "list", "paragraph", "paragraph"]
    assert workshops.body[-1]["text"].startswith(("Au total, 48", "In all, 48", "En total, 48"))
    assert len(drafts[0].body) == 2 and drafts[0].body[1]["text"].endswith(".")
    # A bare "read more" whose URL was dropped is not text of the item.
    consultation = drafts[4]
    assert len(consultation.body) == 1 and consultation.link is None


def test_a_page_mixing_languages_gives_each_item_its_own_language(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    pages = {lang: (FIXTURES / f"listing_{lang}.txt").read_text(encoding="utf-8").split("\n\n") for lang in EXPECTED}
    # The first item of each page (title, paragraph, closing sentence), one after the other.
    mixed = "\n\n".join([*pages["es"][:3], *pages["fr"][:3], *pages["en"][:3]])
    page = tmp_path / "mixed.txt"
    page.write_text(mixed, encoding="utf-8")

    ingest_sources(engine, settings, [str(page)], as_of=AS_OF)

    assert [(item.title, item.language) for item in stored(engine)] == [
        (EXPECTED["es"][0][0], "es"),
        (EXPECTED["fr"][0][0], "fr"),
        (EXPECTED["en"][0][0], "en"),
    ]


def test_without_as_of_the_year_comes_from_the_file_time(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    page = tmp_path / "fr.txt"
    shutil.copy(FIXTURES / "listing_fr.txt", page)
    # The file was saved on 20 January 2025: "le 10 février" is then February 2024.
    saved = datetime(2025, 1, 20, 15, 0, tzinfo=UTC).timestamp()
    os.utime(page, (saved, saved))

    ingest_sources(engine, settings, [str(page)])

    first = stored(engine)[0]
    assert (local(first.published_at, settings), first.date_origin) == (date(2024, 2, 10), "text")


def test_the_date_option_still_forces_one_date(engine: Engine, settings: Settings) -> None:
    chosen = datetime(2026, 2, 20, 5, 0, tzinfo=UTC)

    ingest_sources(engine, settings, [str(FIXTURES / "listing_en.txt")], date=chosen, as_of=AS_OF)

    assert {(item.published_at, item.date_origin) for item in stored(engine)} == {(chosen, "option")}


def test_a_page_of_titles_only_is_rejected_with_one_line_and_nothing_is_written(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    page = tmp_path / "titles.txt"
    page.write_text("Premier titre de nouvelle\n\nDeuxième titre de nouvelle\n\nTroisième titre\n", encoding="utf-8")

    report = ingest_sources(engine, settings, [str(page)])

    [outcome] = report.failed
    assert outcome.error == "the page has only title-like lines (3) and no paragraph under any of them"
    with reading(engine) as session:
        assert session.scalar(select(func.count()).select_from(NewsItem)) == 0


def test_a_page_without_title_like_lines_is_one_item_titled_from_its_first_sentence(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    page = tmp_path / "untitled.txt"
    page.write_text(
        "Le 3 février, le Centre a accueilli une délégation de la police nationale du Sénégal. "
        "La visite portait sur la police de proximité.\n\nLa délégation a rencontré trois équipes de quartier.\n",
        encoding="utf-8",
    )

    ingest_sources(engine, settings, [str(page)], as_of=AS_OF)

    [item] = stored(engine)
    assert item.title == "Le 3 février, le Centre a accueilli une délégation de la police nationale du Sénégal"
    assert (local(item.published_at, settings), item.date_origin, item.topic_list) == (
        date(2026, 2, 3),
        "text",
        ["policing"],
    )
    assert len(item.body) == 2


def test_stored_hashes_match_what_a_later_edit_computes(engine: Engine, settings: Settings) -> None:
    """An item is not flagged changed by a correction that changes nothing (its hash was stored right)."""
    ingest_sources(engine, settings, [str(FIXTURES / "listing_fr.txt")], as_of=AS_OF)

    with reading(engine) as session:
        for item in session.scalars(select(NewsItem)):
            assert item.content_hash == content_hash(item)
            assert item.published_at.utcoffset() == timedelta(0)


def test_a_few_items_ending_with_their_link_do_not_hide_the_unmarked_titles() -> None:
    text = (FIXTURES / "listing_fr.txt").read_text(encoding="utf-8")
    # Two of the nine items keep their read-more link; the other titles have no mark at all.
    text = text.replace(
        "Un premier séminaire conjoint aura lieu à Mexico.",
        "Un premier séminaire conjoint aura lieu à Mexico.\n\nEn savoir plus\nhttps://www.example.org/fr/entente",
    ).replace(
        "engagements pris par les élus.",
        "engagements pris par les élus.\n\nEn savoir plus\nhttps://www.example.org/fr/forum",
    )

    drafts = read_text_page(text, "x")

    assert [draft.title for draft in drafts] == [title for title, _day, _topics in EXPECTED["fr"]]
    assert drafts[5].link == "https://www.example.org/fr/entente"


def test_a_sub_title_repeating_the_story_title_does_not_start_an_item() -> None:
    text = (
        "Semaine de la prévention 2026 – Entretien avec Julie Tremblay sur le réseau des quartiers\n\n"
        "Pendant la semaine de la prévention, le Centre présente chaque jour un de ses projets. Aujourd’hui, "
        "une analyste raconte son travail auprès des équipes locales et les résultats obtenus depuis trois ans.\n\n"
        "Entretien avec Julie Tremblay, coordonnatrice du réseau des quartiers et analyste au Centre\n\n"
        "Depuis son arrivée, Julie Tremblay a accompagné une vingtaine d’équipes locales dans leurs diagnostics "
        "de sécurité. Elle décrit ici les méthodes du réseau et les liens tissés avec les organismes.\n\n"
        "Le réseau tiendra son colloque annuel le 13 novembre prochain."
    )

    [draft] = read_text_page(text, "x")

    assert draft.title.startswith("Semaine de la prévention 2026")
    assert draft.body[1] == {
        "type": "heading",
        "text": "Entretien avec Julie Tremblay, coordonnatrice du réseau des quartiers et analyste au Centre",
    }
