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


def test_lines_on_the_loop_go_out_together_at_its_next_turn_in_order(stderr: io.StringIO) -> None:
    logger = logging.getLogger("rdnsgate.test")

    async def main() -> str:
        logger.info("first")
        logs.info(logger, "second")
        logger.info("third")
        before = stderr.getvalue()
        await asyncio.sleep(0)
        return before

    before = asyncio.run(main())
    assert before == ""
    lines = stderr.getvalue().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "INFO rdnsgate.test: first",
        "INFO rdnsgate.test: second",
        "INFO rdnsgate.test: third",
    ]


def test_lines_without_a_loop_or_from_a_thread_go_out_at_once(stderr: io.StringIO) -> None:
    logger = logging.getLogger("rdnsgate.test")
    logs.info(logger, "no loop")
    assert stderr.getvalue().endswith("INFO rdnsgate.test: no loop\n")

    async def main() -> None:
        logs.info(logger, "on the loop")
        thread = threading.Thread(target=logger.info, args=("from a thread",))
        thread.start()
        thread.join()
        # the thread's line went out at once, after the loop's pending one
        assert stderr.getvalue().splitlines()[-2:][0].endswith("on the loop")
        assert stderr.getvalue().endswith("from a thread\n")

    asyncio.run(main())


def test_a_loop_that_stops_before_the_flush_leaves_nothing_behind(stderr: io.StringIO) -> None:
    logger = logging.getLogger("rdnsgate.test")
    loop = asyncio.new_event_loop()

    def last_words() -> None:
        logs.info(logger, "last words")  # the flush is due later, which never comes
        loop.stop()

    loop.call_soon(last_words)
    loop.run_forever()
    loop.close()
    assert "last words" not in stderr.getvalue()

    async def next_loop() -> None:
        logs.info(logger, "next loop")
        await asyncio.sleep(0)

    asyncio.run(next_loop())
    assert stderr.getvalue().index("last words") < stderr.getvalue().index("next loop")


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
    logs.flush()
    assert "below the level" not in stderr.getvalue()


def test_a_warning_goes_out_at_once_after_what_waits(stderr: io.StringIO) -> None:
    logger = logging.getLogger("rdnsgate.test")

    async def main() -> None:
        logger.info("waits for the next turn")
        logger.warning("at once")
        lines = stderr.getvalue().splitlines()
        assert [line.split(": ", 1)[1] for line in lines] == ["waits for the next turn", "at once"]

    asyncio.run(main())
