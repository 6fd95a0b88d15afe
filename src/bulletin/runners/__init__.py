"""Long-running processes: the APScheduler-based scheduler with its jobs, and cron expressions.

May import every core folder (``app``, ``compose``, ``mta``, ``news``); never ``cli`` or ``web``.
"""
