"""Catalogs of the emails: complete in fr, en and es, read from the .po files with no build step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from bulletin.i18n import LOCALE_DIR, catalog_languages, catalog_path, translations

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ["fr", "en", "es"]


def interface_strings() -> set[str]:
    """Every translatable string of the emails, extracted now from the sources as Babel does."""
    with open(LOCALE_DIR / "babel-bulletin.cfg", encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config)
    found = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords={"_": None, "gettext": None, "ngettext": (1, 2)}
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_extraction_finds_the_interface_strings() -> None:
    strings = interface_strings()
    assert {"Unsubscribe", "Read more", "(in %(language)s)", "Hello%(name_placeholder)s,"} <= strings


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_untranslated_interface_string(language: str) -> None:
    with open(catalog_path(language), "rb") as po_file:
        catalog = read_po(po_file, locale=language)
    missing = []
    for msgid in sorted(interface_strings()):
        message = catalog.get(msgid)
        if message is None or not message.string or message.fuzzy:
            missing.append(msgid)
            continue
        # The translation keeps the same named values, or formatting would fail.
        assert set(re.findall(r"%\((\w+)\)s", msgid)) == set(re.findall(r"%\((\w+)\)s", message.string)), msgid
    assert missing == [], f"untranslated in {language}: {missing}"


def test_catalogs_are_read_from_po_files_at_runtime() -> None:
    assert set(LANGUAGES) <= set(catalog_languages())
    assert translations("fr").gettext("Unsubscribe") == "Se désabonner"
    assert translations("es").gettext("Read more") == "Leer más"
    assert translations("de").gettext("Unsubscribe") == "Unsubscribe"
    assert not list(LOCALE_DIR.glob("*/LC_MESSAGES/bulletin.mo")), "only .po sources are kept"


def test_fuzzy_entries_are_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bulletin import i18n

    po = tmp_path / "xx" / "LC_MESSAGES" / "bulletin.po"
    po.parent.mkdir(parents=True)
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
        '#, fuzzy\nmsgid "Unsubscribe"\nmsgstr "Guess"\n\nmsgid "Read more"\nmsgstr "Lire"\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    catalog = i18n.translations("xx")
    assert catalog.gettext("Read more") == "Lire"
    assert catalog.gettext("Unsubscribe") == "Unsubscribe"
