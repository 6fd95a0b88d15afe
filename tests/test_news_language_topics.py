"""Language detection and keyword topics."""

from __future__ import annotations

from bulletin.config import Settings
from bulletin.news.draft import single_line, summary_from_body
from bulletin.news.language import detect_language, normalise_language
from bulletin.news.topics import keyword_topics, map_source_topics

LANGS = ["fr", "en", "es"]


def test_detects_french_english_and_spanish_the_same_way_every_time() -> None:
    samples = {
        "fr": "Le Centre publie un rapport sur la sécurité des femmes dans les transports.",
        "en": "The Centre has published a report on the safety of women in public transport.",
        "es": "El Centro publica un informe sobre la seguridad de las mujeres en el transporte.",
    }
    for expected, text in samples.items():
        guesses = {detect_language(text, LANGS).language for _ in range(5)}
        assert guesses == {expected}


def test_short_or_empty_text_is_not_guessed() -> None:
    assert detect_language("", LANGS).language is None
    assert detect_language("COVID-19", LANGS).language is None


def test_only_configured_languages_are_answered() -> None:
    assert detect_language("El Centro publica un informe sobre la seguridad.", ["fr", "en"]).language != "es"
    assert normalise_language("fr-CA", LANGS) == "fr"
    assert normalise_language("de", LANGS) is None


def test_keywords_match_whole_words_without_accents_or_case(settings: Settings) -> None:
    assert keyword_topics(settings, "Une ÉCOLE de quartier", "fr") == ["cities", "youth"]
    assert keyword_topics(settings, "Les Jeunes et la Cybercriminalite", "fr") == ["cybercrime", "youth"]
    # Whole words only: "citywide" is not "city", "drugstore" is not "drug".
    assert keyword_topics(settings, "A citywide drugstore survey", "en") == []
    # Phrases match across line breaks and several spaces.
    assert keyword_topics(settings, "a rise in sexual\n   exploitation", "en") == ["violence"]
    # Keywords are per language: an English keyword does not tag a French item.
    assert keyword_topics(settings, "cybercrime", "fr") == []


def test_source_categories_map_to_topic_keys(settings: Settings) -> None:
    assert map_source_topics(settings, ["Jeunesse", "Non classé"]) == ["youth"]
    assert map_source_topics(settings, ["urban safety", "CYBERCRIMINALITÉ"]) == ["cities", "cybercrime"]
    assert map_source_topics(settings, ["sports"]) == []


def test_single_line_removes_cr_lf_and_control_characters() -> None:
    assert (
        single_line("Title\r\nBcc: victim@example.org\x00\x1b[31m\u2028end") == "Title Bcc: victim@example.org [31m end"
    )


def test_summary_is_the_first_paragraph_cut_on_a_sentence() -> None:
    long_sentence = "This sentence is long enough to matter here. " * 10
    body = [{"type": "heading", "text": "Intro"}, {"type": "paragraph", "text": long_sentence.strip()}]

    summary = summary_from_body(body, limit=120)

    assert summary == "This sentence is long enough to matter here. This sentence is long enough to matter here."
