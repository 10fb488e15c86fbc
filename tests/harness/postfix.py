"""A throw-away Postfix instance: its own configuration, queue and data directories, never the system's.

Postfix resolves through the libc resolver (resolv.conf), so a test or
benchmark runs it inside a network namespace whose ``/etc/netns/NAME/resolv.conf``
points at the knotd fixture.  `netns` makes such a namespace and runs a
command in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.harness.smtp import as_root

BASE = {
    "compatibility_level": "3.6",
    "mail_owner": "postfix",
    "setgid_group": "postdrop",
    "inet_interfaces": "loopback-only",
    "inet_protocols": "ipv4",
    "myhostname": "pf.example.net",
    "mydestination": "",
    "mynetworks": "127.0.0.1/32",
    "relay_domains": "example.net",
    "smtp_tls_security_level": "none",
    "smtpd_tls_security_level": "none",
    "smtpd_client_connection_count_limit": "0",
    "smtpd_client_connection_rate_limit": "0",
    "smtpd_client_message_rate_limit": "0",
    "default_process_limit": "200",
}


QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")  # where a message waits until it leaves


class PostfixInstance:
    def __init__(self, workdir: Path, port: int, settings: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.port = port
        self.config = workdir / "postfix"
        self.settings = {**BASE, **settings}

    @property
    def log_path(self) -> Path:
        return self.workdir / "postfix.log"

    def write(self) -> None:
        for sub in ("postfix", "spool", "data"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # the postfix user must reach its data directory
        for parent in self.workdir.parents:
            if parent == Path("/") or parent.stat().st_mode & 0o005 == 0o005:
                break
            parent.chmod(parent.stat().st_mode | 0o005)
        shutil.chown(self.workdir / "data", user="postfix", group="postfix")
        master = []
        for line in Path("/etc/postfix/master.cf").read_text().splitlines():
            if line.startswith("smtp      inet"):
                line = f"127.0.0.1:{self.port} inet n - n - - smtpd"
            master.append(line)
        (self.config / "master.cf").write_text("\n".join(master) + "\n")
        settings = {
            **self.settings,
            "queue_directory": str(self.workdir / "spool"),
            "data_directory": str(self.workdir / "data"),
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.workdir),
        }
        (self.config / "main.cf").write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))

    def _postfix(self, action: str, cpus: str | None = None) -> None:
        pinned = ["taskset", "-c", cpus] if cpus else []
        proc = subprocess.run([*pinned, "postfix", "-c", str(self.config), action], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(self.log_path.read_text().splitlines()[-10:]) if self.log_path.exists() else ""
            raise RuntimeError(f"postfix {action} failed: {proc.stderr.strip()}\n{tail}")

    def start(self, cpus: str | None = None) -> PostfixInstance:
        """Check and start it; with `cpus` (taskset's list), its master and every process it starts run there."""
        self.write()
        self._postfix("check")
        self._postfix("start", cpus=cpus)
        return self

    def wait_delivered(self, timeout: float = 300.0) -> float:
        """Wait until every message it accepted has left its queue; the seconds waited."""
        start = time.monotonic()
        while True:
            listing = subprocess.run(["postqueue", "-c", str(self.config), "-p"], capture_output=True, text=True)
            if "Mail queue is empty" in listing.stdout:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{self.workdir}: queue not empty after {timeout:.0f} s:\n{listing.stdout[-500:]}")
            time.sleep(0.2)

    def queued(self) -> int:
        """Messages in its queue now (accepted, not yet delivered or bounced): its queue files, counted without
        a Postfix command, so that it can be asked every few milliseconds."""
        spool = self.workdir / "spool"
        return sum(len(files) for queue in QUEUES for _path, _dirs, files in os.walk(spool / queue))

    def wait_emptied(self, timeout: float = 300.0, every: float = 0.005) -> float:
        """Wait until its queue is empty, looking every `every` seconds; the seconds waited."""
        start = time.monotonic()
        while self.queued():
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{self.workdir}: {self.queued()} messages still queued after {timeout:.0f} s")
            time.sleep(every)
        return time.monotonic() - start

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config), "stop"], capture_output=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def netns(prefix: str = "rdnsgate") -> Iterator[str]:
    """A network namespace of our own, with loopback up and resolv.conf at 127.0.0.1; removed after."""
    name = f"{prefix}-{os.getpid()}"
    etc = Path("/etc/netns") / name
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
        shutil.rmtree(etc, ignore_errors=True)


def run_in(name: str, args: Sequence[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a Python module of this repository inside namespace `name`."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        ["ip", "netns", "exec", name, sys.executable, *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn_service(service: str, config_text: str, workdir: Path) -> subprocess.Popen[bytes]:
    """``rdnsgate serve SERVICE`` with `config_text` as its settings, logging to WORKDIR/SERVICE.log (labs)."""
    root = Path(__file__).resolve().parents[2]
    config = workdir / f"{service}.toml"
    config.write_text(config_text)
    with open(workdir / f"{service}.log", "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rdnsgate",
                "serve",
                service.split("-")[0],
                *as_root(["serve"]),
                "--config",
                str(config),
            ],
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
