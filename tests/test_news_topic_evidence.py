"""Topics by weighted keyword evidence: the title counts more, repeats count less, a minimum score,
at most ``ingest.max_topics`` topics, and none rather than all when nothing is clear."""

from __future__ import annotations

import dataclasses

from bulletin.config import Settings, settings_from_dict
from bulletin.news.topics import strongest_topics, topic_evidence


def topics(settings: Settings, title: str, text: str, language: str = "fr") -> list[str]:
    return strongest_topics(settings, topic_evidence(settings, title, text, language))


def test_a_keyword_in_the_title_counts_more_than_one_in_the_text(settings: Settings) -> None:
    assert topics(settings, "Un atelier pour les jeunes", "Le Centre a animé un atelier.") == ["youth"]
    # The same word once in the text is too weak a sign.
    assert topics(settings, "Un atelier du Centre", "Le Centre a animé un atelier pour les jeunes.") == []


def test_repeats_count_less_than_different_keywords(settings: Settings) -> None:
    repeated = topic_evidence(settings, "Un atelier", "la ville, la ville, la ville", "fr")
    varied = topic_evidence(settings, "Un atelier", "la ville, un quartier, un milieu urbain", "fr")

    assert repeated[0].score == 1.83
    assert varied[0].score == 3.0
    assert topics(settings, "Un atelier", "la ville, la ville, la ville") == []
    assert topics(settings, "Un atelier", "la ville, un quartier, un milieu urbain") == ["cities"]


def test_a_passing_mention_does_not_tag_an_item(settings: Settings) -> None:
    # "en ligne" is a cybercrime keyword; one online workshop is not a cybercrime story.
    text = "Le 14 février, le Centre a animé un atelier en ligne sur la prévention dans les transports."
    assert topics(settings, "Un atelier sur la sécurité dans les transports", text) == []


def test_only_the_strongest_topics_are_kept(settings: Settings) -> None:
    title = "Jeunes, police et drogues en ville"
    text = "Les jeunes, la jeunesse, la police, le cannabis, la violence, les violences."

    evidence = topic_evidence(settings, title, text, "fr")
    assert [(e.key, e.score) for e in evidence] == [
        ("youth", 5.0),
        ("drugs", 4.0),
        ("policing", 4.0),
        ("cities", 3.0),
        ("violence", 2.0),
    ]
    # Five topics pass the minimum score; the three strongest are kept (ingest.max_topics).
    assert topics(settings, title, text) == ["drugs", "policing", "youth"]
    one = dataclasses.replace(settings, ingest=dataclasses.replace(settings.ingest, max_topics=1))
    assert topics(one, title, text) == ["youth"]


def test_the_minimum_score_comes_from_the_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lenient = settings_from_dict({"ingest": {"topic_min_score": 1.0}}, tmp_path)
    assert topics(lenient, "Un atelier du Centre", "Le Centre a animé un atelier pour les jeunes.") == ["youth"]


def test_the_evidence_says_which_keywords_matched(settings: Settings) -> None:
    [youth] = topic_evidence(settings, "Les jeunes du réseau", "Les jeunes et la jeunesse, les jeunes.", "fr")

    assert youth.describe() == "youth 5.5: jeunes (title, 2 in text), jeunesse (1 in text)"
