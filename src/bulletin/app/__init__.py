"""Business functions over the models: subscribers and their files, opt-in, staff, signed links,
throttling, editions and the editorial workflow.

They take a SQLAlchemy session and never commit: the edge that calls them (a CLI command, a web
handler, a scheduler job) owns the transaction. May import: ``config``, ``errors``, ``i18n``, ``db``,
``models`` and ``news``; never ``compose``, ``mta``, ``runners``, ``cli`` or ``web``.
"""
