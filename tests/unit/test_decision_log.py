"""The decision log's queue while the store is away: held, retried, bounded, drops counted and said once a minute."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from rdnsgate.model import DecisionRecord
from rdnsgate.policy import decision_log
from rdnsgate.policy.decision_log import DecisionLog

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def record(number: int) -> DecisionRecord:
    return DecisionRecord(NOW, f"s{number}", "192.0.2.1", None, None, None, (), "classic", "accept", None, None, {})


class Store:
    """A store that refuses writes while `away` is set."""

    def __init__(self) -> None:
        self.away = False
        self.rows: list[str] = []
        self.tries = 0

    async def decisions_add(self, records: Sequence[DecisionRecord]) -> None:
        self.tries += 1
        if self.away:
            raise ConnectionRefusedError("[Errno 111] Connect call failed")
        self.rows.extend(item.session for item in records)


async def wait_for(condition: object, seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_records_made_while_the_store_is_away_are_written_when_it_returns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(decision_log, "RETRY_FIRST", 0.01)
    monkeypatch.setattr(decision_log, "RETRY_MAX", 0.05)
    store = Store()
    log = DecisionLog(store, maxsize=100)
    log.start()
    store.away = True
    for number in range(50):
        log.record(record(number))
    await wait_for(lambda: store.tries >= 3)  # tried again and again, nothing lost meanwhile
    assert log.backlog == 50 and log.dropped == 0 and log.store_error is not None
    assert "ConnectionRefusedError" in log.store_error
    assert sum("could not store" in item.message for item in caplog.records) == 1  # said once, not per try
    store.away = False
    await wait_for(lambda: log.backlog == 0)
    assert store.rows == [f"s{number}" for number in range(50)]  # all of them, in order, once
    assert log.store_error is None and log.written == 50
    assert any("the store is back" in item.message for item in caplog.records)
    await log.close()


async def test_beyond_the_bound_records_are_dropped_counted_and_said_once_a_minute(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(decision_log, "RETRY_FIRST", 0.01)
    store = Store()
    store.away = True
    log = DecisionLog(store, maxsize=10)
    log.start()
    caplog.set_level(logging.WARNING, logger="rdnsgate.policy.decision_log")
    for number in range(10):
        log.record(record(number))
    await wait_for(lambda: log.held)  # the writer holds the first batch; the queue fills behind it
    for number in range(10, 40):
        log.record(record(number))
    assert len(log.held) == 10 and log.queue.qsize() == 10  # held batch + a full queue
    assert log.dropped == 20 and log.backlog == 20  # every record is either waiting or counted as dropped
    said = [item.message for item in caplog.records if "dropped" in item.message]
    assert len(said) == 1 and said[0].startswith("1 decision records dropped: the queue of 10 was full (store away")
    await log.close(timeout=0.1)  # the store never came back: what is left is dropped too, and said
    assert log.dropped == 40 and log.backlog == 0
    said = [item.message for item in caplog.records if "dropped" in item.message]
    assert len(said) == 2 and "40 dropped since start" in said[-1]


def test_a_search_with_a_nul_character_is_a_usage_error() -> None:
    """PostgreSQL refuses NUL in a query: the search says so instead of failing inside the store."""
    from rdnsgate.errors import UsageError
    from rdnsgate.policy.decision_log import search_terms

    for field in ("ip", "sender", "helo", "since", "until"):
        values = {"ip": None, "sender": None, "helo": None, "since": None, "until": None, field: "a\x00b"}
        with pytest.raises(UsageError, match=f"{field} contains a NUL character"):
            search_terms(**values, now=datetime.now(UTC))  # type: ignore[arg-type]
