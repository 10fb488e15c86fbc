"""`rdnsgate install-units --root DIR`: the units systemd would run, checked by `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rdnsgate.storage.base import newest_revision

HARDENING = (
    "Type=notify",
    "User=rdnsgate",
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "StateDirectory=rdnsgate",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter=@system-service",
    "WatchdogSec=",
    "ExecReload=/bin/kill -HUP $MAINPID",
)


def install(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rdnsgate", "install-units", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze (Debian's systemd) is missing")
def test_units_verify_and_the_starter_settings_pass_the_check(tmp_path: Path) -> None:
    done = install(tmp_path)
    assert done.returncode == 0, done.stderr
    units = [tmp_path / "etc/systemd/system" / name for name in ("rdnsgate.service", "rdnsgate-policy.service")]
    verify = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    for unit in units:
        text = unit.read_text()
        for line in HARDENING:
            assert line in text, (unit.name, line)
        assert "ExecStart=" in text and " --config /etc/rdnsgate/rdnsgate.toml" in text
    assert (tmp_path / "usr/lib/sysusers.d/rdnsgate.conf").read_text().startswith("u rdnsgate ")
    config = tmp_path / "etc/rdnsgate/rdnsgate.toml"
    check = subprocess.run(
        [sys.executable, "-m", "rdnsgate", "config", "check", "--offline", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout
    # A second run keeps the admin's settings.
    config.write_text(config.read_text() + "\n# mine\n")
    assert install(tmp_path).returncode == 0
    assert config.read_text().endswith("# mine\n")
    # A unit made wrong is caught by the same verification (the test can fail).
    broken = tmp_path / "broken.service"
    broken.write_text(units[0].read_text().replace("ExecStart=", "ExecStart=/nonexistent"))
    assert subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True).returncode != 0


def test_the_wheel_carries_everything_a_host_needs(tmp_path: Path) -> None:
    """`make dist`'s wheel, installed apart from the checkout: migrations, profiles, templates, the command."""
    root = Path(__file__).resolve().parents[2]
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("rdnsgate-*.whl")
    target = tmp_path / "installed"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    # -S: no site module, so no .pth file and not the checkout's editable install; the dependencies come from
    # the test venv's site-packages, rdnsgate from the wheel.
    packages = next(path for path in sys.path if path.endswith("site-packages"))
    env = {"PYTHONPATH": f"{target}:{packages}", "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-S", "-m", "rdnsgate", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    where = subprocess.run(
        [sys.executable, "-S", "-c", "import rdnsgate; print(rdnsgate.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(target)), where  # the wheel's code, not the checkout's
    config = tmp_path / "rdnsgate.toml"
    config.write_text(f'[storage]\nurl = "sqlite:///{tmp_path / "store.db"}"\n')
    upgraded = run("db", "upgrade", "-c", str(config))
    newest = newest_revision()
    assert upgraded.returncode == 0 and f"schema upgraded: empty -> {newest}" in upgraded.stdout, upgraded
    profile = config.read_text() + '[gateway]\nprofile = "strict"\n'
    config.write_text(profile)
    assert run("config", "check", "--offline", "-c", str(config)).returncode == 0
    assert run("install-units", "--root", str(tmp_path / "root")).returncode == 0
    assert (tmp_path / "root/etc/systemd/system/rdnsgate.service").is_file()
