"""Benchmark: the rdnsgate gateway vs Postfix 3.7 with reject_unknown_client_hostname, same run.

Postfix resolves through the system resolver library, so everything runs in a
network namespace of this script's own (``ip netns add``), whose
``/etc/netns/NAME/resolv.conf`` points at a knotd serving the client's reverse
and forward zone on the namespace's loopback.  Inside it:

- knotd on 127.0.0.1:53 (127.0.0.1 has PTR client.bench.example, A back);
- ``smtp-sink`` on 127.0.0.1:2600, the next hop of both;
- ``rdnsgate serve gateway`` on 127.0.0.1:2525 (profile classic, uvloop);
- a throw-away Postfix (its own config and queue directories; never the
  system's) on 127.0.0.1:2526 with ``smtpd_client_restrictions =
  reject_unknown_client_hostname``, relaying to the same smtp-sink.

``smtp-source`` sends 1 KiB messages, one connection each, 20 in parallel, to
the gateway with one worker per core, the gateway with one worker, and Postfix,
in rounds whose order rotates, after a warm-up; every Postfix run waits until
its queue is delivered (smtp-source counts a message once queued, so that
delivery would overlap the next run); with ``--tmpfs`` Postfix's queue lives
on a tmpfs (steadier, but without the fsync it pays on a mail host). The
medians count, each round's ratio beside them.  Then 1,000 idle sessions are
opened to the gateway and its memory is read.  Results go to BENCHMARKS.md
between the gateway markers.

    make bench-gateway            # as root
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Quiet,
    in_memory,
    need_root,
    need_tools,
    on_disk,
    run_in_netns,
    wait_until_quiet,
    write_section,
)
from tests.harness.knot import KnotServer, Zone  # noqa: E402
from tests.harness.postfix import PostfixInstance  # noqa: E402
from tests.harness.smtp import GatewayProcess, wait_port  # noqa: E402

SINK, GATEWAY, POSTFIX, SINGLE = 2600, 2525, 2526, 2527


def zones() -> list[Zone]:
    reverse = Zone("0.0.127.in-addr.arpa").add("1", "PTR", "client.bench.example.")
    forward = Zone("bench.example").add("client", "A", "127.0.0.1").add("@", "MX", "10 client.bench.example.")
    return [reverse, forward]


def smtp_source(port: int, messages: int, cpus: str | None = None) -> float:
    """Messages per second of one smtp-source run (20 sessions, 1 KiB, one connection per message), on `cpus`."""
    command = [
        *(["taskset", "-c", cpus] if cpus else []),
        "smtp-source",
        "-s",
        "20",
        "-m",
        str(messages),
        "-l",
        "1024",
        "-M",
        "client.bench.example",
        "-f",
        "sender@bench.example",
        "-t",
        "rcpt@bench.example",
        f"127.0.0.1:{port}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"smtp-source to port {port} failed: {proc.stderr[-2000:]}")
    return messages / elapsed


def rss_kib(pid: int) -> int:
    """Proportional resident memory (PSS: shared pages split) of `pid` and its descendants (the workers)."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            total += int(line.split()[1])
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += rss_kib(int(child))
    return total


def idle_sessions_rss(pid: int, count: int) -> tuple[int, int]:
    """RSS (KiB) of the gateway before and with `count` idle sessions that have seen the banner."""
    before = rss_kib(pid)
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", GATEWAY), timeout=10)
            sockets.append(sock)
        for sock in sockets:
            if not sock.recv(512).startswith(b"220"):
                raise RuntimeError("no banner")
        time.sleep(1.0)
        return before, rss_kib(pid)
    finally:
        for sock in sockets:
            sock.close()


def gateway_settings(port: int, workers: int) -> str:
    return f"""
[dns]
nameservers = ["127.0.0.1:53"]
canaries = ["client.bench.example"]
[gateway]
listen = ["127.0.0.1:{port}"]
profile = "classic"
next_hop = "smtp://127.0.0.1:{SINK}"
relay_domains = ["bench.example"]
hostname = "gw.bench.example"
max_sessions = 5000
max_sessions_per_ip = 5000
workers = {workers}
[storage]
url = "sqlite:///rdnsgate.db"
"""


def inside(args: argparse.Namespace) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    workers = args.workers or os.cpu_count() or 1
    place = in_memory if args.tmpfs else on_disk
    quiet = wait_until_quiet(args.wait)
    with place("rdnsgate-bench-gw-") as workdir:
        knot = KnotServer(workdir / "knot", zones(), address="127.0.0.1", port=53).start()
        sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{SINK}", "1000"], stdout=subprocess.DEVNULL)
        gateway = GatewayProcess(workdir / "gateway", gateway_settings(GATEWAY, workers), port=GATEWAY)
        single = GatewayProcess(workdir / "gateway-1", gateway_settings(SINGLE, 1), port=SINGLE)
        postfix = PostfixInstance(
            workdir / "postfix",
            POSTFIX,
            {
                "myhostname": "pf.bench.example",
                "relay_domains": "bench.example",
                "relayhost": f"[127.0.0.1]:{SINK}",
                "smtpd_client_restrictions": "reject_unknown_client_hostname",
            },
        )
        sides = {"gateway": GATEWAY, "single": SINGLE, "postfix": POSTFIX}
        try:
            wait_port("127.0.0.1", SINK)
            gateway.start()
            single.start()
            postfix.start()
            wait_port("127.0.0.1", POSTFIX)
            for port in sides.values():
                smtp_source(port, 300)  # warm-up: caches, connections, imports
            postfix.wait_delivered()
            rates: dict[str, list[float]] = {name: [] for name in sides}
            order = list(sides)
            for _ in range(args.runs):
                for name in order:
                    rates[name].append(smtp_source(sides[name], args.messages))
                    # Postfix counts a message once queued; its delivery must not overlap the next run
                    postfix.wait_delivered()
                order = order[1:] + order[:1]
            assert gateway.proc is not None
            if args.profile:
                spy = subprocess.Popen(
                    ["py-spy", "record", "-o", args.profile, "-f", "raw", "-r", "500", "-p", str(gateway.proc.pid),
                     "-d", "8", "--subprocesses"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                smtp_source(GATEWAY, args.messages)
                spy.wait()
            before, idle = idle_sessions_rss(gateway.proc.pid, 1000)
            logs = gateway.log() + single.log()
            refused = logs.count('"action":"reject"') + logs.count('"action":"tempfail"')
            postfix_log = postfix.log()
            if refused or "NOQUEUE: reject" in postfix_log:
                raise SystemExit(
                    f"refusals during the benchmark: gateway {refused}, postfix {postfix_log.count('NOQUEUE: reject')}"
                )
        finally:
            postfix.stop()
            gateway.stop()
            single.stop()
            sink.send_signal(signal.SIGTERM)
            sink.wait(10)
            knot.stop()
    section = table(rates, before, idle, workers, args, quiet)
    print(section)
    if not args.no_write:
        write_section("gateway-benchmark", "Gateway: rdnsgate vs Postfix", section)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def table(
    rates: dict[str, list[float]], before: int, idle: int, workers: int, args: argparse.Namespace, quiet: Quiet
) -> str:
    def ratio(name: str) -> str:
        each = [ours / theirs for ours, theirs in zip(rates[name], rates["postfix"], strict=True)]
        return f"**{statistics.median(each):.2f}×** ({', '.join(f'{value:.2f}' for value in each)})"

    return "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores with `make bench-gateway` "
            f"({quiet.words()}): "
            f"`smtp-source -s 20 -m {args.messages} -l 1024`, one connection per message, next hop `smtp-sink`; "
            f"{args.runs} rounds, the order rotating, after a warm-up; each Postfix run waits until its mail is "
            f"delivered; {'everything on a tmpfs' if args.tmpfs else 'Postfix queues on the disk, as it runs'}. "
            "Median (lowest–highest) msgs/s:",
            "",
            "| server | msgs/s | ratio to Postfix, median (each round) |",
            "|---|---:|---|",
            f"| Postfix 3.7 with `reject_unknown_client_hostname` | {spread(rates['postfix'])} | |",
            f"| `rdnsgate serve gateway` (classic, uvloop, {workers} workers) | {spread(rates['gateway'])} "
            f"| {ratio('gateway')} |",
            f"| `rdnsgate serve gateway` (1 worker) | {spread(rates['single'])} | {ratio('single')} |",
            "",
            f"Gateway memory ({workers} workers, PSS of all its processes): {before / 1024:.1f} MiB at rest, "
            f"{idle / 1024:.1f} MiB with 1,000 idle sessions (banner sent, waiting for EHLO): "
            f"{(idle - before) / 1000:.1f} KiB per session.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds to wait for a quiet machine at most")
    parser.add_argument(
        "--tmpfs", action="store_true", help="Postfix's queue on a tmpfs (no fsync: steadier, but not how it runs)"
    )
    parser.add_argument("--workers", type=int, default=0, help="gateway.workers (default 0: one per core)")
    parser.add_argument("--profile", default="", help="py-spy raw profile of the gateway under load to this file")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args)
        return
    need_root("the benchmark makes a network namespace and starts Postfix")
    need_tools(
        ("postfix", "smtp-source", "smtp-sink", "ip", "knotd"), "make bench-gateway installs postfix, knot, iproute2"
    )
    forwarded = ["--runs", str(args.runs), "--messages", str(args.messages), "--workers", str(args.workers)]
    forwarded += ["--wait", str(args.wait)]
    forwarded += ["--tmpfs"] if args.tmpfs else []
    forwarded += ["--no-write"] if args.no_write else []
    forwarded += ["--profile", args.profile] if args.profile else []
    run_in_netns("rdnsgate-bench-gw", __file__, forwarded)


if __name__ == "__main__":
    main()
