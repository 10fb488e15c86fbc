"""What the services write to stderr (the journal, under systemd): the two line formats, and the handler.

`configure_logging` installs one `StderrHandler` on the root logger with a
`TextFormatter` (time, level, logger, message) or a `JsonFormatter` (one JSON
object per line).  Each line is written as it is said: a test or a log reader
never sees a reply on the wire before the line that explains it.

The lines written per message (the decision log's, the gateway's session line)
go through `info`: the same line as ``logger.info(message)``, without building
a `logging.LogRecord`, while the handler is the one `configure_logging` installed; through `logging` otherwise (a test's
``caplog``, a program embedding rdnsgate with its own handlers).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def json_string(text: str) -> str:
    """`text` as a JSON string, as ``json.dumps`` writes it: quoted as it is when nothing in it needs escaping
    (the usual case for the names and addresses of a decision: one C call each instead of the encoder)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return _dumps(text)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_DECISION = '{"event":'  # a line that is a JSON object of its own (policy/decision_log.py)


class _Stamps:
    """The time stamp of a second, made once per second (each formatter keeps one)."""

    def __init__(self, make: Callable[[int], str]) -> None:
        self._make = make
        self._last: tuple[int, str] = (-1, "")

    def of(self, second: int) -> str:
        last = self._last
        if last[0] == second:
            return last[1]
        text = self._make(second)
        self._last = (second, text)
        return text


class TextFormatter(logging.Formatter):
    """``2026-11-25 01:10:30,904 INFO rdnsgate.smtp: message`` (local time), as `TEXT_FORMAT` with logging's
    own `Formatter` writes it."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._stamps = _Stamps(lambda second: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))

    def line(self, name: str, level: str, message: str, created: float) -> str:
        second = int(created)
        return f"{self._stamps.of(second)},{int((created - second) * 1000):03d} {level} {name}: {message}"

    def format(self, record: logging.LogRecord) -> str:
        return _with_trace(self, record, self.line(record.name, record.levelname, record.getMessage(), record.created))


class JsonFormatter(logging.Formatter):
    """One JSON object per line with stable keys: time (UTC, ISO 8601, milliseconds), level, logger, and
    the message; a decision line (already a JSON object) carries its own fields instead of `message`."""

    def __init__(self) -> None:
        super().__init__()
        self._stamps = _Stamps(lambda second: datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))

    def line(self, name: str, level: str, message: str, created: float) -> str:
        second = int(created)
        head = (
            f'{{"time":"{self._stamps.of(second)}.{int((created - second) * 1000):03d}+00:00",'
            f'"level":"{level.lower()}","logger":{json.dumps(name)},'
        )
        if message.startswith(_DECISION) and message.endswith("}"):
            return head + message[1:]  # its fields after ours, in its order (json.dumps of the merged dict)
        return head + f'"message":{json.dumps(message)}}}'

    def format(self, record: logging.LogRecord) -> str:
        line = self.line(record.name, record.levelname, record.getMessage(), record.created)
        if record.exc_info:
            line = line[:-1] + f',"traceback":{json.dumps(self.formatException(record.exc_info))}}}'
        return line


def _with_trace(formatter: logging.Formatter, record: logging.LogRecord, line: str) -> str:
    """`line` with the exception and stack text logging's `Formatter.format` would append."""
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        line += "\n" + record.exc_text
    if record.stack_info:
        line += "\n" + formatter.formatStack(record.stack_info)
    return line


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, one write per line as it is said (a line is never behind what the process did next)."""

    def __init__(self, formatter: TextFormatter | JsonFormatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines = formatter

    def write(self, line: str) -> None:
        """Write a formatted line (`info`'s path, without a LogRecord)."""
        self.acquire()
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": line}))
        finally:
            self.release()


_installed: StderrHandler | None = None


def configure_logging(level: int | str = logging.INFO, form: str = "text") -> None:
    """Log to stderr at `level` (a number or `debug`/`info`/…), as `text` or `json` lines."""
    global _installed
    # The formats name no source line, thread or process: do not gather them for every record
    # (the logging docs' "Optimization" section).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = StderrHandler(JsonFormatter() if form == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers:
        old.flush()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # its plugins, at every start
    _installed = handler


def _direct(logger: logging.Logger) -> StderrHandler | None:
    """The installed handler, when it alone would write `logger`'s records (no other handler or filter
    on the way); None otherwise."""
    handler = _installed
    if handler is None or handler.filters:
        return None
    root = logging.root
    if len(root.handlers) != 1 or root.handlers[0] is not handler or root.filters:
        return None
    node: logging.Logger | None = logger
    while node is not None and node is not root:
        if node.handlers or node.filters or not node.propagate:
            return None
        node = node.parent
    return handler


def info(logger: logging.Logger, message: str) -> None:
    """``logger.info("%s", message)``, written directly when the installed handler alone would write it."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _direct(logger)
    if handler is None or handler.level > logging.INFO:
        logger.info("%s", message)
        return
    handler.write(handler.lines.line(logger.name, "INFO", message, time.time()))
