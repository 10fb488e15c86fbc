"""`rdnsgate install-units`: the files a systemd host needs to run rdnsgate as a service.

Pure text (`units`), then written under a root directory (`install`): two
units (``rdnsgate.service`` runs ``rdnsgate serve``: gateway, web app and
monitor; ``rdnsgate-policy.service`` runs the Postfix policy service), a
sysusers.d entry for the ``rdnsgate`` system user, and a starter
``/etc/rdnsgate/rdnsgate.toml`` when there is none.  The units run the
service as that user with only ``CAP_NET_BIND_SERVICE`` (port 25 without
root), ``Type=notify`` (ready once every listener is bound and the store is
migrated; a watchdog), and the hardening systemd offers a network daemon.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

USER = "rdnsgate"
CONFIG = "/etc/rdnsgate/rdnsgate.toml"
STATE = "/var/lib/rdnsgate"


@dataclass(frozen=True, slots=True)
class Unit:
    name: str
    description: str
    command: str  # after "rdnsgate"


UNITS = (
    Unit("rdnsgate.service", "rdnsgate: the SMTP gateway, the web app and the fleet monitor", "serve"),
    Unit("rdnsgate-policy.service", "rdnsgate: the Postfix policy service", "serve policy"),
)


def unit_text(unit: Unit, binary: str, user: str = USER) -> str:
    return f"""# Written by `rdnsgate install-units`. Local changes: `systemctl edit {unit.name}`.
[Unit]
Description={unit.description}
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={binary} {unit.command} --config {CONFIG}
# SIGHUP: the settings are read again; sessions in progress keep theirs (docs/deploy.md).
ExecReload=/bin/kill -HUP $MAINPID
User={user}
Group={user}
# Port 25 without root: this one capability, nothing else.
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
StateDirectory=rdnsgate
WorkingDirectory={STATE}
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=no
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# The event loop tells systemd it is alive every WatchdogSec/2; a hung loop is restarted.
WatchdogSec=60
Restart=on-failure
RestartSec=2
# SIGTERM: sessions get gateway.drain_seconds (30 s by default) to finish.
TimeoutStopSec=45
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy=multi-user.target
"""


def sysusers_text(user: str = USER) -> str:
    return f'u {user} - "rdnsgate" {STATE}\n'


STARTER = f"""# rdnsgate settings: every key, its default and its environment variable are in docs/config.md.
# Check this file and what it points at with `rdnsgate config check`.

[gateway]
listen = ["0.0.0.0:25"]
profile = "classic"          # classic | postfix | strict | monitor (docs/profiles.md)
next_hop = "smtp://127.0.0.1:10025"   # your MTA, listening on another port
relay_domains = []           # the domains you accept mail for, e.g. ["example.org"]

[storage]
url = "sqlite:///{STATE}/rdnsgate.db"
"""


def install(root: Path, binary: str, *, user: str = USER) -> list[Path]:
    """Write the units, the sysusers.d entry and (when there is none) the settings file under `root`."""
    written = []
    units = root / "etc/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    for unit in UNITS:
        path = units / unit.name
        path.write_text(unit_text(unit, binary, user))
        written.append(path)
    sysusers = root / "usr/lib/sysusers.d/rdnsgate.conf"
    sysusers.parent.mkdir(parents=True, exist_ok=True)
    sysusers.write_text(sysusers_text(user))
    written.append(sysusers)
    config = root / CONFIG.lstrip("/")
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(STARTER)
        config.chmod(0o640)
        written.append(config)
    return written


def make_user(root: Path) -> str | None:
    """On the real root: create the system user now (systemd-sysusers); what was done, or None."""
    if root.resolve() != Path("/") or os.geteuid() != 0:
        return None
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        return None
    subprocess.run([tool, "rdnsgate.conf"], check=True, capture_output=True)
    return "system user made by systemd-sysusers"
