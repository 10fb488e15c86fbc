"""`rdnsgate fleet` against knotd: a PTR changed by dynamic update drifts, then breaks, each confirmed twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness.faultdns import Fault, FaultResponder
from tests.harness.knot import KnotServer

IP = "192.0.2.60"
REV = "2.0.192.in-addr.arpa"


def fleet(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rdnsgate", "fleet", *args, "--config", str(config)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},  # one table row per server
    )


def state(config: Path) -> str:
    listing = fleet(config, "list").stdout
    row = next(line for line in listing.splitlines() if IP in line)
    return row.split()[2] if len(row.split()) > 2 else row


def test_ok_drift_broken_and_no_alarm_for_one_lost_answer(
    tmp_path: Path, knot: KnotServer, faults: FaultResponder, store_url: str
) -> None:
    config = tmp_path / "rdnsgate.toml"
    config.write_text(
        f'[dns]\nnameservers = ["{faults.nameserver}"]\ntimeout = 0.3\ntries = 2\ncache_size = 0\n'
        f'[storage]\nurl = "{store_url}"\n'
    )
    knot.update(REV, add=[("60", "PTR", "mta60.example.org.")])
    knot.update("example.org", add=[("mta60", "A", IP), ("mta60b", "A", IP)])
    try:
        assert fleet(config, "add", IP, "--helo", "mta60.example.org", "--label", "eu-1").returncode == 0
        assert "unknown" in fleet(config, "list").stdout
        alerts = [fleet(config, "status").stdout for _ in range(2)]
        assert "unknown -> ok" in alerts[1]
        faults.add(f"60.{REV}", "PTR", Fault.SERVFAIL)  # one lost answer: no alarm
        assert "->" not in fleet(config, "status").stdout
        faults.clear()
        assert "->" not in fleet(config, "status").stdout
        knot.update(REV, delete=[("60", "PTR")], add=[("60", "PTR", "mta60b.example.org.")])
        first = fleet(config, "status").stdout
        assert "->" not in first and "next: drift" in first
        assert "ok -> drift" in fleet(config, "status").stdout  # still passes, but the chain changed
        knot.update("example.org", delete=[("mta60b", "A")])
        fleet(config, "status")
        assert "drift -> broken" in fleet(config, "status").stdout
        assert "broken" in fleet(config, "list").stdout
        assert fleet(config, "remove", IP).returncode == 0
        assert "no servers are watched" in fleet(config, "list").stdout
    finally:
        knot.update(REV, delete=[("60", "PTR")])
        knot.update("example.org", delete=[("mta60", "A"), ("mta60b", "A")])
