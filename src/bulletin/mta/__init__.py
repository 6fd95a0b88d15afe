"""Mail transport: building messages (headers, DKIM), the SMTP connection, send-rate limits, the
delivery ledger, the sender that drives them, review copies, non-bulletin notices and the
development SMTP server.

May import everything below it (``config`` ... ``app``, ``compose``); never ``runners``, ``cli`` or
``web``.
"""
