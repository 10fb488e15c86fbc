"""The log lines: the fast paths write what logging's general ones would, and the handler loses nothing."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rdnsgate import logs
from rdnsgate.model import DecisionRecord
from rdnsgate.policy.decision_log import log_line, log_line_general
from rdnsgate.storage.decisions import _json_strings

text = st.text(max_size=30)
maybe = st.none() | text
moments = st.floats(min_value=1e9, max_value=4e9, allow_nan=False)


def log_record(name: str, message: str, created: float, level: int = logging.INFO) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, "%s", (message,), None)
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
    return record


@given(text, text, moments)
def test_text_line_is_what_logging_writes(name: str, message: str, created: float) -> None:
    general = logging.Formatter(logs.TEXT_FORMAT).format(log_record(name, message, created))
    assert logs.TextFormatter().format(log_record(name, message, created)) == general


def test_text_line_carries_the_traceback_as_logging_does() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        info = sys.exc_info()
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), info)
    general = logging.Formatter(logs.TEXT_FORMAT).format(record)
    record.exc_text = None
    assert logs.TextFormatter().format(record) == general


records = st.builds(
    DecisionRecord,
    at=st.just(datetime(2026, 11, 25, tzinfo=UTC)),
    session=text,
    client_ip=text,
    ptr=maybe,
    helo=maybe,
    sender=maybe,
    recipients=st.lists(text, max_size=3).map(tuple),
    profile=text,
    action=text,
    stage=maybe,
    reply=maybe,
    checks=st.dictionaries(text, st.fixed_dictionaries({"result": text, "reason": text, "detail": text}), max_size=3),
    whitelisted=maybe,
)


@given(st.text(max_size=40) | st.sampled_from(['"', "\\", "\x7f", "\u2028", "\ud800", "r@bench.example"]))
def test_json_string_is_what_json_writes(text: str) -> None:
    assert logs.json_string(text) == json.dumps(text, separators=(",", ":"))


@given(st.lists(st.text(max_size=20), max_size=4).map(tuple))
def test_a_records_recipients_are_stored_as_json_writes_them(recipients: tuple[str, ...]) -> None:
    assert _json_strings(recipients) == json.dumps(list(recipients), separators=(",", ":"))


@given(records)
def test_decision_line_is_the_general_one(record: DecisionRecord) -> None:
    assert log_line(record) == log_line_general(record)
    assert log_line(record) == log_line_general(record)  # the second time from the parts already made


@given(records, moments)
@settings(max_examples=50)
def test_json_decision_line_is_the_merged_object(record: DecisionRecord, created: float) -> None:
    line = log_line(record)
    merged = {
        "time": datetime.fromtimestamp(int(created), UTC).strftime("%Y-%m-%dT%H:%M:%S")
        + f".{int((created - int(created)) * 1000):03d}+00:00",
        "level": "info",
        "logger": "rdnsgate.decision",
        **json.loads(line),
    }
    made = logs.JsonFormatter().format(log_record("rdnsgate.decision", line, created))
    assert made == json.dumps(merged, separators=(",", ":"))


def test_json_line_of_a_message_with_a_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "said %s", ("it",), sys.exc_info())
    made = json.loads(logs.JsonFormatter().format(record))
    assert made["message"] == "said it" and made["level"] == "error" and "ValueError: boom" in made["traceback"]


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """configure_logging on a StringIO stderr; logging as it was afterwards."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure_logging("info")
    yield stream
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    monkeypatch.setattr(logs, "_installed", None)


def test_lines_go_out_at_once_in_order_from_the_loop_and_from_threads(stderr: io.StringIO) -> None:
    logger = logging.getLogger("rdnsgate.test")

    async def main() -> None:
        logger.info("first")
        logs.info(logger, "second")
        assert stderr.getvalue().endswith("INFO rdnsgate.test: second\n")  # nothing waits for the loop
        thread = threading.Thread(target=logs.info, args=(logger, "from a thread"))
        thread.start()
        thread.join()
        logger.warning("last")

    asyncio.run(main())
    lines = stderr.getvalue().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "INFO rdnsgate.test: first",
        "INFO rdnsgate.test: second",
        "INFO rdnsgate.test: from a thread",
        "WARNING rdnsgate.test: last",
    ]


def test_another_handler_gets_the_record(stderr: io.StringIO, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("rdnsgate.test")
    with caplog.at_level(logging.INFO):
        logs.info(logger, "seen by caplog")
    assert [record.getMessage() for record in caplog.records] == ["seen by caplog"]
    logging.getLogger("rdnsgate.test").setLevel(logging.WARNING)
    try:
        logs.info(logger, "below the level")
    finally:
        logging.getLogger("rdnsgate.test").setLevel(logging.NOTSET)
    assert "below the level" not in stderr.getvalue()
