"""Mail transport: building messages (headers, VERP, DKIM), the SMTP connection, send-rate limits,
the clock seam, the delivery ledger and its journal, the sender that drives them, locks, bounce
classification and the mailboxes bounces arrive in, review copies, non-bulletin notices and the
development SMTP server.

May import everything below it (``config`` ... ``app``, ``compose``); never ``runners``, ``cli`` or
``web``.
"""
