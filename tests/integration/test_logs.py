"""Logs an admin can use: one line per SMTP session, the fail2ban filter in contrib/ held to real lines
(Debian's `fail2ban-regex`), and `log.format = "json"`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness.faultdns import FaultResponder
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess, NextHop
from tests.integration.test_gateway import GOOD, NO_PTR, settings, transact

FILTER = Path(__file__).resolve().parents[2] / "contrib/fail2ban/filter.d/rdnsgate.conf"


def sessions(log: str) -> list[str]:
    return [line for line in log.splitlines() if "rdnsgate.smtp" in line]


@pytest.mark.skipif(shutil.which("fail2ban-regex") is None, reason="fail2ban-regex (Debian's fail2ban) is missing")
@pytest.mark.parametrize("form", ["text", "json"])
def test_one_line_per_session_and_fail2ban_finds_only_the_refused_client(
    tmp_path: Path, _responder: FaultResponder, stores: Stores, form: str
) -> None:
    hop = NextHop().start()
    text = settings(_responder.nameserver, hop.url, "classic", store=stores.url(tmp_path))
    gateway = GatewayProcess(tmp_path / "gw", text + f'[log]\nformat = "{form}"\n').start()
    try:
        assert transact(gateway, NO_PTR).code == 501
        assert transact(gateway, GOOD).code == 250
    finally:
        assert gateway.stop() == 0
        hop.stop()
    lines = sessions(gateway.log())
    assert len(lines) == 2, gateway.log()[-2000:]
    if form == "json":
        records = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
        assert all({"time", "level", "logger"} <= set(item) for item in records)
        decision = next(item for item in records if item.get("event") == "decision")
        assert decision["client_ip"] == NO_PTR and decision["action"] == "reject"
    refused = next(line for line in lines if f"[{NO_PTR}]" in line)
    assert re.search(r"client=unknown\[127\.0\.10\.2\] helo=<good1\.example\.org> from=<> to=<> action=reject", refused)
    accepted = next(line for line in lines if f"[{GOOD}]" in line)
    assert "from=<bob@example.org> to=<alice@example.net> action=accept" in accepted
    checked = subprocess.run(
        ["fail2ban-regex", "--print-all-matched", str(gateway.log_path), str(FILTER)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"Failregex: 1 total", checked.stdout) and re.search(r", 1 matched,", checked.stdout), (
        checked.stdout
    )
    matched = checked.stdout.split("Matched line(s):")[1].split("`-")[0]
    assert f"[{NO_PTR}]" in matched and f"[{GOOD}]" not in matched
