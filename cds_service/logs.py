"""Structured JSON logs: one object per line, only whitelisted fields (no PHI, no tokens).

Callers pass facts as ``extra={"fields": {...}}``; only the keys in ``ALLOWED_FIELDS`` are written, so a
patient id or a token cannot reach the log by accident. Messages are fixed strings written by this code.

An exception never reaches the log by its message (it can quote request content): with ``exc_info`` only its type
and frames are written, and an exception passed as the message, as a ``%s`` argument or as a field value is written
as its type's name. As a last line of defence, anything shaped like a JWT or a ``Bearer`` credential is redacted
from every line (tests/test_logs_allowlist.py).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

ALLOWED_FIELDS = frozenset(
    {
        "event",
        "hookInstance",
        "service",
        "hook",
        "status",
        "duration_ms",
        "fetch_ms",
        "sources",
        "decision",
        "topics",
        "cards",
        "gaps",
        "error",
        "reason",
        "method",
        "path",
        "auth",
        "iss",
        "key",
        "count",
        "host",
        "port",
        "resource_type",
        "errors",
        "issuer",
        "profile",
        "trigger",
        "workers",
        "outcome",
        "stored",
        "duplicates",
        "exit_code",
        "threads",
        "seconds",
        "variables",
        "waited_ms",
    }
)


_CREDENTIAL = re.compile(
    r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"  # a JWT (its header is JSON: base64 "eyJ")
    r"|(?i:\bbearer\s+)[^\s\"',;]+"  # an Authorization header's credential
)


def _scrubbed(value: Any) -> Any:
    """``value`` with every exception in it replaced by its type's name (never its message)."""
    if isinstance(value, BaseException):
        return type(value).__name__
    if isinstance(value, Mapping):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrubbed(v) for v in value]
    return value


def _message(record: logging.LogRecord) -> str:
    """The record's message, an exception in it (as the message or an argument) written as its type's name."""
    if isinstance(record.msg, BaseException):
        return type(record.msg).__name__
    args = record.args
    if not args:
        return str(record.msg)
    safe: Any = (
        {k: _scrubbed(v) for k, v in args.items()}
        if isinstance(args, Mapping)
        else tuple(type(a).__name__ if isinstance(a, BaseException) else a for a in args)
    )
    try:
        return str(record.msg) % safe
    except (TypeError, ValueError, KeyError):
        return str(record.msg)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": _message(record),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: _scrubbed(v) for k, v in fields.items() if k in ALLOWED_FIELDS})
        for name in ("key", "resource_type", "errors", "status"):
            value = getattr(record, name, None)
            if value is not None and name not in entry:
                entry[name] = _scrubbed(value)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type and where it happened; never its message (it can quote request content).
            exc_type, _, tb = record.exc_info
            frames = []
            while tb is not None:
                frames.append(f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}")
                tb = tb.tb_next
            entry["exception"] = {"type": exc_type.__name__, "at": frames[-6:]}
        return _CREDENTIAL.sub("[redacted]", json.dumps(entry, default=str, ensure_ascii=False))


class ServerLogFormatter(JsonFormatter):
    """gunicorn's own lines (booting, signals, worker deaths, request errors) as the same JSON objects. Its messages
    are its fixed words; a request it quotes loses its query string (the pathway view's launch parameters), so no
    request content reaches the log this way either."""

    def format(self, record: logging.LogRecord) -> str:
        copy = logging.makeLogRecord(record.__dict__)
        copy.msg = re.sub(r"\?\S*", "?…", _message(record))
        copy.args = None
        return super().format(copy)


def server_log_config(level: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its error and access loggers through ServerLogFormatter, on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "cds_service.logs.ServerLogFormatter"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": level, "handlers": ["stderr"], "propagate": False},
        },
        "root": {"level": level, "handlers": ["stderr"]},
    }


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("werkzeug").setLevel("WARNING")
    logging.getLogger("urllib3").setLevel("WARNING")
    logging.getLogger("alembic").setLevel("WARNING")  # its INFO lines describe each look at the schema


def log_fields(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    logger.log(level, message, extra={"fields": fields})
