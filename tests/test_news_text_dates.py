"""Dates read in a news item's running text, in French, English and Spanish."""

from __future__ import annotations

from datetime import date

import pytest

from bulletin.news.text_dates import find_text_date

AS_OF = date(2026, 3, 1)


@pytest.mark.parametrize(
    ("text", "expected", "phrase"),
    [
        ("Le 14 février, le Centre a animé un atelier.", date(2026, 2, 14), "14 février"),
        ("lors d’un colloque tenu le 2 février dernier à Laval.", date(2026, 2, 2), "2 février"),
        ("Les 20 et 21 janvier, le Centre a contribué à une consultation.", date(2026, 1, 20), "20 et 21 janvier"),
        ("un forum tenu le 8 décembre 2021 à Gatineau.", date(2021, 12, 8), "8 décembre 2021"),
        ("Du 12 au 14 février, un séminaire.", date(2026, 2, 12), "12 au 14 février"),
        ("Le 1er février, la formation a commencé.", date(2026, 2, 1), "1er février"),
        ("El pasado 10 de febrero, el Centro participó en un foro.", date(2026, 2, 10), "10 de febrero"),
        ("El Centro participó el jueves 5 de febrero en un foro.", date(2026, 2, 5), "jueves 5 de febrero"),
        ("celebrado el 8 de diciembre de 2021 en Gatineau.", date(2021, 12, 8), "8 de diciembre de 2021"),
        ("On February 10, the Centre brought together city police forces.", date(2026, 2, 10), "February 10"),
        ("held on 27 January in Laval.", date(2026, 1, 27), "27 January"),
        ("On Tuesday, March 3, 2026 the Centre opened a call.", date(2026, 3, 3), "Tuesday, March 3, 2026"),
    ],
)
def test_the_first_date_of_the_text_in_three_languages(text: str, expected: date, phrase: str) -> None:
    found = find_text_date(text, AS_OF)

    assert found is not None
    assert (found.day, found.phrase) == (expected, phrase)


def test_a_missing_year_puts_the_date_on_or_before_the_page_date() -> None:
    # 3 March is after 1 March 2026: it was 3 March 2025; 1 March itself is the page's day.
    assert find_text_date("On March 3, the call opened.", AS_OF).day == date(2025, 3, 3)  # type: ignore[union-attr]
    assert find_text_date("Le 1er mars, un atelier.", AS_OF).day == date(2026, 3, 1)  # type: ignore[union-attr]
    assert find_text_date("Le 12 décembre, un atelier.", AS_OF).day == date(2025, 12, 12)  # type: ignore[union-attr]


def test_a_date_said_to_come_is_on_or_after_the_page_date() -> None:
    assert find_text_date("le 13 novembre prochain, un colloque", AS_OF).day == date(2026, 11, 13)  # type: ignore[union-attr]
    assert find_text_date("el próximo 5 de febrero", AS_OF).day == date(2027, 2, 5)  # type: ignore[union-attr]


def test_the_weekday_must_agree_with_the_chosen_year() -> None:
    # 12 January 2026 is a Monday; the latest Tuesday 12 January before the page is in 2021.
    found = find_text_date("Mardi le 12 janvier, le Centre a signé une entente.", AS_OF)
    assert found is not None and (found.day, found.phrase) == (date(2021, 1, 12), "Mardi le 12 janvier")
    assert find_text_date("Mardi le 13 janvier, une entente.", AS_OF).day == date(2026, 1, 13)  # type: ignore[union-attr]
    # With a year, a weekday that does not agree makes the date unusable: the next one is taken.
    found = find_text_date("Le lundi 3 mars 2026 (sic), puis le 5 mars 2026.", AS_OF)
    assert found is not None and found.day == date(2026, 3, 5)


def test_a_leap_day_without_year_is_the_last_29_february() -> None:
    assert find_text_date("Le 29 février, une rencontre.", AS_OF).day == date(2024, 2, 29)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text",
    [
        "des jeunes de 14 à 21 ans qui fréquentent les maisons de quartier",
        "you may 3 times ask for it",
        "cet hiver, une série de quatre rencontres",
        "le 31 février, une date qui n'existe pas",
        "Au total, 64 personnes ont pris part à au moins une rencontre.",
    ],
)
def test_words_that_only_look_like_dates_give_none(text: str) -> None:
    assert find_text_date(text, AS_OF) is None
