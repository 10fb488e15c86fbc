"""A real Exim asks rdnsgate from its RCPT ACL (contrib/exim/rdnsgate.acl, docs/exim.md).

Debian's Exim and Postfix exclude each other (both are the system's MTA), so
``make test`` takes the ``exim4`` binary out of the ``exim4-daemon-light``
package into .cache/exim4 without installing it.  Runs
tests/harness/exim_lab.py in a network namespace of its own as root; there
``/etc/netns/NAME/passwd`` and ``group`` give the binary the ``Debian-exim``
user it was built for (mapped to nobody), and nothing of the system's Exim
configuration is read.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.harness.postfix import netns, run_in

ROOT = Path(__file__).resolve().parents[2]
EXIM = Path(os.environ.get("RDNSGATE_TEST_EXIM", ROOT / ".cache/exim4/usr/sbin/exim4"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or not EXIM.exists() or shutil.which("ip") is None,
        reason="needs root, iproute2 and the exim4 binary in .cache/exim4 (make test fetches it)",
    ),
]

GOOD, NO_PTR, MISMATCH = "127.0.10.1", "127.0.10.2", "127.0.10.3"
SCENARIOS = [
    {"id": "all-good", "source": GOOD, "helo": "good1.example.org", "sender": "bob@example.org"},
    {"id": "no-ptr", "source": NO_PTR, "helo": "good1.example.org", "sender": "bob@example.org"},
    {"id": "ptr-mismatch", "source": MISMATCH, "helo": "good1.example.org", "sender": "bob@example.org"},
    {"id": "bounce", "source": GOOD, "helo": "good1.example.org", "sender": ""},
    {"id": "null-mx", "source": GOOD, "helo": "good1.example.org", "sender": "bob@nullmx.example.org"},
]


@pytest.fixture(scope="module")
def lab() -> dict[str, Any]:
    with netns("rdnsgate-exim") as name:
        etc = Path("/etc/netns") / name
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        (etc / "passwd").write_text(passwd + "Debian-exim:x:65534:65534:Exim (test):/nonexistent:/usr/sbin/nologin\n")
        (etc / "group").write_text(group + "Debian-exim:x:65534:\n")
        done = run_in(name, ["tests/harness/exim_lab.py", str(EXIM), json.dumps(SCENARIOS)], timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_good_client_is_accepted_through_exim(lab: dict[str, Any]) -> None:
    for profile in ("strict", "classic", "monitor"):
        replies = lab[profile]["all-good"]
        assert replies["rcpt"][0] == 250, (profile, replies, lab["_logs"][profile])
        assert replies["data"][0] == 250, (profile, replies)
        assert lab[profile]["bounce"]["rcpt"][0] == 250, (profile, lab[profile]["bounce"])


def test_a_client_without_ptr_is_refused_with_the_profiles_reply(lab: dict[str, Any]) -> None:
    strict = lab["strict"]["no-ptr"]
    assert strict["rcpt"][0] == 550 and strict["rcpt"][1].startswith("5.7.25 "), (strict, lab["_logs"]["strict"])
    assert lab["strict"]["ptr-mismatch"]["rcpt"][0] == 550
    assert lab["strict"]["null-mx"]["rcpt"][:1] == [550] and lab["strict"]["null-mx"]["rcpt"][1].startswith("5.7.27")
    # classic: 501 and the connection closed (Exim's drop)
    classic = lab["classic"]["no-ptr"]
    assert classic["rcpt"][0] == 501 and "PTR" in classic["rcpt"][1], (classic, lab["_logs"]["classic"])
    # monitor refuses nothing, and adds the header to the message Exim queues
    assert lab["monitor"]["no-ptr"]["data"][0] == 250
    assert "Authentication-Results: mx.example.net; iprev=permerror policy.iprev=127.0.10.2" in lab["monitor_headers"]


def test_exims_log_names_the_refusal(lab: dict[str, Any]) -> None:
    assert "rejected RCPT <alice@example.net>: 550 5.7.25" in lab["_logs"]["strict"]


def test_the_whitelist_and_decision_log_are_rdnsgates(lab: dict[str, Any]) -> None:
    assert "127.0.10.2" in lab["whitelist"], lab["whitelist"]
    assert lab["after_whitelist"]["rcpt"][0] == 250, lab["after_whitelist"]
    assert lab["after_whitelist"]["data"][0] == 250
    rows = [json.loads(line) for line in lab["decisions"].splitlines() if line.strip()]
    actions = [row["action"] for row in rows]
    assert "reject" in actions and "accept" in actions, lab["decisions"]
    assert any(row.get("whitelisted") for row in rows), lab["decisions"]


def test_rdnsgate_away_defers_never_accepts_unchecked(lab: dict[str, Any]) -> None:
    away = lab["rdnsgate_away"]
    assert away["rcpt"][0] == 451 and "rdnsgate is not answering" in away["rcpt"][1], away
