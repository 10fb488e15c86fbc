"""``rdnsgate audit`` over a range and a file, and a record changed by RFC 2136 update mid-test."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time

import pytest

from rdnsgate.checks.names import parse_ip
from tests.harness.faultdns import Fault, FaultResponder
from tests.harness.knot import KnotServer
from tests.integration.test_check_scenarios import SCENARIOS


def rdnsgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rdnsgate", *args], capture_output=True, text=True, timeout=120)


def test_audit_range_csv(knot: KnotServer) -> None:
    proc = rdnsgate("audit", "192.0.2.0/27", "--format", "csv", "--nameserver", knot.nameserver, "--timeout", "0.5")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 32
    by_ip = {row["ip"]: row for row in rows}
    assert by_ip["192.0.2.1"]["iprev"] == "pass" and by_ip["192.0.2.1"]["confirmed_name"] == "mail.example.org"
    assert (by_ip["192.0.2.2"]["iprev"], by_ip["192.0.2.2"]["reason"]) == ("permerror", "no-ptr")
    assert by_ip["192.0.2.5"]["reason"] == "ptr-mismatch"
    assert "audited 32 addresses" in proc.stderr and "no-ptr" in proc.stderr
    assert proc.returncode == 1


def test_audit_file_with_helo_jsonl(knot: KnotServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    listing = tmp_path / "ips.txt"
    listing.write_text(
        "# sending servers\n192.0.2.1 mail.example.org\n2001:db8::1\nnot-an-ip\n192.0.2.7 nxhost.example.org\n"
    )
    proc = rdnsgate("audit", "--file", str(listing), "--format", "jsonl", "--nameserver", knot.nameserver)
    rows = {row["ip"]: row for row in map(json.loads, proc.stdout.splitlines())}
    assert set(rows) == {"192.0.2.1", "2001:db8::1", "192.0.2.7"}
    assert rows["192.0.2.1"]["helo_result"] == "pass" and rows["192.0.2.1"]["helo_align"] == "pass"
    assert rows["192.0.2.7"]["iprev"] == "pass" and rows["192.0.2.7"]["helo_reason"] == "unknown"
    assert "not-an-ip" in proc.stderr and "skipped" in proc.stderr
    assert proc.returncode == 1


def test_dynamic_update_changes_the_verdict(knot: KnotServer) -> None:
    before = json.loads(rdnsgate("check", "192.0.2.40", "--json", "--nameserver", knot.nameserver).stdout)
    assert before["checks"]["iprev"]["reason"] == "no-ptr"
    assert before["recheck"]["after_seconds"] == 600  # the reverse zone's SOA minimum
    knot.update("2.0.192.in-addr.arpa", add=[("40", "PTR", "fixed40.example.org.")])
    knot.update("example.org", add=[("fixed40", "A", "192.0.2.40")])
    try:
        after = json.loads(rdnsgate("check", "192.0.2.40", "--json", "--nameserver", knot.nameserver).stdout)
        assert after["checks"]["iprev"]["result"] == "pass"
        assert after["chain"]["confirmed_name"] == "fixed40.example.org"
    finally:
        knot.update("2.0.192.in-addr.arpa", delete=[("40", "PTR")])
        knot.update("example.org", delete=[("fixed40", "A")])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_audit_agrees_with_check_on_every_scenario(faults: FaultResponder, tmp_path, workers: str) -> None:  # type: ignore[no-untyped-def]
    """Every scenario of `check` that the audit can express (an IP, maybe a HELO), all at once in one audit.

    The audit asks on callbacks (lookups/bulk.py) where `check` awaits a coroutine
    per question: the verdicts must be the same, faults included (timeouts,
    truncation, wrong IDs, CNAME loops, SERVFAIL).
    """
    chosen: dict[tuple[str, str], str] = {}  # (ip, helo) -> expected "iprev;helo"
    injected: dict[tuple[str, str], Fault] = {}
    for scenario in SCENARIOS:
        text, *rest = scenario.args
        ip = str(parse_ip(text))  # an IPv4-mapped address is audited as the IPv4 address
        if rest and (len(rest) != 2 or rest[0] != "--helo" or not rest[1] or " " in rest[1]):
            continue
        helo = rest[1] if rest else ""
        if any(injected.get((name, rtype), fault) is not fault for name, rtype, fault in scenario.faults):
            continue  # another scenario needs another fault on the same name
        if (ip, helo) in chosen:
            continue
        for name, rtype, fault in scenario.faults:
            injected[(name, rtype)] = fault
        chosen[(ip, helo)] = f"{scenario.iprev};{scenario.helo if helo else ''}"
    assert len(chosen) >= 60
    for (name, rtype), fault in injected.items():
        faults.add(name, rtype, fault)
    listing = tmp_path / "scenarios.txt"
    listing.write_text("".join(f"{ip} {helo}\n" for ip, helo in chosen))
    proc = rdnsgate(
        "audit", "--file", str(listing), "--format", "jsonl", "--nameserver", faults.nameserver,
        "--timeout", "0.3", "--tries", "2", "--workers", workers,
    )  # fmt: skip
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    got = {
        (row["ip"], row["helo"]): f"{row['iprev']}/{row['reason']};"
        + (f"{row['helo_result']}/{row['helo_reason']}" if row["helo"] else "")
        for row in rows
    }
    assert len(rows) == len(chosen), proc.stderr
    assert got == chosen


@pytest.mark.parametrize("workers", ["1", "2"])
def test_audit_rows_stream_while_a_check_still_waits(faults: FaultResponder, tmp_path, workers) -> None:  # type: ignore[no-untyped-def]
    """Rows are written in batches, but none waits long for one: a finished row is out while another
    address's lookup still waits for its timeouts (at least 6 s here), unbuffered output or not, in one
    process and from a worker process (both addresses go to one worker, in one batch)."""
    faults.add("3.2.0.192.in-addr.arpa", "PTR", Fault.TIMEOUT)
    listing = tmp_path / "two.txt"
    listing.write_text("192.0.2.1\n192.0.2.3\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdnsgate", "audit", "--file", str(listing), "--format", "csv", "--no-progress",
         "--nameserver", faults.nameserver, "--timeout", "3", "--tries", "2", "--workers", workers],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ip,iprev,")
        assert proc.stdout.readline().startswith("192.0.2.1,pass,confirmed,")
        first = time.monotonic()
        assert proc.stdout.readline().startswith("192.0.2.3,temperror,ptr-lookup,")
        assert time.monotonic() - first > 3  # the first row did not wait for the last
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_audit_into_a_closed_pipe_stops_soon_and_quietly(knot: KnotServer, workers: str) -> None:
    """`rdnsgate audit 198.18.0.0/16 | head -2`: the reader goes away, and the audit ends soon after,
    without a traceback, instead of checking the other 65,000 addresses for nobody."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdnsgate", "audit", "198.18.0.0/16", "--format", "csv", "--no-progress",
         "--nameserver", knot.nameserver, "--timeout", "0.5", "--workers", workers],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith("ip,iprev,")
        assert proc.stdout.readline().startswith("198.18.")  # from any batch (worker) that finished first
        proc.stdout.close()
        proc.wait(timeout=30)
        error = proc.stderr.read()
        assert "Traceback" not in error, error
        assert "audited 65,536 addresses" not in error
        assert proc.returncode == 1  # click's answer to a closed pipe (EPIPE), as for any command
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
