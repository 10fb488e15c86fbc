"""Port 25 without staying root: bind first, then become `service.user`, then serve.

When rdnsgate is started as root (not by the systemd units, which give the
unprivileged user the one capability it needs), `Listeners.bind` opens every
listening socket the services will use, `drop` switches to the user and group
(supplementary groups cleared, no way back), and only then is the store
opened and any client byte read: the services take their sockets from the
`Listeners` instead of binding them.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from rdnsgate.config import ServiceSettings, Settings, parse_listen
from rdnsgate.errors import ConfigError

log = logging.getLogger(__name__)

BACKLOG = 1024


@dataclass(frozen=True, slots=True)
class Account:
    user: str
    uid: int
    gid: int


def account(settings: ServiceSettings) -> Account:
    """The user (and group) of `service.user` / `service.group`; ConfigError naming the key when unknown."""
    try:
        entry = pwd.getpwnam(settings.user)
    except KeyError:
        raise ConfigError(f"service.user: no such user {settings.user!r}") from None
    if entry.pw_uid == 0:
        raise ConfigError(f"service.user: {settings.user!r} is root; name the unprivileged user to run as")
    gid = entry.pw_gid
    if settings.group:
        try:
            gid = grp.getgrnam(settings.group).gr_gid
        except KeyError:
            raise ConfigError(f"service.group: no such group {settings.group!r}") from None
    return Account(settings.user, entry.pw_uid, gid)


@dataclass
class Listeners:
    """Listening sockets bound before the switch, by the address as the settings write it."""

    sockets: dict[str, list[socket.socket]] = field(default_factory=dict)

    def bind(self, address: str, owner: Account, *, key: str) -> None:
        if address.startswith("unix:"):
            path = address[len("unix:") :]
            if os.path.exists(path):
                os.unlink(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            os.chown(path, owner.uid, owner.gid)  # the service removes it when it stops, as that user
            found = [sock]
        else:
            host, port = parse_listen(address, key)
            found = []
            for family, kind, proto, _name, where in socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            ):
                sock = socket.socket(family, kind, proto)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(where)
                found.append(sock)
        for sock in found:
            sock.listen(BACKLOG)
            sock.setblocking(False)
        self.sockets[address] = found

    def take(self, address: str) -> list[socket.socket] | None:
        """The sockets bound for `address`, or None when it was not bound beforehand (the service binds)."""
        return self.sockets.get(address)

    def close(self) -> None:
        for found in self.sockets.values():
            for sock in found:
                sock.close()


def addresses(settings: Settings, services: Iterable[str]) -> list[tuple[str, str]]:
    """(address, settings key) of every listener `services` will open."""
    found: list[tuple[str, str]] = []
    for name in services:
        if name == "gateway":
            found += [(item, "gateway.listen") for item in settings.gateway.listen]
        elif name == "policy":
            found += [(item, "policy.listen") for item in settings.policy.listen]
            found += [(item, "policy.exim_listen") for item in settings.policy.exim_listen]
        elif name == "web":
            found.append((settings.web.listen, "web.listen"))
    return found


def bind_then_drop(settings: Settings, services: Iterable[str]) -> Listeners:
    """Bind every listener of `services`, then become `service.user`; the bound sockets."""
    owner = account(settings.service)
    listeners = Listeners()
    try:
        for address, key in addresses(settings, services):
            try:
                listeners.bind(address, owner, key=key)
            except OSError as exc:
                raise ConfigError(f"{key} {address}: cannot listen there ({exc.strerror})") from None
        roots = code_roots(sys.path, _loaded_files())
        drop(owner)
        refuse_unreadable(owner, roots)
    except BaseException:
        listeners.close()
        raise
    return listeners


def _loaded_files() -> list[str]:
    return [file for module in list(sys.modules.values()) if isinstance(file := getattr(module, "__file__", None), str)]


def code_roots(path: Iterable[str], files: Iterable[str]) -> list[str]:
    """The entries of `path` (sys.path) that `files` (the loaded modules') came from, longest match each.

    The services import more modules lazily after the switch, from the same places: the user must be
    able to read every one of them.
    """
    entries = sorted({os.path.abspath(entry) for entry in path if entry}, key=len, reverse=True)
    prefixes = [(entry, entry.rstrip(os.sep) + os.sep) for entry in entries]  # "/" stays "/"
    roots: set[str] = set()
    for file in files:
        where = os.path.abspath(file)
        for entry, prefix in prefixes:
            if where.startswith(prefix):
                roots.add(entry)
                break
    return sorted(roots)


def refuse_unreadable(owner: Account, roots: Iterable[str]) -> None:
    """ConfigError when `owner` (now this process's user) cannot read one of `roots`, naming it.

    Without this a checkout or venv under a directory only root may enter (e.g. one made by mktemp -d)
    fails later, in the middle of starting a service, with an import error that names neither the
    user nor the directory.
    """
    for root in roots:
        if not os.access(root, os.R_OK | (os.X_OK if os.path.isdir(root) else 0)):  # a zip entry is a file
            raise ConfigError(
                f"service.user: {owner.user!r} cannot read {root}, where rdnsgate's Python code comes from; "
                "install rdnsgate (and the Python it runs on) where that user can read it: every directory "
                "above it must be searchable by the user"
            )


def drop(owner: Account) -> None:
    """Become `owner` for good: groups, then group, then user (real, effective and saved)."""
    os.setgroups([])
    os.setresgid(owner.gid, owner.gid, owner.gid)
    os.setresuid(owner.uid, owner.uid, owner.uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - the kernel refuses this for a non-root saved uid
        raise RuntimeError("could switch back to root after dropping privileges")
    log.info("running as %s (uid %d, gid %d); the listeners were bound as root", owner.user, owner.uid, owner.gid)
