"""Every string of the web pages and opt-in emails is translated in French, English and Spanish."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import bulletin
from bulletin.i18n import catalog_path

PACKAGE = Path(bulletin.__file__).parent
KEYWORDS = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "plain": None,
    "markup": None,
    "N_": None,
    "nplain": (1, 2),
    "nmarkup": (1, 2),
}
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def extracted() -> set[str | tuple[str, ...]]:
    found: set[str | tuple[str, ...]] = set()
    mappings = [
        (PACKAGE / "web", [("templates/**.html", "jinja2"), ("templates/**.txt", "jinja2"), ("**.py", "python")]),
        (PACKAGE / "app", [("optin.py", "python")]),
        (PACKAGE / "mta", [("notices.py", "python")]),
    ]
    for folder, method_map in mappings:
        for _file, _line, message, _comments, _context in extract_from_dir(str(folder), method_map, keywords=KEYWORDS):
            found.add(message)
    return found


def test_extraction_finds_the_page_strings() -> None:
    messages = extracted()
    assert "Subscribe" in messages
    assert ("This link works for %(count)s day.", "This link works for %(count)s days.") in messages
    assert len(messages) > 150


@pytest.mark.parametrize("language", ["fr", "en", "es"])
def test_catalog_translates_every_string_with_the_same_placeholders(language: str) -> None:
    with open(catalog_path(language, "web"), "rb") as po_file:
        catalog = read_po(po_file, locale=language)
    missing = []
    for message in extracted():
        key = message if isinstance(message, str) else message[0]
        entry = catalog.get(key)
        strings = (
            (entry.string,) if entry is not None and isinstance(entry.string, str) else (entry.string if entry else ())
        )
        if entry is None or entry.fuzzy or not all(strings):
            missing.append(key)
            continue
        source = set(PLACEHOLDER.findall(key))
        for string in strings:
            assert set(PLACEHOLDER.findall(string)) == source, f"{language}: {key!r} -> {string!r}"
    assert missing == [], f"untranslated in {language}: {missing}"
