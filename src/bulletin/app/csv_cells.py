"""Spreadsheet formula escaping of CSV cells, undone on import so a round trip stays identical.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula by
spreadsheet programs (CSV injection, OWASP). Such cells are written with a leading apostrophe.
The rule is reversible: a cell made of apostrophes then one of those characters gains one more
apostrophe on export and loses one on import; every other cell is left as it is.
"""

from __future__ import annotations

import re

FORMULA_STARTS = "=+-@\t\r"
_ESCAPABLE = re.compile(r"'*[=+\-@\t\r]")
_ESCAPED = re.compile(r"'+[=+\-@\t\r]")


def escape_cell(value: str) -> str:
    """The cell as written to a CSV file opened by spreadsheets."""
    return "'" + value if _ESCAPABLE.match(value) else value


def unescape_cell(value: str) -> str:
    """The cell as it was before :func:`escape_cell`."""
    return value[1:] if _ESCAPED.match(value) else value


def escape_row(values: list[str]) -> list[str]:
    return [escape_cell(value) for value in values]
