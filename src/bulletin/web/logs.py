"""Log settings of ``bulletin serve``: the access log never records a signed link's token.

A token in a log would be a working unsubscribe, preferences or confirmation link for as long
as the log is kept, readable by anyone who reads the logs.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from bulletin.app.links import PATHS

REDACTED = "[redacted]"
_TOKEN_PATH = re.compile("(" + "|".join(re.escape(path) for path in PATHS.values()) + r")[^?#\s\"]*")


def redact_path(path: str) -> str:
    """The path with the token of any signed link replaced by ``[redacted]``."""
    return _TOKEN_PATH.sub(lambda match: match.group(1) + REDACTED, path)


class RedactTokens(logging.Filter):
    """Rewrites uvicorn's access log records (client, method, path, version, status) before they are written."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        elif isinstance(record.msg, str):
            record.msg = redact_path(record.msg)
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with the token filter on the access log."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": RedactTokens}
    config["handlers"]["access"].setdefault("filters", []).append("redact_tokens")
    return config
