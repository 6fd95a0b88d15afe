"""The centre's plain-text news pages: one story, or a listing page of many, split into items.

The format, as the website exports it:

- a title is a short line of its own (no closing period, usually under 120 characters) followed
  by paragraphs separated by blank lines; a line may give the date right under the title
  (``Publié le 3 mars 2025``, ``March 3, 2025``, ``3 de marzo de 2025``, ``Date : 2025-03-03``);
- list items are indented lines starting with ``•`` (or ``-``, ``*``, ``–``);
- ``En savoir plus`` / ``Read more`` / ``Más información`` is the label of the link on the next line;
- a bare URL on its own line is a link; an email address stays text.

A listing page holds several items one after another, often with nothing between them but a
single blank line (no date line, separator or link). Every short line of its own without closing
punctuation is a candidate title, and each gets one decision: it starts a new item when the sum
of the evidence below is above zero, else it stays in the current item (a sub-heading when alone,
a paragraph when among other short lines). The evidence, strongest first:

- marks of the format: a date or metadata line right under it (+6), a separator or two blank
  lines above it (+4), the previous item closed by its read-more link or a bare read-more label
  whose URL was dropped (+3), being the first line of the page (+3);
- the shape of what follows: a long paragraph, two sentences or 160 characters, as an item's
  first paragraph is (+2), a medium one (+0.5), a one-sentence one (-1.5), a list or a link (-1),
  another short line or nothing (-3: a run of short lines is the labels of dropped links);
- what precedes: a line ending with ":" that introduces it (-4), another short line (-2);
- the line itself: 3 words or fewer (-2.5) or 4-5 (-1), as sub-headings are short; more than 18
  (-1); a lower-case start (-3);
- the paragraph under it in another language than the current item's first paragraph (+3);
- for a line the format does not mark: an item so far without a long paragraph (-2), a line
  repeating the item's title (-3, a sub-title) or other words of the item (-1.5), counting only
  words rare on the page (not "Centre" or "prévention"), and a page that marks its items as a
  rule (-3: there, an unmarked line is a sub-heading; a few items ending with their link do not
  make that rule).

A page without any title-like line is one item titled from its first sentence; a page of title
lines only is rejected.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from bulletin.news.dates import parse_date_line
from bulletin.news.draft import Block, Draft, clean_blocks, clip, single_line
from bulletin.news.errors import SourceError
from bulletin.news.language import STOP_WORDS, detect_language
from bulletin.news.text_units import (
    TITLE_MAX,
    Unit,
    is_label,
    meta_of,
    no_gap,
    normalise,
    read_units,
    title_line,
    title_shaped,
    url_of,
)
from bulletin.news.topics import fold


@dataclass
class _Item:
    title: str
    blocks: list[Block] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    published_at: datetime | None = None
    closed: bool = False
    # The language of its first paragraph, to notice an item in another language starting.
    language: str = ""


PageItem = tuple[str | None, list[Block], dict[str, str], datetime | None]

# A candidate line starts a new item when its score is above zero. The weights are in units of
# "how much this tells": an explicit mark of the format (a date line under the line, a separator or
# two blank lines above it, the previous item closed by its read-more) is worth more than the shape
# of the text around it, and the shape is worth more than the line's own length.
W_META_BELOW = 6.0
W_GAP_ABOVE = 4.0
W_CLOSED_ABOVE = 3.0
W_FIRST = 3.0
W_LONG_NEXT = 2.0
W_MEDIUM_NEXT = 0.5
W_SHORT_NEXT = -1.5
W_LIST_OR_LINK_NEXT = -1.0
W_TITLE_NEXT = -3.0
W_COLON_ABOVE = -4.0
W_TITLE_ABOVE = -2.0
W_THIN_ITEM = -2.0
W_FEW_WORDS = -2.5
W_SHORT_WORDS = -1.0
W_MANY_WORDS = -1.0
W_LOWERCASE = -3.0
W_ECHOES_TITLE = -3.0
W_ECHOES_ITEM = -1.5
W_UNMARKED = -3.0
W_NEW_LANGUAGE = 3.0
# A paragraph of two sentences or this many characters is an item's first paragraph.
LONG_PARAGRAPH = 160
MEDIUM_PARAGRAPH = 80
# A word found in this many paragraphs (titles aside) of the page ("Centre", "prévention") says
# nothing about which item a line belongs to.
COMMON_WORD_UNITS = 4
_SENTENCE_END = re.compile(r"[.!?…][\"'»”’)]*(?:\s|$)")
_FIRST_SENTENCE = re.compile(r"(.+?[.!?…])(?:\s|$)")
_CONTENT_WORD = re.compile(r"[^\W\d_]{4,}")
_FUNCTION_WORDS = frozenset(fold(word) for words in STOP_WORDS.values() for word in words)


@dataclass
class _Evidence:
    """What is known about the text around a candidate line, for its score."""

    meta_below: bool
    gap_above: bool
    closed_above: bool
    first: bool
    next_kind: str  # "long", "medium", "short", "list", "link", "title", "none"
    colon_above: bool
    title_above: bool
    thin_item: bool
    words: int
    lowercase: bool
    echoes_title: bool
    echoes_item: bool
    unmarked_page: bool
    new_language: bool = False

    @property
    def marked(self) -> bool:
        return self.meta_below or self.gap_above or self.closed_above

    def score(self) -> float:
        value = 0.0
        value += W_META_BELOW if self.meta_below else 0.0
        value += W_GAP_ABOVE if self.gap_above else 0.0
        value += W_CLOSED_ABOVE if self.closed_above else 0.0
        value += W_FIRST if self.first else 0.0
        value += {
            "long": W_LONG_NEXT,
            "medium": W_MEDIUM_NEXT,
            "short": W_SHORT_NEXT,
            "list": W_LIST_OR_LINK_NEXT,
            "link": W_LIST_OR_LINK_NEXT,
            "title": W_TITLE_NEXT,
            "none": W_TITLE_NEXT,
        }[self.next_kind]
        value += W_COLON_ABOVE if self.colon_above else 0.0
        value += W_TITLE_ABOVE if self.title_above else 0.0
        if self.words <= 3:
            value += W_FEW_WORDS
        elif self.words <= 5:
            value += W_SHORT_WORDS
        elif self.words > 18:
            value += W_MANY_WORDS
        value += W_LOWERCASE if self.lowercase else 0.0
        value += W_NEW_LANGUAGE if self.new_language else 0.0
        if not self.marked:
            # Only a line the format does not mark is judged by its words and the item it would end.
            value += W_THIN_ITEM if self.thin_item else 0.0
            value += W_ECHOES_TITLE if self.echoes_title else 0.0
            value += W_ECHOES_ITEM if self.echoes_item and not self.echoes_title else 0.0
            value += W_UNMARKED if self.unmarked_page else 0.0
        return value


def split_page(text: str, timezone: str = "UTC") -> list[PageItem]:
    """Split a page into items: (title or None, blocks, metadata, date) each, in page order.

    A None title is text that no title introduces (it is rejected by the caller).
    """
    units = read_units(normalise(text))
    if units and units[0].kind == "para" and len(units[0].lines) > 1 and title_line(units[0].lines[0]):
        # A title written right above the first paragraph, without a blank line.
        first = units[0]
        units[0:1] = [
            Unit("para", lines=[first.lines[0]]),
            Unit("para", lines=first.lines[1:], blanks_before=1),
        ]
    shaped = [title_shaped(unit, timezone) for unit in units]
    marked_page = _marks_its_items(units, shaped, timezone)
    words_of = [_content_words(unit) for unit in units]
    spread: Counter[str] = Counter(
        word for words, is_title in zip(words_of, shaped, strict=True) if not is_title for word in words
    )
    item_words: set[str] = set()
    items: list[_Item] = []
    preamble: list[Block] = []
    index = 0
    while index < len(units):
        unit = units[index]
        if not shaped[index]:
            item_words |= words_of[index]
        if shaped[index]:
            after = index + 1
            while after < len(units) and meta_of(units[after], timezone) is not None and no_gap(units[after]):
                after += 1
            current = items[-1] if items else None
            evidence = _evidence(units, shaped, index, after, current, marked_page, timezone)
            # Words of the line the current item already used, leaving out those found all over the page.
            rare = {word for word in words_of[index] if spread[word] < COMMON_WORD_UNITS}
            evidence.echoes_item = bool(rare) and len(rare & item_words) * 3 >= len(rare)
            evidence.echoes_title = current is not None and _echoes(rare, current.title)
            if current is not None and current.language and evidence.next_kind in ("long", "medium"):
                evidence.new_language = _language_of(units[after].text) not in (None, current.language)
            if evidence.score() > 0:
                item_words = set(words_of[index])
                item = _Item(title=unit.text)
                for meta_unit in units[index + 1 : after]:
                    meta = meta_of(meta_unit, timezone)
                    if meta is None:
                        continue
                    name, value = meta
                    if name == "date":
                        item.published_at = parse_date_line(value, timezone)
                        if item.published_at is None:
                            # "Date: 2025-13-45" names no day: say so rather than use another date.
                            raise SourceError(f"item {unit.text!r}: the date {value!r} is not a real date")
                    else:
                        item.meta.setdefault(name, value)
                if current is None and preamble and any(b["type"] != "heading" for b in preamble):
                    items.append(_Item(title="", blocks=preamble))
                preamble = []
                items.append(item)
                index = after
                continue
            # A sub-heading when it stands alone; a line among other short lines (the labels of
            # links the export dropped) is a paragraph.
            in_run = evidence.title_above or evidence.next_kind == "title"
            block: Block = {"type": "paragraph" if in_run else "heading", "text": unit.text}
            item_words |= words_of[index]
            if current is not None:
                current.blocks.append(block)
                current.closed = False
            else:
                preamble.append({"type": "heading", "text": unit.text})
            index += 1
            continue
        if unit.kind == "label":
            # "En savoir plus" whose URL the export dropped: it says nothing to a reader, but it ends the item.
            if items:
                items[-1].closed = True
            index += 1
            continue
        block = _block_of(unit, timezone)
        if items:
            if not items[-1].language and unit.kind == "para" and len(unit.text) >= MEDIUM_PARAGRAPH:
                items[-1].language = _language_of(unit.text) or ""
            items[-1].blocks.append(block)
            items[-1].closed = block["type"] == "link" and bool(block["label"]) and is_label(block["label"])
        elif meta_of(unit, timezone):
            preamble.append({"type": "heading", "text": unit.text})
        else:
            preamble.append(block)
        index += 1
    if not items and preamble:
        if all(block["type"] == "heading" for block in preamble):
            raise SourceError(
                f"the page has only title-like lines ({len(preamble)}) and no paragraph under any of them"
            )
        # No title-like line at all: one item, titled from its first sentence.
        items.append(_Item(title=_first_sentence(preamble), blocks=preamble))
    return [(item.title or None, clean_blocks(item.blocks), item.meta, item.published_at) for item in items]


def _evidence(
    units: list[Unit],
    shaped: list[bool],
    index: int,
    after: int,
    current: _Item | None,
    marked_page: bool,
    timezone: str,
) -> _Evidence:
    """The evidence about the candidate title ``units[index]`` whose metadata ends at ``after``."""
    unit = units[index]
    line = unit.text
    previous = units[index - 1] if index > 0 else None
    return _Evidence(
        meta_below=after > index + 1,
        gap_above=not no_gap(unit),
        closed_above=current is not None and current.closed,
        first=current is None,
        next_kind=_next_kind(units, shaped, after),
        colon_above=previous is not None and previous.kind == "para" and previous.text.endswith(":"),
        title_above=index > 0 and shaped[index - 1] and current is not None and no_gap(unit),
        thin_item=current is not None and _text_size(current.blocks) < LONG_PARAGRAPH,
        words=len(line.split()),
        lowercase=line[:1].islower(),
        echoes_title=False,
        echoes_item=False,
        unmarked_page=marked_page,
    )


def _first_sentence(blocks: list[Block]) -> str:
    text = next((single_line(block["text"]) for block in blocks if block.get("text")), "")
    if not text:
        text = next((single_line(block["items"][0]) for block in blocks if block.get("items")), "")
    match = _FIRST_SENTENCE.match(text)
    sentence = (match.group(1) if match else text).rstrip(".… ")
    return clip(sentence, TITLE_MAX)


def _next_kind(units: list[Unit], shaped: list[bool], at: int) -> str:
    if at >= len(units):
        return "none"
    unit = units[at]
    if shaped[at]:
        return "title"
    if unit.kind in ("list", "link"):
        return unit.kind
    if unit.kind == "label":
        return "link"
    text = unit.text
    if len(text) >= LONG_PARAGRAPH or len(_SENTENCE_END.findall(text)) >= 2:
        return "long"
    return "medium" if len(text) >= MEDIUM_PARAGRAPH else "short"


def _content_words(unit: Unit) -> set[str]:
    text = " ".join([*unit.lines, *unit.items])
    return _words_of(text)


def _words_of(text: str) -> set[str]:
    """Words that carry meaning: four letters or more, not a function word of any language."""
    return {word for word in _CONTENT_WORD.findall(fold(text)) if word not in _FUNCTION_WORDS}


def _text_size(blocks: list[Block]) -> int:
    return sum(len(block.get("text", "")) + sum(len(item) for item in block.get("items", [])) for block in blocks)


@lru_cache(maxsize=256)
def _language_of(text: str) -> str | None:
    # The first words tell the language as well as the whole paragraph does, for a fraction of the time.
    return detect_language(text[:400], list(STOP_WORDS)).language


def _echoes(words: set[str], title: str) -> bool:
    """The line's words repeat much of the item's title: a sub-title of the same story."""
    title_words = _words_of(title)
    if not words or not title_words:
        return False
    return len(words & title_words) / min(len(words), len(title_words)) >= 0.4


def _marks_its_items(units: list[Unit], shaped: list[bool], timezone: str) -> bool:
    """The page marks where its items start (date lines, separators, read-more links), so a short
    line without such a mark is a sub-heading, not a new item.

    The marks must be the rule, not the exception: a page where a few items end with their link
    but more titles stand unmarked over a long paragraph does not count as marking its items.
    """
    marked = unmarked = 0
    closed = False
    for index, unit in enumerate(units):
        if shaped[index]:
            meta_below = index + 1 < len(units) and meta_of(units[index + 1], timezone) is not None
            if index > 0 and (meta_below or closed or not no_gap(unit)):
                marked += 1
            elif index > 0 and _looks_like_unmarked_title(units, shaped, index):
                unmarked += 1
            closed = False
        elif unit.kind == "link":
            closed = bool(unit.label) and is_label(unit.label)
        elif unit.kind != "label":
            closed = False
    return marked >= 2 and marked > unmarked


def _looks_like_unmarked_title(units: list[Unit], shaped: list[bool], index: int) -> bool:
    """A line of six words or more over a long paragraph, not introduced by a ":" line."""
    previous = units[index - 1]
    introduced = previous.kind == "para" and previous.text.endswith(":")
    long_words = len(units[index].text.split()) >= 6
    return long_words and not introduced and _next_kind(units, shaped, index + 1) == "long"


def _block_of(unit: Unit, timezone: str) -> Block:
    if unit.kind == "list":
        return {"type": "list", "items": unit.items}
    if unit.kind == "link":
        return {"type": "link", "url": unit.url, "label": unit.label}
    return {"type": "paragraph", "text": unit.text}


def read_text_page(text: str, source_id: str, timezone: str = "UTC") -> list[Draft]:
    """Drafts for every item of a plain-text page; a single-item page keeps ``source_id`` as is."""
    parts = split_page(text, timezone)
    drafts: list[Draft] = []
    used: dict[str, int] = {}
    for position, (title, blocks, meta, published_at) in enumerate(parts, start=1):
        link = canonical_link(blocks)
        key = link or slug(title or "") or f"item-{position}"
        used[key] = used.get(key, 0) + 1
        if used[key] > 1:
            key = f"{key}-{used[key]}"
        draft = Draft(
            source_id=source_id if len(parts) == 1 else f"{source_id}#{key}",
            title=title or "",
            body=blocks,
            link=link,
            published_at=published_at,
            date_origin="metadata",
            language=meta.get("language"),
            topics=[topic.strip() for topic in re.split(r"[,;]", meta.get("topics", "")) if topic.strip()],
            translation_key=meta.get("translation_key"),
            image=url_of(meta["image"]) if meta.get("image") else None,
            image_alt=meta.get("image_alt"),
        )
        if not title:
            first = next((b.get("text") or "" for b in blocks if b.get("text")), "")
            draft.problem = f"item {position} has no title (it starts with {_excerpt(first)!r})"
        drafts.append(draft)
    return drafts


def canonical_link(blocks: list[Block]) -> str | None:
    links = [block for block in blocks if block["type"] == "link"]
    for block in links:
        if block["label"] and is_label(block["label"]):
            return str(block["url"])
    return str(links[0]["url"]) if links else None


def slug(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", fold(text)))[:120]


def _excerpt(text: str, length: int = 50) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"
