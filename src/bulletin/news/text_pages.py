"""The centre's plain-text news pages: one story, or a listing page of many, split into items.

The format, as the website exports it:

- a title is a short line of its own (no closing period, usually under 120 characters) followed
  by paragraphs separated by blank lines; a line may give the date right under the title
  (``Publié le 3 mars 2025``, ``March 3, 2025``, ``3 de marzo de 2025``, ``Date : 2025-03-03``);
- list items are indented lines starting with ``•`` (or ``-``, ``*``, ``–``);
- ``En savoir plus`` / ``Read more`` / ``Más información`` is the label of the link on the next line;
- a bare URL on its own line is a link; an email address stays text.

A listing page holds several items one after another. A title-like line starts a new item when
the evidence says so (it is the first, a date follows it, a separator or two blank lines precede
it, or the previous item ended with its "read more" link); otherwise it is a sub-heading of the
current item, so an item is never cut at a bulleted list, a short sentence or a sub-heading.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from bulletin.news.dates import parse_date_line
from bulletin.news.draft import Block, Draft, clean_blocks, single_line
from bulletin.news.topics import fold

_BULLET = re.compile(r"^(\s*)[•◦▪‣●·\-*–—]\s+(\S.*)$")
_SEPARATOR = re.compile(r"^\s*(?:[-*_=~#•·–—]\s*){3,}$")
_URL = re.compile(r"^<?((?:https?://|www\.)[^\s<>]+?)>?[.,;:!?)»]*$", re.IGNORECASE)
_EMAIL_ONLY = re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$")
_KEY_VALUE = re.compile(r"^([^:]{2,40}?)\s*:\s*(\S.*)$")

# Link labels, compared without accents or case, trailing colons and arrows.
LINK_LABELS = {
    "en savoir plus", "pour en savoir plus", "lire la suite", "lire plus", "plus d'informations",
    "plus d'information", "pour plus d'informations", "voir plus", "consulter", "en lire plus",
    "read more", "learn more", "more information", "more info", "find out more", "continue reading", "see more",
    "mas informacion", "para mas informacion", "leer mas", "seguir leyendo", "ver mas", "saber mas",
}  # fmt: skip

# "Key : value" lines under a title. Only these keys are metadata; "Prévention : un rapport" is a title.
META_KEYS = {
    "date": {"date", "date de publication", "publie le", "fecha", "fecha de publicacion", "published", "publication"},
    "language": {"langue", "language", "idioma", "lang"},
    "topics": {"themes", "theme", "sujets", "topics", "topic", "temas", "tema", "categories", "categorias"},
    "translation_key": {"cle de traduction", "translation key", "clave de traduccion", "traduction", "translation"},
    "image": {"image", "imagen", "photo", "foto"},
    "image_alt": {"texte alternatif", "alt text", "texto alternativo", "legende", "caption", "leyenda"},
}
# Other keys that mark a line as information about the event, not a title.
INFO_KEYS = {
    "lieu", "heure", "horaire", "location", "venue", "time", "where", "when", "lugar", "hora", "contact",
    "contacto", "inscription", "inscriptions", "registration", "inscripcion", "inscripciones", "auteur",
    "author", "autor", "organisateur", "organizer", "organizador", "source", "fuente", "credit photo",
    "photo credit", "credito", "quand", "ou", "donde", "cuando", "dates", "fechas", "public", "audience",
}  # fmt: skip

TITLE_MAX = 150
TITLE_MAX_WORDS = 25


@dataclass
class _Unit:
    """A paragraph, a list or a link, with what came before it."""

    kind: str  # "para", "list", "link"
    lines: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    url: str = ""
    label: str = ""
    blanks_before: int = 0
    separator_before: bool = False

    @property
    def text(self) -> str:
        return single_line(" ".join(self.lines))


@dataclass
class _Item:
    title: str
    blocks: list[Block] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    published_at: datetime | None = None
    closed: bool = False


def _fold_label(text: str) -> str:
    text = fold(text).replace("’", "'")
    return " ".join(text.strip().rstrip(":.…»›→>").strip().split())


def _is_label(text: str) -> bool:
    return _fold_label(text) in LINK_LABELS


def _url_of(text: str) -> str | None:
    match = _URL.match(text.strip())
    if not match:
        return None
    url = match.group(1)
    # A closing parenthesis belongs to the URL only when it opened one.
    if url.endswith(")") and url.count("(") < url.count(")"):
        url = url[:-1]
    url = url.rstrip(".,;:!?»")
    return url if url.lower().startswith("http") else "https://" + url


def _units(text: str) -> list[_Unit]:
    """Paragraphs, lists and links of a page, each knowing the blank lines and separator above it."""
    units: list[_Unit] = []
    blanks = 0
    separator = False
    pending_label: str | None = None
    previous = "blank"  # what the last non-blank line continued: "para", "bullet" or something else

    def add(unit: _Unit) -> None:
        unit.blanks_before = blanks
        unit.separator_before = separator
        units.append(unit)

    for raw in text.split("\n"):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            blanks += 1
            previous = "blank"
            continue
        if _SEPARATOR.match(line):
            separator = True
            previous = "blank"
            continue
        if _is_label(stripped):
            # The label of the URL on one of the next lines; alone, it is not content.
            pending_label = stripped.rstrip(" :.…»›→>").strip()
            continue
        bullet = _BULLET.match(line)
        url = _url_of(stripped)
        key_value = _KEY_VALUE.match(stripped)
        if not url and key_value and _is_label(key_value.group(1)) and _url_of(key_value.group(2)):
            # "Read more: https://..." on one line.
            pending_label, url = key_value.group(1).strip(), _url_of(key_value.group(2))
        if url:
            add(_Unit("link", url=url, label=pending_label or ""))
            previous = "link"
        elif bullet:
            item = bullet.group(2).strip()
            if units and units[-1].kind == "list" and blanks <= 1 and not separator:
                units[-1].items.append(item)
            else:
                add(_Unit("list", items=[item]))
            previous = "bullet"
        elif previous == "bullet" and line[:1].isspace():
            # An indented continuation of the list item above.
            units[-1].items[-1] += " " + stripped
        elif previous == "para" and not (_looks_like_meta(stripped) or _looks_like_meta(units[-1].lines[-1])):
            units[-1].lines.append(stripped)
        else:
            add(_Unit("para", lines=[stripped]))
            previous = "para"
        pending_label = None
        blanks = 0
        separator = False
    return units


def _looks_like_meta(line: str) -> bool:
    """A date or "Key: value" metadata line, kept apart even without a blank line around it."""
    return _meta_of(_Unit("para", lines=[line]), "UTC") is not None


def _meta_of(unit: _Unit, timezone: str) -> tuple[str, str] | None:
    """("date"|"language"|..., value) when a one-line paragraph is metadata of the item."""
    if unit.kind != "para" or len(unit.lines) != 1:
        return None
    line = unit.lines[0]
    if parse_date_line(line, timezone) is not None:
        return ("date", line)
    match = _KEY_VALUE.match(line)
    if match:
        key = " ".join(fold(match.group(1)).split())
        for name, keys in META_KEYS.items():
            if key in keys:
                return (name, match.group(2).strip())
    return None


def _is_info(unit: _Unit) -> bool:
    match = _KEY_VALUE.match(unit.lines[0]) if unit.kind == "para" and unit.lines else None
    return bool(match and " ".join(fold(match.group(1)).split()) in INFO_KEYS)


def _title_shaped(unit: _Unit, timezone: str) -> bool:
    """A short line of its own that could be a title or a sub-heading."""
    if unit.kind != "para" or len(unit.lines) != 1:
        return False
    line = unit.lines[0]
    return _title_line(line) and _meta_of(unit, timezone) is None and not _is_info(unit)


def _title_line(line: str) -> bool:
    if len(line) > TITLE_MAX or len(line.split()) > TITLE_MAX_WORDS:
        return False
    if not any(ch.isalpha() for ch in line) or _EMAIL_ONLY.match(line):
        return False
    # A closing period, colon, comma or ellipsis makes it a sentence or an introduction.
    end = line.rstrip("\"'»”’) ]")
    return not end.endswith((".", ":", ";", ",", "…"))


PageItem = tuple[str | None, list[Block], dict[str, str], datetime | None]


def split_page(text: str, timezone: str = "UTC") -> list[PageItem]:
    """Split a page into items: (title or None, blocks, metadata, date) each, in page order.

    A None title is text that no title introduces (it is rejected by the caller).
    """
    units = _units(_normalise(text))
    if units and units[0].kind == "para" and len(units[0].lines) > 1 and _title_line(units[0].lines[0]):
        # A title written right above the first paragraph, without a blank line.
        first = units[0]
        units[0:1] = [
            _Unit("para", lines=[first.lines[0]]),
            _Unit("para", lines=first.lines[1:], blanks_before=1),
        ]
    items: list[_Item] = []
    preamble: list[Block] = []
    index = 0
    while index < len(units):
        unit = units[index]
        title_at, after = _title_candidate(units, index, timezone)
        if title_at is not None:
            title_unit = units[title_at]
            run_start = units[index]
            current = items[-1] if items else None
            has_meta = after > title_at + 1
            starts_item = (
                current is None
                or has_meta
                or run_start.separator_before
                or run_start.blanks_before >= 2
                or current.closed
            )
            if starts_item:
                # Short lines above the title (a page header, a rubric) are not part of any item.
                item = _Item(title=title_unit.text)
                for meta_unit in units[title_at + 1 : after]:
                    meta = _meta_of(meta_unit, timezone)
                    if meta is None:
                        continue
                    name, value = meta
                    if name == "date":
                        item.published_at = parse_date_line(value, timezone)
                    else:
                        item.meta.setdefault(name, value)
                if current is None and preamble and any(b["type"] != "heading" for b in preamble):
                    items.append(_Item(title="", blocks=preamble))
                preamble = []
                items.append(item)
            else:
                assert current is not None
                for short in units[index:title_at]:
                    current.blocks.append({"type": "paragraph", "text": short.text})
                current.blocks.append({"type": "heading", "text": title_unit.text})
                current.closed = False
                for meta_unit in units[title_at + 1 : after]:
                    current.blocks.append({"type": "paragraph", "text": meta_unit.text})
            index = after
            continue
        block = _block_of(unit, timezone)
        if items:
            items[-1].blocks.append(block)
            items[-1].closed = block["type"] == "link" and bool(block["label"]) and _is_label(block["label"])
        elif _title_shaped(unit, timezone) or _meta_of(unit, timezone):
            preamble.append({"type": "heading", "text": unit.text})
        else:
            preamble.append(block)
        index += 1
    if not items and preamble:
        items.append(_Item(title="", blocks=preamble))
    return [(item.title or None, clean_blocks(item.blocks), item.meta, item.published_at) for item in items]


def _title_candidate(units: list[_Unit], index: int, timezone: str) -> tuple[int | None, int]:
    """(index of the title, index after its metadata) when a title starts at ``index``."""
    if not _title_shaped(units[index], timezone):
        return None, index
    end = index
    while end + 1 < len(units) and _title_shaped(units[end + 1], timezone) and _no_gap(units[end + 1]):
        end += 1
    after = end + 1
    while after < len(units) and _meta_of(units[after], timezone) is not None and _no_gap(units[after]):
        after += 1
    if after > end + 1:
        return end, after
    if after < len(units) and units[after].kind == "para" and not _title_shaped(units[after], timezone):
        return end, after
    return None, index


def _no_gap(unit: _Unit) -> bool:
    return not unit.separator_before and unit.blanks_before < 2


def _block_of(unit: _Unit, timezone: str) -> Block:
    if unit.kind == "list":
        return {"type": "list", "items": unit.items}
    if unit.kind == "link":
        return {"type": "link", "url": unit.url, "label": unit.label}
    return {"type": "paragraph", "text": unit.text}


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n").replace("\u00a0", " ").replace("\t", "    ")
    # Other control characters carry nothing a reader would see.
    return "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch) != "Cc")


def read_text_page(text: str, source_id: str, timezone: str = "UTC") -> list[Draft]:
    """Drafts for every item of a plain-text page; a single-item page keeps ``source_id`` as is."""
    parts = split_page(text, timezone)
    drafts: list[Draft] = []
    used: dict[str, int] = {}
    for position, (title, blocks, meta, published_at) in enumerate(parts, start=1):
        link = _canonical_link(blocks)
        key = link or _slug(title or "") or f"item-{position}"
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
            image=_url_of(meta["image"]) if meta.get("image") else None,
            image_alt=meta.get("image_alt"),
        )
        if not title:
            first = next((b.get("text") or "" for b in blocks if b.get("text")), "")
            draft.problem = f"item {position} has no title (it starts with {_excerpt(first)!r})"
        drafts.append(draft)
    return drafts


def _canonical_link(blocks: list[Block]) -> str | None:
    links = [block for block in blocks if block["type"] == "link"]
    for block in links:
        if block["label"] and _is_label(block["label"]):
            return str(block["url"])
    return str(links[0]["url"]) if links else None


def _slug(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", fold(text)))[:120]


def _excerpt(text: str, length: int = 50) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"
