"""A real authoritative DNS server (Knot DNS) for tests and benchmarks.

`KnotServer` writes a knotd configuration and zone files into a directory of
its own, starts ``knotd`` on a loopback address and port, waits until every
zone answers, and stops it by PID.  Records change during a test through
RFC 2136 dynamic updates (`KnotServer.update`), exactly as a provider's
control panel would change them.

Zones are plain zone-file text; `Zone` builds that text from records so tests
read like the DNS data they describe.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.update

KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host`, below the kernel's ephemeral range.

    A port the kernel picks for port 0 comes from the ephemeral range, which
    every outgoing connection (a database pool, an SMTP client) also draws
    from: between this call and the server's bind, one of them could take it.
    Below that range only an explicit bind takes a port, and this process
    never hands the same one out twice.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    top = _ephemeral_floor() - 1
    for _ in range(200):
        port = random.randint(max(1024, top - 12000), top)
        if port in _HANDED_OUT:
            continue
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as udp, socket.socket(family, socket.SOCK_STREAM) as tcp:
                udp.bind((host, port))
                tcp.bind((host, port))
        except OSError:
            continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port on {host}")


@dataclass
class Zone:
    """One zone's data, rendered to zone-file text by `text()`."""

    origin: str
    soa_minimum: int = 300
    ttl: int = 3600
    records: list[str] = field(default_factory=list)

    def add(self, owner: str, rtype: str, rdata: str, ttl: int | None = None) -> Zone:
        """Add a record; `owner` relative to the origin or absolute (ending in '.')."""
        self.records.append(f"{owner} {ttl if ttl is not None else self.ttl} IN {rtype} {rdata}")
        return self

    def text(self) -> str:
        origin = self.origin.rstrip(".") + "."
        head = [
            f"$ORIGIN {origin}",
            f"$TTL {self.ttl}",
            f"@ {self.ttl} IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 {self.soa_minimum}",
            f"@ {self.ttl} IN NS ns.{origin}",
        ]
        return "\n".join(head + self.records) + "\n"


class KnotServer:
    """A knotd process serving `zones` on `address`:`port` over UDP and TCP."""

    def __init__(
        self,
        workdir: Path,
        zones: Iterable[Zone],
        address: str = "127.0.0.1",
        port: int | None = None,
        udp_workers: int = 1,
    ) -> None:
        self.workdir = Path(workdir)
        self.zones = {z.origin.rstrip(".").lower(): z for z in zones}
        self.address = address
        self.port = port if port is not None else free_port(address)
        self.udp_workers = udp_workers
        self.proc: subprocess.Popen[bytes] | None = None

    # -- files -------------------------------------------------------------
    @property
    def conf_path(self) -> Path:
        return self.workdir / "knot.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "knotd.log"

    def _write_files(self) -> None:
        zonedir = self.workdir / "zones"
        for sub in ("zones", "db", "run"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        for origin, zone in self.zones.items():
            (zonedir / f"{origin}.zone").write_text(zone.text())
        zone_lines = "".join(f"  - domain: {origin}.\n" for origin in self.zones)
        self.conf_path.write_text(
            f"""server:
    rundir: "{self.workdir / "run"}"
    listen: {self.address}@{self.port}
    udp-workers: {self.udp_workers}
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{self.workdir / "db"}"
log:
  - target: stderr
    any: info
control:
    listen: "{self.workdir / "run" / "knot.sock"}"
acl:
  - id: local_update
    address: [127.0.0.0/8, ::1]
    action: update
template:
  - id: default
    storage: "{zonedir}"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
    acl: local_update
zone:
{zone_lines}"""
        )

    # -- life cycle --------------------------------------------------------
    def start(self, timeout: float = 15.0) -> KnotServer:
        self._write_files()
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [KNOTD, "-c", str(self.conf_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        pending = set(self.zones)
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"knotd exited with {self.proc.returncode}:\n{self.log()}")
            if "failed to load zone" in self.log():
                self.stop()
                raise RuntimeError(f"knotd could not load a zone:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"knotd did not serve {sorted(pending)} in {timeout}s:\n{self.log()}")
            for origin in list(pending):
                if self._answers_soa(origin):
                    pending.discard(origin)
            if pending:
                time.sleep(0.05)
        return self

    def _answers_soa(self, origin: str) -> bool:
        query = dns.message.make_query(origin + ".", dns.rdatatype.SOA)
        try:
            reply = dns.query.udp(query, self.address, port=self.port, timeout=0.3)
        except (OSError, dns.exception.Timeout):
            return False
        return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> KnotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- dynamic updates (RFC 2136) ------------------------------------------
    def update(
        self,
        origin: str,
        *,
        delete: Sequence[tuple[str, str]] = (),
        add: Sequence[tuple[str, str, str]] = (),
        ttl: int = 60,
    ) -> None:
        """Delete whole RRsets (owner, type) and add records (owner, type, rdata).

        Owners are relative to `origin` or absolute.  Raises if knotd refuses.
        """
        upd = dns.update.UpdateMessage(origin.rstrip(".") + ".")
        for owner, rtype in delete:
            upd.delete(owner, rtype)
        for owner, rtype, rdata in add:
            upd.add(owner, ttl, rtype, rdata)
        reply = dns.query.tcp(upd, self.address, port=self.port, timeout=5)
        if reply.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"update of {origin} refused: {dns.rcode.to_text(reply.rcode())}")

    @property
    def nameserver(self) -> str:
        """The HOST:PORT form that `rdnsgate --nameserver` takes."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"
