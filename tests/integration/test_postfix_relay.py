"""Real MTAs on both sides: Postfix sends through the gateway to a second Postfix (tests/harness/relay_lab.py).

A plain message, an internationalised one (SMTPUTF8), one with DSN requests
(RET, ENVID, NOTIFY), a 20 MB one, and one for three recipients of which the
receiving Postfix defers one: each arrives once, with what its sender asked
for, and the deferred recipient waits in the sending Postfix's queue.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import pytest

from tests.harness.postfix import netns, run_in

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("postfix") is None or shutil.which("ip") is None,
        reason="needs root, postfix and iproute2 (make test installs them)",
    ),
]

CASES = [
    {"id": "plain", "from": "plain@example.org", "to": ["alice@example.net"], "body": "Subject: plain\r\n\r\nhi\r\n"},
    {
        "id": "smtputf8",
        "from": "bøb@example.org",
        "to": ["alice@example.net"],
        "mail_options": ["SMTPUTF8"],
        "body": "From: Bøb <bøb@example.org>\r\nSubject: grüße\r\n\r\nhéllo\r\n",
    },
    {
        "id": "dsn",
        "from": "dsn@example.org",
        "to": ["alice@example.net"],
        "mail_options": ["RET=HDRS", "ENVID=RDNSGATE-ENVID-1"],
        "rcpt_options": ["NOTIFY=SUCCESS,FAILURE"],
        "body": "Subject: dsn\r\n\r\nplease tell me\r\n",
    },
    {"id": "big", "from": "big@example.org", "to": ["alice@example.net"], "big_mb": 20},
    {
        "id": "three",
        "from": "three@example.org",
        "to": ["alice@example.net", "later@example.net", "carol@example.net"],
        "body": "Subject: three\r\n\r\nto three\r\n",
    },
]


@pytest.fixture(scope="module")
def lab() -> dict[str, Any]:
    with netns("rdnsgate-relay") as name:
        proc = run_in(name, ["-m", "tests.harness.relay_lab", json.dumps(CASES)], timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def by_sender(queue: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for item in queue:
        found.setdefault(item["sender"], []).append(item)
    return found


def test_every_message_arrives_once(lab: dict[str, Any]) -> None:
    received = by_sender(lab["receiver_queue"])
    assert sorted(received) == sorted(case["from"] for case in CASES), lab["logs"]
    assert all(len(items) == 1 for items in received.values()), received  # nothing duplicated
    recipients = {sender: sorted(r["address"] for r in items[0]["recipients"]) for sender, items in received.items()}
    assert recipients["three@example.org"] == ["alice@example.net", "carol@example.net"]
    assert received["big@example.org"][0]["message_size"] > 20_000_000


def test_the_deferred_recipient_waits_at_the_sender(lab: dict[str, Any]) -> None:
    [item] = lab["sender_queue"]
    [recipient] = item["recipients"]
    assert recipient["address"] == "later@example.net" and "4.2.1" in recipient["delay_reason"], item


def test_smtputf8_and_dsn_reach_the_receiver(lab: dict[str, Any]) -> None:
    received = by_sender(lab["receiver_queue"])
    utf8 = lab["postcat"][received["bøb@example.org"][0]["queue_id"]]
    assert "grüße" in utf8 and "bøb@example.org" in utf8, utf8
    dsn = lab["postcat"][received["dsn@example.org"][0]["queue_id"]]
    assert "envelope_id=RDNSGATE-ENVID-1" in dsn, dsn  # ENVID, as the client wrote it
    assert "ret_flags=2" in dsn, dsn  # RET=HDRS
    assert "notify_flags=6" in dsn, dsn  # NOTIFY=SUCCESS,FAILURE
