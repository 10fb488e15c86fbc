"""Benchmark: ``rdnsgate audit`` of a /16 against ``adnslogres -c 100``, same knotd, same run.

Both tools verify every address's PTR name against its A record (adnslogres
prints the name only when the forward lookup confirms it, like iprev).  The
zone (bench/zones.py) holds 65,536 addresses of RFC 2544's benchmarking range,
about 10% of them broken.  adns cannot be given a port, so knotd listens on
port 53 of a loopback address of its own: run this as root.

Writes checks/s, CPU seconds per 1,000 checks and the ratio of the median runs (every run listed) into
BENCHMARKS.md (between the audit markers) and prints the same table.

    .venv/bin/python bench/audit_vs_adns.py [--runs 5] [--concurrency 100] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Quiet, need_root, need_tools, wait_until_quiet, write_section  # noqa: E402
from bench.zones import NETWORK, broken_kind, zones  # noqa: E402
from tests.harness.knot import KnotServer  # noqa: E402

ADDRESS = "127.0.53.1"
MARK = "audit-benchmark"


@dataclass
class Run:
    wall: float
    cpu: float
    checks: int

    @property
    def rate(self) -> float:
        return self.checks / self.wall

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu / self.checks * 1000


def timed(command: list[str], stdin: Path | None, stdout: Path) -> tuple[Run, subprocess.CompletedProcess[bytes]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(stdout, "wb") as out, open(stdin or os.devnull, "rb") as inp:
        proc = subprocess.run(command, stdin=inp, stdout=out, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, NETWORK.num_addresses), proc


def expected_broken() -> int:
    return sum(1 for index in range(NETWORK.num_addresses) if broken_kind(index))


def run_adns(workdir: Path) -> Run:
    log = workdir / "access.log"
    if not log.exists():
        with open(log, "w") as handle:
            for ip in NETWORK:
                handle.write(f'{ip} - - [23/Nov/2026:00:00:00 +0000] "GET / HTTP/1.0" 200 0\n')
    out = workdir / "adns.out"
    run, proc = timed(["adnslogres", "-c", "100", "-C", f"nameserver {ADDRESS}"], log, out)
    if proc.returncode != 0:
        raise SystemExit(f"adnslogres failed: {proc.stderr.decode(errors='replace')}")
    unresolved = sum(1 for line in out.read_text().splitlines() if line.startswith("198.18."))
    if unresolved != expected_broken():
        raise SystemExit(f"adnslogres left {unresolved} addresses unresolved, expected {expected_broken()}")
    return run


def run_rdnsgate(workdir: Path, concurrency: int, workers: int | None) -> Run:
    out = workdir / "audit.csv"
    command = [
        str(ROOT / ".venv" / "bin" / "rdnsgate"),
        "audit",
        str(NETWORK),
        "--nameserver",
        f"{ADDRESS}:53",
        "--concurrency",
        str(concurrency),
        "--format",
        "csv",
        "--no-progress",
    ]
    if workers is not None:
        command += ["--workers", str(workers)]
    run, proc = timed(command, None, out)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"rdnsgate audit failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    lines = out.read_text().splitlines()[1:]
    failing = sum(1 for line in lines if ",pass," not in line)
    if len(lines) != NETWORK.num_addresses or failing != expected_broken():
        raise SystemExit(f"rdnsgate audit: {len(lines)} rows, {failing} not passing; expected {expected_broken()}")
    return run


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda run: run.rate)[len(runs) // 2]


def table(adns_runs: list[Run], our_runs: list[Run], command: str, quiet: Quiet) -> str:
    adns, ours = median_run(adns_runs), median_run(our_runs)
    ratios = [mine.rate / theirs.rate for theirs, mine in zip(adns_runs, our_runs, strict=True)]
    cpu = os.cpu_count()

    def rates(runs: list[Run]) -> str:
        return ", ".join(f"{run.rate:,.0f}" for run in runs)

    return "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {cpu} cores with `{command}`: a cold audit of",
            f"{NETWORK} ({NETWORK.num_addresses:,} addresses, {expected_broken():,} broken) against one knotd,",
            f"{len(our_runs)} runs of each tool, alternating; {quiet.words()}.",
            "Each rdnsgate run is set against the adns run just before it; the median of those ratios counts.",
            "",
            "| tool | checks/s | CPU s per 1,000 checks | wall s |",
            "|---|---:|---:|---:|",
            f"| `adnslogres -c 100` (adns 1.6, C) | {adns.rate:,.0f} | {adns.cpu_per_1000:.3f} | {adns.wall:.2f} |",
            f"| `rdnsgate audit` | {ours.rate:,.0f} | {ours.cpu_per_1000:.3f} | {ours.wall:.2f} |",
            f"| **ratio rdnsgate / adns**, median of the runs' (each run) | "
            f"**{sorted(ratios)[len(ratios) // 2]:.3f}×** ({', '.join(f'{ratio:.3f}' for ratio in ratios)}) | "
            f"{ours.cpu_per_1000 / adns.cpu_per_1000:.1f}× the CPU | |",
            "",
            f"Every run, checks/s: adns {rates(adns_runs)}; rdnsgate {rates(our_runs)}.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None, help="rdnsgate audit --workers (default: its own)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds to wait for a quiet machine at most")
    args = parser.parse_args()
    need_root("adns asks port 53 only, so knotd must bind 127.0.53.1:53")
    need_tools(("adnslogres",), "apt-get install adns-tools; make bench does")
    # An installed rdnsgate has its bytecode compiled (pip does so at install); where PYTHONDONTWRITEBYTECODE
    # is set, every run would otherwise compile rdnsgate's modules again (~0.15 s of each run's start).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "rdnsgate")], check=True)
    quiet = wait_until_quiet(args.wait)
    with tempfile.TemporaryDirectory(prefix="rdnsgate-bench-") as tmp:
        workdir = Path(tmp)
        with KnotServer(workdir / "knot", zones(), address=ADDRESS, port=53, udp_workers=2):
            adns_runs, our_runs = [], []
            for _ in range(args.runs):
                adns_runs.append(run_adns(workdir))
                our_runs.append(run_rdnsgate(workdir, args.concurrency, args.workers))
                print(f"adns {adns_runs[-1].rate:,.0f}/s, rdnsgate {our_runs[-1].rate:,.0f}/s", flush=True)
    section = table(adns_runs, our_runs, "make bench", quiet)
    print(section)
    if not args.no_write:
        write_section(MARK, "Audit: rdnsgate vs adns", section)


if __name__ == "__main__":
    main()
