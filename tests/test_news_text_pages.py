"""Plain-text news pages: titles, lists, link labels and listing pages split into their items."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bulletin.news.errors import SourceError
from bulletin.news.text_pages import read_text_page, split_page

FIXTURES = Path(__file__).parent / "fixtures" / "news"

LISTING_FR_TITLES = [
    "Forum international sur la prévention de la violence chez les jeunes",
    "Nouveau rapport : la sécurité des femmes dans les transports collectifs",
    "Formation en ligne : prévenir la cybercriminalité visant les aînés",
    "Partenariat renouvelé avec l'Union des municipalités",
    "Comment mesurer l'effet d'un programme de prévention ?",
    "Webinaire sur la traite des personnes en contexte migratoire",
    "Nomination d'une nouvelle directrice générale",
    "Appel à projets : prévention des violences en milieu scolaire",
    "Mission d'échange au Sénégal sur la police de proximité",
    "Bilan de l'année 2024",
    "Colloque : drogues, santé publique et sécurité",
    "Recrutement : analyste en prévention de la criminalité",
]


def page(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_french_listing_splits_into_exactly_its_items_with_exact_titles() -> None:
    drafts = read_text_page(page("listing_fr.txt"), "/news/listing_fr.txt", "America/Toronto")

    assert [draft.title for draft in drafts] == LISTING_FR_TITLES
    assert all(draft.problem is None for draft in drafts)
    # Midnight in Montréal on the date written under the title.
    assert drafts[0].published_at == datetime(2025, 3, 3, 5, 0, tzinfo=UTC)
    assert drafts[-1].published_at == datetime(2024, 12, 5, 5, 0, tzinfo=UTC)
    assert len({draft.source_id for draft in drafts}) == 12


def test_an_item_is_not_cut_at_a_bulleted_list_or_a_short_sentence() -> None:
    forum = read_text_page(page("listing_fr.txt"), "x")[0]

    assert forum.body == [
        {
            "type": "paragraph",
            "text": "Le Centre accueillera du 12 au 14 mai prochain à Montréal son forum international consacré à la "
            "prévention de la violence chez les jeunes. Chercheurs, élus municipaux, policiers et intervenants "
            "communautaires de quinze pays y échangeront sur les pratiques qui ont fait leurs preuves.",
        },
        {"type": "paragraph", "text": "Au programme :"},
        {
            "type": "list",
            "items": [
                "des ateliers sur la médiation scolaire ;",
                "une table ronde sur les gangs de rue et le recrutement en ligne ;",
                "la présentation de trois programmes évalués en Amérique latine.",
            ],
        },
        {"type": "paragraph", "text": "Inscription gratuite."},
        {
            "type": "paragraph",
            "text": "Les places sont limitées à 250 participants. Les personnes intéressées peuvent écrire à "
            "forum@example.org avant le 15 avril.",
        },
        {"type": "link", "url": "https://www.example.org/fr/nouvelles/forum-jeunesse-2025", "label": "En savoir plus"},
    ]
    assert forum.link == "https://www.example.org/fr/nouvelles/forum-jeunesse-2025"


def test_a_short_line_inside_an_item_is_a_sub_heading_not_a_new_item() -> None:
    drafts = read_text_page(page("listing_fr.txt"), "x")
    report = drafts[1]
    colloque = drafts[10]

    assert {"type": "heading", "text": "Principaux constats"} in report.body
    assert {"type": "heading", "text": "Places limitées"} in colloque.body
    # Event details written as "Lieu : ..." stay in the body.
    assert {"type": "paragraph", "text": "Lieu : en ligne"} in drafts[5].body


def test_link_label_lines_attach_to_the_url_below_and_are_not_content() -> None:
    for draft in read_text_page(page("listing_fr.txt"), "x"):
        texts = [block.get("text") for block in draft.body]
        assert "En savoir plus" not in texts
        assert draft.body[-1]["type"] == "link"
        assert draft.body[-1]["label"] == "En savoir plus"


def test_english_listing_without_dates_splits_after_each_read_more_link() -> None:
    drafts = read_text_page(page("listing_en.txt"), "x")

    assert [draft.title for draft in drafts] == [
        "International forum on preventing youth violence",
        "Online training: preventing cybercrime against older adults",
        "How do you measure the effect of a prevention programme?",
        "Annual review of 2024",
    ]
    # The page header is not an item, and "Who should attend" stays a heading of the second item.
    assert {"type": "heading", "text": "Who should attend"} in drafts[1].body
    assert drafts[1].body[-1] == {
        "type": "link",
        "url": "https://www.example.org/en/training/cybercrime-older-adults",
        "label": "Read more",
    }
    assert all(draft.published_at is None for draft in drafts)


def test_spanish_listing_with_separators_inline_label_and_email() -> None:
    drafts = read_text_page(page("listing_es.txt"), "x", "UTC")

    assert [draft.title for draft in drafts] == [
        "Foro internacional sobre la prevención de la violencia juvenil",
        "Nueva guía para evaluar los programas de prevención",
        "Misión de intercambio en Colombia sobre policía comunitaria",
    ]
    assert drafts[0].published_at == datetime(2025, 3, 12, tzinfo=UTC)
    assert drafts[1].body[-1] == {
        "type": "link",
        "url": "https://www.example.org/es/publicaciones/guia-evaluacion",
        "label": "Más información",
    }
    # The email address stays text in the paragraph; it is not a link.
    assert drafts[2].body[-1] == {"type": "paragraph", "text": "Para más información, escriba a info@example.org."}
    assert drafts[2].link is None


def test_single_article_keeps_its_sub_heading_list_and_bare_url() -> None:
    drafts = read_text_page(page("article_en.txt"), "/news/article_en.txt")

    assert len(drafts) == 1
    article = drafts[0]
    assert article.source_id == "/news/article_en.txt"
    assert article.title == "Safer Cities Network welcomes five new members"
    kinds = [block["type"] for block in article.body]
    assert kinds == ["paragraph", "heading", "paragraph", "list", "paragraph", "paragraph", "link"]
    assert article.body[3]["items"][0] == "night-time economy and safety in entertainment districts;"
    assert "network@example.org" in article.body[5]["text"]
    # The sentence's closing period is not part of the URL.
    assert article.body[-1] == {"type": "link", "url": "https://www.safercities.example.net", "label": ""}


def test_title_directly_above_the_first_paragraph() -> None:
    text = "Une formation pour les policiers municipaux\nLa formation aura lieu en juin.\nElle dure deux jours.\n"
    [(title, blocks, _meta, _date)] = split_page(text)

    assert title == "Une formation pour les policiers municipaux"
    assert blocks == [{"type": "paragraph", "text": "La formation aura lieu en juin. Elle dure deux jours."}]


def test_a_page_without_a_title_like_line_is_one_item_titled_from_its_first_sentence() -> None:
    text = "Ceci est un long paragraphe qui commence la page sans aucun titre. Il continue encore un peu.\n"
    [draft] = read_text_page(text, "x")

    assert draft.title == "Ceci est un long paragraphe qui commence la page sans aucun titre"
    assert draft.problem is None
    assert draft.body == [{"type": "paragraph", "text": text.strip()}]


def test_metadata_lines_under_a_title() -> None:
    text = (
        "Regional meeting on drug policy\n\n"
        "Date: 2025-04-02\n"
        "Language: en\n"
        "Topics: drugs, policing\n"
        "Translation key: drug-policy-meeting\n\n"
        "Experts from the region will meet to compare their drug policies.\n"
    )
    [draft] = read_text_page(text, "x", "UTC")

    assert draft.title == "Regional meeting on drug policy"
    assert draft.published_at == datetime(2025, 4, 2, tzinfo=UTC)
    assert draft.language == "en"
    assert draft.topics == ["drugs", "policing"]
    assert draft.translation_key == "drug-policy-meeting"
    assert draft.body == [
        {"type": "paragraph", "text": "Experts from the region will meet to compare their drug policies."}
    ]


def test_dates_in_three_languages() -> None:
    for line, expected in [
        ("Publié le 1er mars 2025", datetime(2025, 3, 1, tzinfo=UTC)),
        ("Published on March 4, 2025", datetime(2025, 3, 4, tzinfo=UTC)),
        ("Publicado el 5 de abril de 2025", datetime(2025, 4, 5, tzinfo=UTC)),
        ("mardi 8 avril 2025", datetime(2025, 4, 8, tzinfo=UTC)),
        ("2025-04-09T10:30:00+02:00", datetime(2025, 4, 9, 8, 30, tzinfo=UTC)),
    ]:
        [(_title, _blocks, _meta, published)] = split_page(f"A title for the date\n\n{line}\n\nSome body text here.\n")
        assert published == expected, line


def test_two_blank_lines_separate_items_without_dates_or_links() -> None:
    text = (
        "Premier titre de nouvelle\n\nUn paragraphe du premier article.\n\n\n"
        "Deuxième titre de nouvelle\n\nUn paragraphe du deuxième article.\n"
    )

    assert [title for title, *_ in split_page(text)] == ["Premier titre de nouvelle", "Deuxième titre de nouvelle"]


def test_without_any_item_boundary_a_title_like_line_stays_a_sub_heading() -> None:
    text = (
        "Rapport sur la sécurité urbaine\n\nLe rapport est publié aujourd'hui.\n\n"
        "Une méthode participative\n\nLes habitants ont été consultés.\n"
    )

    [(title, blocks, _meta, _date)] = split_page(text)

    assert title == "Rapport sur la sécurité urbaine"
    assert blocks[1] == {"type": "heading", "text": "Une méthode participative"}


def test_a_page_header_followed_by_items_is_not_an_item() -> None:
    drafts = read_text_page((FIXTURES / "listing_en.txt").read_text(encoding="utf-8"), "x")

    assert "Centre news" not in [draft.title for draft in drafts]
    assert all("Centre news" not in repr(draft.body) for draft in drafts)


def test_an_impossible_date_line_is_reported_not_replaced_by_another_date() -> None:
    page = (
        "Rencontre du réseau de prévention\n\nDate : 2025-13-45\n\n"
        "Le 3 mars, le Centre a réuni ses partenaires du réseau. Les échanges ont porté sur la prévention.\n"
    )
    with pytest.raises(SourceError, match="'2025-13-45' is not a real date"):
        read_text_page(page, "page.txt")
