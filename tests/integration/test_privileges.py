"""Started as root on port 25: bind, then become `service.user`; without it, refuse unless --allow-root.

Inside a network namespace of the test's own (port 25 there is nobody
else's), ``rdnsgate serve gateway`` runs as root with ``service.user =
"nobody"``, one process and two workers; a client inside the namespace gets
the banner, and every serving process runs as nobody/nogroup with no
supplementary groups.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.harness.knot import free_port
from tests.harness.postfix import netns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it starts the service as root on port 25")

USER = "nobody"
ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def interpreter(first: Path | None = None) -> list[str]:
    """Debian's python3 with this checkout and its venv's packages: code the dropped user can read.

    The test venv's own interpreter may live in root's home (pyenv), which the user cannot enter; a real
    host runs rdnsgate from a system-wide install, as this does.  `first` goes before them on the path.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    probe = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True)  # fmt: skip
    if not SYSTEM_PYTHON.exists() or probe.stdout.strip() != str(sys.version_info[:2]):
        pytest.skip(f"no system python{version} to run the service as another user")
    packages = next(path for path in sys.path if path.endswith("site-packages"))
    entries = [*([str(first)] if first else []), str(ROOT), packages]
    return ["env", f"PYTHONPATH={':'.join(entries)}", str(SYSTEM_PYTHON)]


def serve_gateway(python: list[str], config: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """`rdnsgate serve gateway -c config` run to its end (a refusal), as root, in `work`."""
    command = [*python, "-m", "rdnsgate", "serve", "gateway", "-c", str(config)]
    return subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=60)


def readable_by_user(python: list[str]) -> bool:
    """Whether USER can import this checkout and its venv's packages (not so under a root-only directory)."""
    probe = ["runuser", "-u", USER, "--", *python, "-c", "import rdnsgate.storage, uvloop"]
    return subprocess.run(probe, capture_output=True, cwd="/").returncode == 0


def ids(pid: int) -> tuple[int, int, str]:
    """(effective uid, effective gid, supplementary groups) of `pid`."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["Uid"].split()[1]), int(fields["Gid"].split()[1]), fields["Groups"].strip()


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(item) for item in (task / "children").read_text().split()]
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_binds_port_25_as_root_then_serves_as_the_user(workers: int) -> None:
    python = interpreter()
    account = pwd.getpwnam(USER)
    work = Path(tempfile.mkdtemp(prefix="rdnsgate-priv-"))  # not pytest's: the user must reach the store there
    os.chown(work, account.pw_uid, account.pw_gid)
    work.chmod(0o755)
    config = work / "rdnsgate.toml"
    config.write_text(
        '[dns]\nnameservers = ["127.0.0.1:53"]\ntimeout = 0.2\ntries = 1\n'
        f'[gateway]\nlisten = ["127.0.0.1:25"]\nprofile = "monitor"\nworkers = {workers}\n'
        f'relay_domains = ["example.net"]\nhostname = "gw.example.net"\nmaildir = "{work / "mail"}"\n'
        f'[storage]\nurl = "sqlite:///{work / "rdnsgate.db"}"\n'
        f'[service]\nuser = "{USER}"\n'
    )
    log = work / "gateway.log"
    if not readable_by_user(python):  # e.g. a clone under a mktemp -d directory: the refusal is what to see
        done = serve_gateway(python, config, work)
        assert done.returncode == 2 and f"service.user: {USER!r} cannot read /" in done.stderr
        assert "where rdnsgate's Python code comes from" in done.stderr
        return
    with netns("rdnsgate-priv") as namespace:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", namespace, *python, "-m", "rdnsgate", "serve", "gateway", "-c", str(config)],
                cwd=work,
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while log.read_text(errors="replace").count(" ready: profile") < workers:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            banner = subprocess.run(
                ["ip", "netns", "exec", namespace, sys.executable, "-c",
                 "import socket; print(socket.create_connection(('127.0.0.1', 25), timeout=5).recv(200).decode())"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert banner.stdout.startswith("220 gw.example.net ESMTP"), banner
            # `ip netns exec` and `env` exec in place: proc.pid is rdnsgate itself.
            serving = [proc.pid, *children(proc.pid)]
            assert len(serving) == (1 if workers == 1 else 1 + workers)
            for pid in serving:
                assert ids(pid) == (account.pw_uid, account.pw_gid, ""), (pid, ids(pid))
            assert f"running as {USER} (uid {account.pw_uid}, gid {account.pw_gid})" in log.read_text()
            assert Path(work / "rdnsgate.db").stat().st_uid == account.pw_uid  # the store was made as the user
        finally:
            proc.terminate()
            proc.wait(30)
    assert grp.getgrgid(account.pw_gid)  # the group exists, as the check above assumed


def test_root_without_service_user_is_refused_unless_allowed(tmp_path: Path) -> None:
    config = tmp_path / "rdnsgate.toml"

    def serve(text: str) -> subprocess.CompletedProcess[str]:
        config.write_text(text)
        command = [sys.executable, "-m", "rdnsgate", "serve", "gateway", "-c", str(config)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    base = f'[gateway]\nlisten = ["127.0.0.1:1"]\n[storage]\nurl = "sqlite:///{tmp_path / "r.db"}"\n'
    done = serve(base)
    assert done.returncode == 2 and "refusing to run as root: set service.user" in done.stderr
    done = serve(base + '[service]\nuser = "no-such-user-here"\n')
    assert done.returncode == 2 and "service.user: no such user 'no-such-user-here'" in done.stderr
    done = serve(base + '[service]\nuser = "root"\n')
    assert done.returncode == 2 and "service.user: 'root' is root" in done.stderr


def test_code_the_user_cannot_read_is_refused_before_serving(tmp_path: Path) -> None:
    """A checkout under a directory only root may enter: a clear refusal naming it, not an import error later."""
    hidden = tmp_path / "root-only"
    hidden.mkdir(mode=0o700)
    (hidden / "rdnsgate").symlink_to(ROOT / "rdnsgate")  # imported from here: a path the user cannot resolve
    python = interpreter(first=hidden)
    work = Path(tempfile.mkdtemp(prefix="rdnsgate-priv-"))
    try:
        os.chown(work, pwd.getpwnam(USER).pw_uid, -1)
        config = work / "rdnsgate.toml"
        config.write_text(
            f'[gateway]\nlisten = ["127.0.0.1:{free_port()}"]\n[storage]\nurl = "sqlite:///{work / "r.db"}"\n'
            f'[service]\nuser = "{USER}"\n'
        )
        done = serve_gateway(python, config, work)
        assert done.returncode == 2, done
        assert f"service.user: {USER!r} cannot read {hidden}, where rdnsgate's Python code" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert not (work / "r.db").exists()  # refused before the store was opened
    finally:
        shutil.rmtree(work)
