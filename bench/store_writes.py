"""Benchmark: the decision log on SQLite and on PostgreSQL, same run.

1. The writer's capacity: one process records N decisions as fast as it can
   (`DecisionLog.record`, as the gateway does), the writer stores them in
   batches; records/s until the last is stored, for each store.
2. A gateway under load with each store: ``rdnsgate serve gateway`` (profile
   classic, next hop ``smtp-sink``) fed by ``smtp-source`` (1 KiB messages,
   one connection each, 20 in parallel), the two gateways alternating, five
   runs each; msgs/s (median and spread), and whether the decision log kept
   up (every message's record stored, none dropped).

knotd serves 127.0.0.1's PTR on a free loopback port; PostgreSQL is a
throw-away cluster (tests/harness/postgres.py) with Debian's defaults but
fsync on, as a real one.  Results go to BENCHMARKS.md between the
store-benchmark markers.

    make bench-store
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import need_tools, write_section  # noqa: E402
from bench.gateway_vs_postfix import smtp_source, zones  # noqa: E402
from rdnsgate.config import StorageSettings  # noqa: E402
from rdnsgate.model import DecisionRecord  # noqa: E402
from rdnsgate.policy.decision_log import DecisionLog  # noqa: E402
from rdnsgate.storage import open_store  # noqa: E402
from tests.harness import postgres as pg  # noqa: E402
from tests.harness.knot import KnotServer, free_port  # noqa: E402
from tests.harness.smtp import GatewayProcess, wait_port  # noqa: E402

CHECKS = {
    "iprev": {"result": "pass", "reason": "confirmed", "detail": "client.bench.example confirms 127.0.0.1"},
    "helo": {"result": "pass", "reason": "exists", "detail": "client.bench.example has A"},
    "sender": {"result": "pass", "reason": "mx", "detail": "bench.example has MX"},
}


async def writer_capacity(url: str, count: int) -> float:
    """Records/s from the first `record` to the last row stored."""
    store = await open_store(StorageSettings(url=url))
    log = DecisionLog(store, maxsize=count)
    log.start()
    now = datetime.now(UTC)
    records = [
        DecisionRecord(now, f"s{n}", "127.0.0.1", "client.bench.example", "client.bench.example",
                       "sender@bench.example", ("rcpt@bench.example",), "classic", "accept", None, None, CHECKS)
        for n in range(count)
    ]  # fmt: skip
    try:
        start = time.perf_counter()
        for record in records:
            log.record(record)
        while log.written < count:
            if log.store_error:
                raise SystemExit(f"the store refused decisions: {log.store_error}")
            await asyncio.sleep(0.005)
        return count / (time.perf_counter() - start)
    finally:
        await log.close()
        await store.close()


async def stored(url: str) -> int:
    store = await open_store(StorageSettings(url=url), migrate=False)
    try:
        return await store.decisions_count()
    finally:
        await store.close()


def gateway(workdir: Path, port: int, knot: KnotServer, sink: int, url: str) -> GatewayProcess:
    return GatewayProcess(
        workdir,
        f"""
[dns]
nameservers = ["{knot.nameserver}"]
canaries = ["client.bench.example"]
[gateway]
listen = ["127.0.0.1:{port}"]
profile = "classic"
next_hop = "smtp://127.0.0.1:{sink}"
relay_domains = ["bench.example"]
hostname = "gw.bench.example"
max_sessions = 5000
max_sessions_per_ip = 5000
[storage]
url = "{url}"
""",
        port=port,
    )


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000, help="decisions per writer run")
    parser.add_argument("--messages", type=int, default=2000, help="messages per gateway run")
    parser.add_argument("--runs", type=int, default=5, help="runs of each side, alternating")
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    args = parser.parse_args()
    need_tools(["smtp-source", "smtp-sink", "knotd"], "make bench-store installs them")
    load_before = os.getloadavg()
    pg.SERVER_OPTIONS = ("max_connections=200",)  # durability as shipped: fsync and synchronous commit on
    with tempfile.TemporaryDirectory(prefix="rdnsgate-bench-store-") as tmp:
        workdir = Path(tmp)
        server = pg.PostgresServer().init().start()
        knot = KnotServer(workdir / "knot", zones()).start()
        sink_port = free_port()
        sink_command = ["smtp-sink", *(["-u", "nobody"] if os.geteuid() == 0 else []), f"127.0.0.1:{sink_port}", "1000"]
        sink = subprocess.Popen(sink_command, stdout=subprocess.DEVNULL)
        urls = {"SQLite": f"sqlite:///{workdir / 'writer.db'}", "PostgreSQL": server.create_database("writer")}
        capacity: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(args.runs):
            for name, url in urls.items():
                capacity[name].append(asyncio.run(writer_capacity(url, args.records)))
        stores = {
            "SQLite": f"sqlite:///{workdir / 'gw-sqlite' / 'rdnsgate.db'}",
            "PostgreSQL": server.create_database("gw"),
        }
        gateways = {
            name: gateway(workdir / f"gw-{name.lower()}", free_port(), knot, sink_port, url)
            for name, url in stores.items()
        }
        rates: dict[str, list[float]] = {name: [] for name in stores}
        kept_up: dict[str, str] = {}
        try:
            wait_port("127.0.0.1", sink_port)
            for process in gateways.values():
                process.start()
                smtp_source(process.port, 200)  # warm-up
            for _ in range(args.runs):
                for name, process in gateways.items():
                    rates[name].append(smtp_source(process.port, args.messages))
            sent = 200 + args.runs * args.messages
            time.sleep(2)  # the last batch
            for name, url in stores.items():
                count = asyncio.run(stored(url))
                dropped = gateways[name].log().count("decision records dropped")
                kept_up[name] = f"{count:,} of {sent:,} stored" + (", drops logged" if dropped else ", none dropped")
        finally:
            for process in gateways.values():
                process.stop()
            sink.send_signal(signal.SIGTERM)
            sink.wait(10)
            knot.stop()
            server.remove()
    load_after = os.getloadavg()
    ratio = [p / s for p, s in zip(rates["PostgreSQL"], rates["SQLite"], strict=True)]
    section = "\n".join(
        [
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores; load average "
            f"{load_before[0]:.2f} before, {load_after[0]:.2f} after. `make bench-store`: "
            f"{args.runs} runs of each, alternating; median (lowest–highest).",
            "",
            "| | SQLite (WAL) | PostgreSQL 15 (local, fsync on) |",
            "|---|---|---|",
            f"| decision log writer, records/s ({args.records:,} per run, batches of 200) "
            f"| {spread(capacity['SQLite'])} | {spread(capacity['PostgreSQL'])} |",
            f"| gateway under smtp-source, msgs/s ({args.messages:,} per run, 20 sessions) "
            f"| {spread(rates['SQLite'])} | {spread(rates['PostgreSQL'])} |",
            f"| decision log kept up | {kept_up['SQLite']} | {kept_up['PostgreSQL']} |",
            "",
            f"Gateway msgs/s with PostgreSQL / with SQLite, run by run: {', '.join(f'{r:.2f}' for r in ratio)} "
            f"(median {statistics.median(ratio):.2f}×).",
        ]
    )
    print(section)
    if not args.no_write:
        write_section("store-benchmark", "Decision log: SQLite vs PostgreSQL", section)


if __name__ == "__main__":
    main()
