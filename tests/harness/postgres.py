"""A throw-away PostgreSQL server: Debian's binaries, `initdb` in a temp dir, a free loopback port.

PostgreSQL refuses to run as root, so when the tests run as root the cluster
belongs to an unprivileged user (Debian's ``postgres`` system user, else
``nobody``) and its programs run as that user; otherwise they run as the
current user.  Durability is off (fsync, synchronous commit): the cluster
lives for one test run.  `stop` and `start` may be repeated on the same data
and port, to play a database that goes away and comes back.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness.knot import free_port


def bindir() -> Path:
    """The newest PostgreSQL server binaries Debian installed (/usr/lib/postgresql/VERSION/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda path: int(path.parent.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries: install Debian's postgresql package (make test does)")
    return found[-1].parent


def _owner() -> pwd.struct_passwd | None:
    """The unprivileged user the cluster runs as when we are root; None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to own the cluster")


SERVER_OPTIONS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200")


class PostgresServer:
    USER = "rdnsgate"

    def __init__(self) -> None:
        self.bin = bindir()
        self.owner = _owner()
        # Not under pytest's tmp dir: that is private to root, and the cluster's owner must reach it.
        self.workdir = Path(tempfile.mkdtemp(prefix="rdnsgate-pg-"))
        self.data = self.workdir / "data"
        self.sockets = self.workdir / "run"
        self.port = free_port()
        self.address = "127.0.0.1"
        self.process: subprocess.Popen[bytes] | None = None
        self._databases = 0

    def _as_owner(self) -> dict[str, Any]:
        if self.owner is None:
            return {}
        return {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.workdir,
            **self._as_owner(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def init(self) -> PostgresServer:
        self.sockets.mkdir()
        if self.owner is not None:
            os.chown(self.workdir, self.owner.pw_uid, self.owner.pw_gid)
            os.chown(self.sockets, self.owner.pw_uid, self.owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", self.USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> PostgresServer:
        log = open(self.workdir / "postgres.log", "ab")  # noqa: SIM115 - handed to the server, closed below
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.sockets),
                *(arg for option in SERVER_OPTIONS for arg in ("-c", option)),
                "-c",
                f"listen_addresses={self.address}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            **self._as_owner(),
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.process.returncode}):\n{self.log()[-2000:]}")
            ready = subprocess.run(
                [str(self.bin.parent / "bin" / "pg_isready"), "-q", "-h", self.address, "-p", str(self.port)],
                timeout=10,
            )
            if ready.returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready within 30 s:\n{self.log()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are ended, nothing waits for clients)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.USER}@{self.address}:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its URL."""
        self._databases += 1
        name = f"{prefix}{self._databases}"
        self._run("psql", "-X", "-q", "-h", self.address, "-p", str(self.port), "-U", self.USER, "-d", "postgres",
                  "-c", f'CREATE DATABASE "{name}"')  # fmt: skip
        return self.url(name)

    def psql(self, database_url: str, sql: str) -> str:
        """Run `sql` with psql on the database of `database_url`; its unaligned output."""
        return self._run("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database_url, "-c", sql)

    def log(self) -> str:
        try:
            return (self.workdir / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Stores:
    """Fresh stores of one kind for a test module: SQLite files, or databases on one PostgreSQL server."""

    def __init__(self, kind: str, server: PostgresServer | None = None) -> None:
        self.kind = kind
        self.server = server

    def url(self, workdir: Path) -> str:
        """A new, empty store (for SQLite: `rdnsgate.db` in `workdir`)."""
        if self.server is None:
            return f"sqlite:///{workdir / 'rdnsgate.db'}"
        return self.server.create_database()

    def __repr__(self) -> str:
        return self.kind


class Pgbouncer:
    """pgbouncer in transaction mode in front of `server` (Debian's package), on a free loopback port."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.port = free_port()
        self.workdir = server.workdir / "pgbouncer"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Pgbouncer:
        self.workdir.mkdir(exist_ok=True)
        (self.workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.server.address} port={self.server.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {self.server.address}\nlisten_port = {self.port}\n"
            f"unix_socket_dir =\nauth_type = trust\nauth_file = {self.workdir / 'users.txt'}\n"
            "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 100\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\n"
        )
        (self.workdir / "users.txt").write_text(f'"{PostgresServer.USER}" ""\n')
        if self.server.owner is not None:
            for path in (self.workdir, *self.workdir.iterdir()):
                os.chown(path, self.server.owner.pw_uid, self.server.owner.pw_gid)
        self.process = subprocess.Popen(
            [shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", str(self.workdir / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self.server._as_owner(),
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.server.address, self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start:\n{self.log()}") from None
                time.sleep(0.05)

    def url(self, database_url: str) -> str:
        """`database_url` (of the server), reached through pgbouncer instead."""
        return database_url.replace(f":{self.server.port}/", f":{self.port}/")

    def log(self) -> str:
        try:
            return (self.workdir / "pgbouncer.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
