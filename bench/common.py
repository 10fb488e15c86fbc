"""What the three benchmarks share: root and tool checks, a re-run inside a network namespace, BENCHMARKS.md."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"


def need_root(why: str) -> None:
    if os.geteuid() != 0:
        raise SystemExit(f"run as root: {why}")


def need_tools(tools: Sequence[str], hint: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing ({hint})")


def run_in_netns(name: str, script: str, arguments: Sequence[str]) -> None:
    """Run `script` again with `arguments` plus ``--inside``, in a new network namespace called `name`."""
    from tests.harness.postfix import netns

    with netns(name) as namespace:
        subprocess.run(["ip", "netns", "exec", namespace, sys.executable, script, "--inside", *arguments], check=True)


@contextmanager
def in_memory(prefix: str) -> Iterator[Path]:
    """A temporary directory on a tmpfs of its own (inside the benchmark's network namespace, which
    `ip netns exec` gives a mount namespace too): queue files, zones and databases never wait on the disk,
    whose fsync times on a shared machine would swing the figures more than what is measured."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g,mode=755", "tmpfs", tmp], check=True)
        try:
            yield Path(tmp)
        finally:
            subprocess.run(["umount", "--lazy", tmp], check=False)


@contextmanager
def on_disk(prefix: str) -> Iterator[Path]:
    """A temporary directory on the disk (Postfix's queue fsyncs there, as on a mail host)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def cpu_times() -> dict[str, tuple[int, int]]:
    """Per CPU ("0", "1", ...): (busy, total) clock ticks since boot, from /proc/stat."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(value) for value in fields[:8]]
            idle = ticks[3] + ticks[4]  # idle and iowait
            times[name[3:]] = (sum(ticks) - idle, sum(ticks))
    return times


def busy_share(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], cpu: str) -> float:
    """The share of the time `cpu` was busy between two `cpu_times` readings."""
    busy = after[cpu][0] - before[cpu][0]
    total = after[cpu][1] - before[cpu][1]
    return busy / total if total else 0.0


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) that process `pid` and its threads have used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_section(mark: str, title: str, body: str) -> None:
    """Replace (or append) the BENCHMARKS.md section between ``<!-- mark:begin -->`` and ``<!-- mark:end -->``."""
    begin, end = f"<!-- {mark}:begin -->", f"<!-- {mark}:end -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body}\n{end}"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


QUIET_IDLE = 0.90  # a quiet machine: every CPU at least this idle over QUIET_SAMPLE seconds,
QUIET_LOAD = 1.0  # and a 1-minute load average at most this (it lags: nothing heavy in the last minute or so)
QUIET_SAMPLE = 5.0


@dataclass(frozen=True)
class Quiet:
    """How a benchmark began: the load averages then, how long it waited for them, and whether it got quiet."""

    load: tuple[float, float, float]
    waited: float
    quiet: bool

    def words(self) -> str:
        """ "load average 0.42 / 0.80 / 0.61 before (quiet after 95 s of waiting), 3.10 / ... after"."""
        load = " / ".join(f"{value:.2f}" for value in self.load)
        after = " / ".join(f"{value:.2f}" for value in os.getloadavg())
        if not self.quiet:
            state = f"the machine was not quiet after {self.waited:.0f} s of waiting: read these figures with care"
        elif self.waited >= 1:
            state = f"quiet after {self.waited:.0f} s of waiting"
        else:
            state = "quiet"
        return f"load average {load} before ({state}), {after} after"


def wait_until_quiet(limit: float) -> Quiet:
    """Wait (up to `limit` seconds) until every CPU is at least `QUIET_IDLE` idle over `QUIET_SAMPLE` seconds
    and the 1-minute load average is at most `QUIET_LOAD`: a benchmark that starts while the last one's
    processes are still ending, or beside other work, measures them too (BENCHMARKS.md, the policy service)."""
    start = time.monotonic()
    while True:
        before = cpu_times()
        time.sleep(QUIET_SAMPLE)
        after = cpu_times()
        idle = min(1 - busy_share(before, after, cpu) for cpu in after)
        load = os.getloadavg()
        waited = time.monotonic() - start - QUIET_SAMPLE
        if idle >= QUIET_IDLE and load[0] <= QUIET_LOAD:
            return Quiet(load, max(0.0, waited), True)
        if waited + QUIET_SAMPLE >= limit:
            print(f"the machine is not quiet (load average {load[0]:.2f}, least idle CPU {idle:.0%}); going on")
            return Quiet(load, waited, False)
        print(f"waiting for a quiet machine: load average {load[0]:.2f}, least idle CPU {idle:.0%}", flush=True)
