"""The lines of a plain-text news page read as units: paragraphs, lists, links and read-more
labels, each knowing the blank lines and separator above it, and the tests of what a line is
(a title-like line, a date or metadata line, a link label)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from bulletin.news.dates import parse_date_line
from bulletin.news.draft import single_line
from bulletin.news.topics import fold

_BULLET = re.compile(r"^(\s*)[•◦▪‣●·\-*–—]\s+(\S.*)$")
_SEPARATOR = re.compile(r"^\s*(?:[-*_=~#•·–—]\s*){3,}$")
_URL = re.compile(r"^<?((?:https?://|www\.)[^\s<>]+?)>?[.,;:!?)»]*$", re.IGNORECASE)
_EMAIL_ONLY = re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$")
# Control characters (category Cc) but the line feed.
_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
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
class Unit:
    """A paragraph, a list or a link, with what came before it."""

    kind: str  # "para", "list", "link", "label" (a read-more label without its URL)
    lines: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    url: str = ""
    label: str = ""
    blanks_before: int = 0
    separator_before: bool = False

    @cached_property
    def text(self) -> str:
        # Read only once the unit is complete (after ``read_units``), so it is computed once.
        return single_line(" ".join(self.lines))


def fold_label(text: str) -> str:
    text = fold(text).replace("’", "'")
    return " ".join(text.strip().rstrip(":.…»›→>").strip().split())


def is_label(text: str) -> bool:
    return fold_label(text) in LINK_LABELS


def url_of(text: str) -> str | None:
    match = _URL.match(text.strip())
    if not match:
        return None
    url = match.group(1)
    # A closing parenthesis belongs to the URL only when it opened one.
    if url.endswith(")") and url.count("(") < url.count(")"):
        url = url[:-1]
    url = url.rstrip(".,;:!?»")
    return url if url.lower().startswith("http") else "https://" + url


def read_units(text: str) -> list[Unit]:
    """Paragraphs, lists and links of a page, each knowing the blank lines and separator above it."""
    units: list[Unit] = []
    blanks = 0
    separator = False
    pending_label: str | None = None
    previous = "blank"  # what the last non-blank line continued: "para", "bullet" or something else

    def add(unit: Unit) -> None:
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
        if is_label(stripped):
            # The label of the URL on one of the next lines; alone (the export dropped its URL),
            # it is not content but still ends its item.
            pending_label = stripped.rstrip(" :.…»›→>").strip()
            add(Unit("label", label=pending_label))
            blanks = 0
            separator = False
            previous = "label"
            continue
        bullet = _BULLET.match(line)
        url = url_of(stripped)
        key_value = _KEY_VALUE.match(stripped)
        if not url and key_value and is_label(key_value.group(1)) and url_of(key_value.group(2)):
            # "Read more: https://..." on one line.
            pending_label, url = key_value.group(1).strip(), url_of(key_value.group(2))
        if url:
            link = Unit("link", url=url, label=pending_label or "")
            if pending_label is not None and units and units[-1].kind == "label":
                label_unit = units.pop()
                link.blanks_before, link.separator_before = label_unit.blanks_before, label_unit.separator_before
                units.append(link)
            else:
                add(link)
            previous = "link"
        elif bullet:
            item = bullet.group(2).strip()
            if units and units[-1].kind == "list" and blanks <= 1 and not separator:
                units[-1].items.append(item)
            else:
                add(Unit("list", items=[item]))
            previous = "bullet"
        elif previous == "bullet" and line[:1].isspace():
            # An indented continuation of the list item above.
            units[-1].items[-1] += " " + stripped
        elif previous == "para" and not (_looks_like_meta(stripped) or _looks_like_meta(units[-1].lines[-1])):
            units[-1].lines.append(stripped)
        else:
            add(Unit("para", lines=[stripped]))
            previous = "para"
        pending_label = None
        blanks = 0
        separator = False
    return units


def _looks_like_meta(line: str) -> bool:
    """A date or "Key: value" metadata line, kept apart even without a blank line around it."""
    return meta_of(Unit("para", lines=[line]), "UTC") is not None


def meta_of(unit: Unit, timezone: str) -> tuple[str, str] | None:
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


def _is_info(unit: Unit) -> bool:
    match = _KEY_VALUE.match(unit.lines[0]) if unit.kind == "para" and unit.lines else None
    return bool(match and " ".join(fold(match.group(1)).split()) in INFO_KEYS)


def title_shaped(unit: Unit, timezone: str) -> bool:
    """A short line of its own that could be a title or a sub-heading."""
    if unit.kind != "para" or len(unit.lines) != 1:
        return False
    line = unit.lines[0]
    return title_line(line) and meta_of(unit, timezone) is None and not _is_info(unit)


def title_line(line: str) -> bool:
    if len(line) > TITLE_MAX or len(line.split()) > TITLE_MAX_WORDS:
        return False
    if not any(ch.isalpha() for ch in line) or _EMAIL_ONLY.match(line):
        return False
    # A closing period, colon, comma or ellipsis makes it a sentence or an introduction.
    end = line.rstrip("\"'»”’) ]")
    return not end.endswith((".", ":", ";", ",", "…"))


def no_gap(unit: Unit) -> bool:
    return not unit.separator_before and unit.blanks_before < 2


def normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n").replace("\u00a0", " ").replace("\t", "    ")
    # Other control characters carry nothing a reader would see.
    return _CONTROLS.sub("", text)
