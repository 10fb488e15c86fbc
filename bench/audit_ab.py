"""A/B of a change to the audit: this checkout's ``rdnsgate audit`` against an earlier commit's, same knotd.

The earlier commit is checked out into a temporary git worktree; both audit
the benchmark's /16 (bench/zones.py) against one knotd on a free loopback
port (no root, no adns), alternating, `--rounds` times each, with the same
interpreter and virtualenv (each run imports its own checkout's package: the
worktree's is first on the path).  Prints each run's checks/s and CPU per
check (all processes of the audit) and the medians.  This is how
BENCHMARKS.md's "what the change bought" figures for the audit are made.

    .venv/bin/python bench/audit_ab.py COMMIT [--rounds 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import wait_until_quiet  # noqa: E402
from bench.zones import NETWORK, broken_kind, zones  # noqa: E402
from tests.harness.knot import KnotServer, free_port  # noqa: E402


def audit(checkout: Path, nameserver: str, workers: int) -> tuple[float, float]:
    """One audit of the /16 with `checkout`'s code: (checks/s, CPU µs per check)."""
    command = [sys.executable, "-m", "rdnsgate", "audit", str(NETWORK), "--workers", str(workers)]
    command += ["--nameserver", nameserver, "--format", "csv", "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    proc = subprocess.run(command, cwd=checkout, capture_output=True, check=False)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    failed = proc.stdout.count(b",fail,") + proc.stdout.count(b",permerror,")
    expected = sum(1 for index in range(NETWORK.num_addresses) if broken_kind(index))
    if proc.returncode not in (0, 1) or failed != expected:
        raise SystemExit(f"{checkout}: {failed} failed (expected {expected}): {proc.stderr.decode(errors='replace')}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return NETWORK.num_addresses / wall, cpu / NETWORK.num_addresses * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the code before the change (any git revision)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for a quiet machine")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rdnsgate-ab-") as tmp:
        before = Path(tmp) / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(before), args.commit], check=True
        )
        try:
            sides = {f"before ({args.commit})": before, "after (this checkout)": ROOT}
            for checkout in sides.values():  # bytecode first, as an installed package has it
                subprocess.run([sys.executable, "-m", "compileall", "-q", str(checkout / "rdnsgate")], check=True)
            quiet = wait_until_quiet(args.wait)
            port = free_port("127.0.0.1")
            with KnotServer(Path(tmp) / "knot", zones(), address="127.0.0.1", port=port, udp_workers=2) as knot:
                runs: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
                for _ in range(args.rounds):
                    for name, checkout in sides.items():
                        runs[name].append(audit(checkout, knot.nameserver, args.workers))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
    print(f"{NETWORK} ({NETWORK.num_addresses:,} addresses), --workers {args.workers}, {args.rounds} rounds "
          f"alternating; {quiet.words()}; load average now {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("| code | checks/s, median (each run) | CPU µs per check, median (each run) |")
    print("|---|---|---|")
    for name, results in runs.items():
        rates, cpus = [rate for rate, _ in results], [cpu for _, cpu in results]
        each_rate = ", ".join(f"{rate:,.0f}" for rate in rates)
        each_cpu = ", ".join(f"{cpu:.0f}" for cpu in cpus)
        print(
            f"| {name} | {statistics.median(rates):,.0f} ({each_rate}) | {statistics.median(cpus):.0f} ({each_cpu}) |"
        )


if __name__ == "__main__":
    main()
