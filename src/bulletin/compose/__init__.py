"""Composing an edition: its variants and their keys, templates and rendering (Jinja2 -> MJML ->
inlined HTML), the checks a variant must pass, the per-recipient placeholders, the staff previews
and the locked approval.

May import: ``config``, ``errors``, ``i18n``, ``db``, ``models``, ``news`` and ``app``; never ``mta``,
``runners``, ``cli`` or ``web``.
"""
