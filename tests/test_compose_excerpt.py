"""Excerpts of news items: cut on a sentence or word boundary, whole blocks, never broken markup."""

from __future__ import annotations

import lxml.html  # type: ignore[import-untyped]
import pytest
from markupsafe import escape

from bulletin.compose.excerpt import block_words, cut_text, excerpt


def paragraph(text: str) -> dict[str, str]:
    return {"type": "paragraph", "text": text}


def test_an_item_shorter_than_the_excerpt_is_whole() -> None:
    blocks = [paragraph("Une phrase courte."), {"type": "list", "items": ["un", "deux"]}]
    result = excerpt(blocks, 70)
    assert result.blocks == blocks and not result.truncated


def test_cut_at_the_last_sentence_that_keeps_half_the_words() -> None:
    text = "One two three four five six. Seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen."
    assert cut_text(text, 10) == "One two three four five six."
    # No sentence end in the first half: cut at a word, with an ellipsis.
    assert (
        cut_text("One two three four five six seven eight nine ten eleven twelve.", 6) == "One two three four five six…"
    )
    assert cut_text("Un, deux, trois, quatre, cinq, six, sept", 3) == "Un, deux, trois…"
    assert cut_text("« Ça marche. » Puis la suite sans point final du tout ici", 8) == "« Ça marche. »"


def test_whole_blocks_then_one_cut_block() -> None:
    blocks = [
        {"type": "heading", "text": "Contexte"},
        paragraph("Première phrase du texte. " * 3),
        {"type": "list", "items": ["un élément de liste assez long pour compter", "un autre élément de liste encore"]},
        {"type": "heading", "text": "Suite"},
        paragraph("Tout ce qui suit ne doit pas paraître. " * 10),
    ]
    result = excerpt(blocks, 20)
    assert result.truncated
    assert result.blocks[:2] == blocks[:2]
    assert result.blocks[2]["type"] == "list"
    assert sum(block_words(block) for block in result.blocks) <= 20
    assert all(block.get("text") != "Suite" for block in result.blocks)


@pytest.mark.parametrize("words", [10, 12, 15, 30])
def test_markup_like_text_stays_text_whatever_the_cut(words: int) -> None:
    text = "Le <b>rapport</b> & ses <a href='x'>annexes</a> sont parus. " * 8
    result = excerpt([paragraph(text)], words)
    html = "".join(f"<p>{escape(block['text'])}</p>" for block in result.blocks)
    root = lxml.html.fragment_fromstring(html, create_parent="div")
    assert [element.tag for element in root.iter()] == ["div", "p"]
    assert "<b>rapport</b>" in root.text_content()


def test_a_block_too_long_to_start_with_is_still_cut() -> None:
    result = excerpt([{"type": "heading", "text": "Titre"}, paragraph("mot " * 200)], 10)
    assert result.truncated
    assert result.blocks[-1]["type"] == "paragraph"
    assert result.blocks[-1]["text"].endswith("…")
