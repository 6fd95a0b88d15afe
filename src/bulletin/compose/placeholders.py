"""Per-recipient placeholders left in rendered variants and filled in at send time.

Each is a plain word (letters and underscores) so that MJML, premailer, URL handling and
text wrapping all leave it untouched. The composer writes them; the sender replaces them.
"""

from __future__ import annotations

# " Marie" (with its leading space, HTML-escaped in the HTML part) or "" when no name is known.
NAME = "__BULLETIN_NAME__"
UNSUBSCRIBE_URL = "__BULLETIN_UNSUBSCRIBE_URL__"
PREFERENCES_URL = "__BULLETIN_PREFERENCES_URL__"

ALL = (NAME, UNSUBSCRIBE_URL, PREFERENCES_URL)
