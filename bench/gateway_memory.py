"""Benchmark: the gateway's memory while N clients each send a big message at the same time.

A knotd with the test zones, ``smtp-sink`` (Postfix's test server, which
throws mail away) as the next hop, and ``rdnsgate serve gateway`` (one
process).  Each run: the gateway's resident memory at rest, then N clients
(smtplib, in threads) each send one message of SIZE MB at once, while a
sampler reads the gateway's VmRSS every 10 ms; the peak minus the rest is the
growth, also given per message.  Every run is recorded, with the load average
before and after.

    make bench-memory             # 8 clients x 20 MB, 3 runs
"""

from __future__ import annotations

import argparse
import os
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import need_tools, write_section  # noqa: E402
from tests.data.zones import zones  # noqa: E402
from tests.harness.knot import KnotServer, free_port  # noqa: E402
from tests.harness.smtp import GatewayProcess, wait_port  # noqa: E402

MARK = "memory-benchmark"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def send(port: int, source: str, body: bytes) -> None:
    with smtplib.SMTP(source_address=(source, 0), timeout=120) as smtp:
        smtp.connect("127.0.0.1", port)
        smtp.ehlo("good1.example.org")
        refused = smtp.sendmail("bob@example.org", ["alice@example.net"], body)
        if refused:
            raise RuntimeError(f"refused: {refused}")


def one_run(pid: int, port: int, clients: int, body: bytes) -> tuple[int, int, float]:
    """(rest KiB, peak KiB, seconds) for `clients` messages at once."""
    rest = rss_kib(pid)
    peak = rest
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(send, port, "127.0.10.1", body) for _ in range(clients)]:
            future.result()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    return rest, peak, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size", type=float, default=20.0, help="MB per message")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    need_tools(("smtp-sink", "knotd"), "make bench-memory installs postfix and knot")
    line = b"x" * 76 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * int(args.size * 1_000_000 / len(line))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="rdnsgate-bench-mem-") as tmp:
        workdir = Path(tmp)
        knot = KnotServer(workdir / "knot", zones()).start()
        sink_port = free_port()
        sink_command = ["smtp-sink", f"127.0.0.1:{sink_port}", "100"]
        if os.geteuid() == 0:
            sink_command[1:1] = ["-u", "nobody"]
        sink = subprocess.Popen(sink_command, stdout=subprocess.DEVNULL)
        gateway = GatewayProcess(
            workdir / "gateway",
            f"""
[dns]
nameservers = ["{knot.address}:{knot.port}"]
canaries = ["good1.example.org"]
[gateway]
listen = ["127.0.0.1:{{port}}"]
profile = "classic"
next_hop = "smtp://127.0.0.1:{sink_port}"
relay_domains = ["example.net"]
hostname = "gw.example.net"
max_message_size = {int(args.size * 1_100_000) + 100_000}
[storage]
url = "sqlite:///rdnsgate.db"
""",
        )
        runs = []
        try:
            wait_port("127.0.0.1", sink_port)
            gateway.start()
            assert gateway.proc is not None
            send(gateway.port, "127.0.10.1", b"Subject: warm-up\r\n\r\nhello\r\n")
            for _ in range(args.runs):
                runs.append(one_run(gateway.proc.pid, gateway.port, args.clients, body))
        finally:
            gateway.stop()
            sink.terminate()
            sink.wait(10)
            knot.stop()
    load_after = os.getloadavg()
    rows = [
        f"| {number} | {rest / 1024:.1f} | {peak / 1024:.1f} | {(peak - rest) / 1024:.1f} | "
        f"{(peak - rest) / 1024 / args.clients:.1f} | {args.clients * len(body) / 1e6 / seconds:.0f} |"
        for number, (rest, peak, seconds) in enumerate(runs, 1)
    ]
    section = "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores with `make bench-memory`: "
            f"{args.clients} clients at once, each one message of {len(body) / 1e6:.1f} MB, through "
            "`rdnsgate serve gateway` (one process) to `smtp-sink`; the gateway's VmRSS sampled every 10 ms. "
            f"Load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.",
            "",
            "| run | at rest MiB | peak MiB | growth MiB | growth per message MiB | MB/s through |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    print(section)
    if not args.no_write:
        write_section(MARK, "Gateway memory under big messages", section)


if __name__ == "__main__":
    main()
