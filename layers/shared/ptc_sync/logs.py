"""Log output passes the redactor: every function's Powertools Logger formats through ``RedactingFormatter``.

Each handler module creates its service Logger with ``service_logger()``;
the package's ``Logger(child=True)`` loggers log through that Logger's handler, so one formatter
sees every line: the message, the ``extra`` fields, appended keys and exception text are redacted
(``ptc_sync.redact``) after the record is turned into a dict and before it is written. A field whose
name says it is a secret (``password``, ``token``, ``authorization``, …) is masked whole.

``RedactingFilter`` also redacts the records themselves, in place, on that Logger's handler (so a
handler further up, like the root's, sees them redacted too) and on the package's plain ``logging``
loggers (``ptc_sync.credentials``, ``ptc_sync.registry.*``), which do not go through Powertools.
Powertools formats exceptions from ``exc_info`` itself: the formatter redacts what it makes of them.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from ptc_sync.redact import redact, redact_value

LOG_LIMIT: Final = 16_000  # per string field: a traceback fits, a 1 MB echo does not
PACKAGE: Final = "ptc_sync"


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, with every string in the log document redacted."""

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        return super().serialize(redact_value(log, limit=LOG_LIMIT))  # type: ignore[arg-type]


class RedactingFilter(logging.Filter):
    """Redacts a record in place: its formatted message, its ``extra`` fields, its exception text."""

    _STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), limit=LOG_LIMIT)
        record.args = None
        if record.exc_info and not record.exc_text:
            # standard formatters print the cached exc_text instead of formatting exc_info again
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, limit=LOG_LIMIT)
        for name, value in list(vars(record).items()):
            if name not in self._STANDARD:
                setattr(record, name, redact_value({name: value}, limit=LOG_LIMIT)[name])  # type: ignore[index]
        return True


def redact_package_loggers() -> None:
    """Install ``RedactingFilter`` on every plain ``logging`` logger of the package created so far."""
    for name, existing in list(logging.root.manager.loggerDict.items()):
        ours = name == PACKAGE or name.startswith(PACKAGE + ".")
        if not ours or not isinstance(existing, logging.Logger):
            continue
        if not any(isinstance(f, RedactingFilter) for f in existing.filters):
            existing.addFilter(RedactingFilter())


_SERVICE_LOGGERS: dict[str, Logger] = {}  # service name -> the Logger service_logger made for it


def service_logger(**options: Any) -> Logger:
    """The function's Powertools Logger, redacting (and the package's plain loggers with it)."""
    redact_package_loggers()
    logger = Logger(logger_formatter=RedactingFormatter(), **options)
    _SERVICE_LOGGERS[logger.service] = logger
    # records are redacted in place too, before any handler after this one (the root's) sees them
    handler = logger.registered_handler
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())
    return logger


def set_service_level(service: str, level: str) -> None:
    """``level`` on the service's Logger (``service_logger``), when this process made one: the
    package's ``Logger(child=True)`` loggers follow it. Powertools' ``setLevel`` applies its own
    precedence (a level set by Lambda's advanced logging controls wins, with a warning)."""
    logger = _SERVICE_LOGGERS.get(service)
    if logger is not None:
        logger.setLevel(level)
