"""Structured logging: one JSON object per line (or plain text for humans)."""

from __future__ import annotations

import json
import logging
import sys
import time

from mixer.redact import mask_credentials


class JsonFormatter(logging.Formatter):
    """Formats records as JSON lines with time, level, logger, message and any `extra` fields."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        # Last, on the whole line: a URL with a password may come from any message, field or
        # exception, ours or a library's.
        return mask_credentials(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    """Plain text lines, credentials masked as in `JsonFormatter`."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_credentials(super().format(record))


def configure(level: str, fmt: str = "json") -> None:
    """Send logs to stderr in the chosen format at the chosen level."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
