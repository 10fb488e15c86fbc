"""The ``rdnsgate`` command as installed: the CLI front end plus ``rdnsgate serve``.

This is the top of the import tree.  ``rdnsgate serve`` starts services
through the supervisor, which builds the runtime; the other commands live in
frontends/cli and never import the services, so ``rdnsgate check`` loads no
SMTP, web or storage code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from rdnsgate.config import Settings, setting_help
from rdnsgate.errors import RdnsgateError
from rdnsgate.frontends.cli import app
from rdnsgate.frontends.cli import main as cli_main
from rdnsgate.frontends.cli.exits import Exit
from rdnsgate.frontends.cli.options import ConfigOpt, settings_from, settings_path
from rdnsgate.frontends.cli.runtime import new_app, run_loop, usage_error
from rdnsgate.frontends.cli.settings import config_app

serve_app = new_app(
    "Run rdnsgate's services; with no sub-command: gateway, web app and monitor in one process.",
    invoke_without_command=True,
    no_args_is_help=False,
)

NameserverOpt = Annotated[list[str] | None, typer.Option(help=setting_help("dns", "nameservers") + "; repeatable.")]
StorageOpt = Annotated[str | None, typer.Option(help=setting_help("storage", "url") + ".")]
ProfileOpt = Annotated[str | None, typer.Option(help=setting_help("gateway", "profile") + ".")]
NextHopOpt = Annotated[str | None, typer.Option(help=setting_help("gateway", "next_hop") + ".")]
RelayDomainOpt = Annotated[
    list[str] | None, typer.Option(help=setting_help("gateway", "relay_domains") + "; repeatable.")
]
GatewayListenOpt = Annotated[list[str] | None, typer.Option(help=setting_help("gateway", "listen") + ", repeatable.")]
PublicUrlOpt = Annotated[str | None, typer.Option(help=setting_help("web", "public_url") + ".")]
AllowRootOpt = Annotated[
    bool,
    typer.Option(
        "--allow-root",
        help="Run as root without service.user (not recommended: set service.user, or use the systemd units).",
    ),
]


def _with_store_and_dns(
    overrides: dict[str, dict[str, Any]], nameserver: list[str] | None, storage: str | None
) -> dict[str, dict[str, Any]]:
    """The service's own `overrides` plus the --nameserver and --storage every service takes."""
    return {**overrides, "dns": {"nameservers": tuple(nameserver) if nameserver else None}, "storage": {"url": storage}}


def _serve(
    names: list[str],
    config: Path | None,
    overrides: dict[str, dict[str, Any]],
    nameserver: list[str] | None,
    storage: str | None,
    allow_root: bool = False,
) -> None:
    from rdnsgate.logs import configure_logging
    from rdnsgate.supervisor import ServiceFailed, run_gateway_processes, run_services, worker_count

    flags = _with_store_and_dns(overrides, nameserver, storage)

    def reloader() -> Settings:  # SIGHUP: the same file and flags, read again
        return settings_from(config, flags)

    try:
        settings = reloader()
        configure_logging(settings.log.level, settings.log.format)
        listeners = None
        if os.geteuid() == 0:
            if settings.service.user:
                from rdnsgate.privileges import bind_then_drop

                listeners = bind_then_drop(settings, names)
            elif not allow_root:
                raise RdnsgateError(
                    "refusing to run as root: set service.user (bind the ports as root, then run as that user), "
                    "run it as an unprivileged user (the units of `rdnsgate install-units` do), or pass --allow-root"
                )
        if names == ["gateway"] and worker_count(settings) > 1:
            raise typer.Exit(run_gateway_processes(settings, run_loop, reloader, listeners))
        run_loop(run_services(settings, names, reloader=reloader, listeners=listeners))
    except ServiceFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(Exit.FAILED) from None
    except RdnsgateError as exc:
        raise usage_error(str(exc)) from None


@serve_app.callback()
def serve_all(
    ctx: typer.Context,
    config: ConfigOpt = None,
    listen: GatewayListenOpt = None,
    web_listen: Annotated[str | None, typer.Option(help=setting_help("web", "listen") + ".")] = None,
    profile: ProfileOpt = None,
    next_hop: NextHopOpt = None,
    relay_domain: RelayDomainOpt = None,
    nameserver: NameserverOpt = None,
    storage: StorageOpt = None,
    allow_root: AllowRootOpt = False,
    public_url: PublicUrlOpt = None,
) -> None:
    """Gateway + web app + monitor in one process (what `make run` starts); or a single service below."""
    if ctx.invoked_subcommand is not None:
        return
    overrides: dict[str, dict[str, Any]] = {
        "gateway": {
            "listen": tuple(listen) if listen else None,
            "profile": profile,
            "next_hop": next_hop,
            "relay_domains": tuple(relay_domain) if relay_domain else None,
        },
        "web": {"listen": web_listen, "public_url": public_url},
    }
    _serve(["gateway", "web", "monitor"], config, overrides, nameserver, storage, allow_root)


@serve_app.command("web")
def serve_web(
    config: ConfigOpt = None,
    listen: Annotated[
        str | None, typer.Option(help=setting_help("web", "listen") + " (default 127.0.0.1:8080).")
    ] = None,
    nameserver: NameserverOpt = None,
    storage: StorageOpt = None,
    allow_root: AllowRootOpt = False,
    trusted_proxy: Annotated[
        list[str] | None, typer.Option(help=setting_help("web", "trusted_proxies") + "; repeatable.")
    ] = None,
    public_url: PublicUrlOpt = None,
) -> None:
    """The web app: the public check page and JSON API, the admin pages, /metrics, /healthz."""
    overrides: dict[str, dict[str, Any]] = {
        "web": {
            "listen": listen,
            "trusted_proxies": tuple(trusted_proxy) if trusted_proxy else None,
            "public_url": public_url,
        },
    }
    _serve(["web"], config, overrides, nameserver, storage, allow_root)


@serve_app.command("monitor")
def serve_monitor(
    config: ConfigOpt = None,
    nameserver: NameserverOpt = None,
    storage: StorageOpt = None,
    allow_root: AllowRootOpt = False,
    interval: Annotated[
        float | None, typer.Option(help=setting_help("monitor", "interval") + " (default 300).")
    ] = None,
    webhook: Annotated[str | None, typer.Option(help=setting_help("monitor", "webhook_url") + ".")] = None,
    authoritative: Annotated[
        bool | None,
        typer.Option("--authoritative/--no-authoritative", help=setting_help("monitor", "authoritative") + "."),
    ] = None,
) -> None:
    """The fleet monitor: re-checks every watched server and alerts on confirmed state changes."""
    overrides: dict[str, dict[str, Any]] = {
        "monitor": {"interval": interval, "webhook_url": webhook, "authoritative": authoritative},
    }
    _serve(["monitor"], config, overrides, nameserver, storage, allow_root)


@serve_app.command("gateway")
def serve_gateway(
    config: ConfigOpt = None,
    listen: GatewayListenOpt = None,
    profile: ProfileOpt = None,
    next_hop: NextHopOpt = None,
    relay_domain: RelayDomainOpt = None,
    nameserver: NameserverOpt = None,
    maildir: Annotated[str | None, typer.Option(help=setting_help("gateway", "maildir") + ".")] = None,
    storage: StorageOpt = None,
    allow_root: AllowRootOpt = False,
    workers: Annotated[int | None, typer.Option(help=setting_help("gateway", "workers") + ".", min=0, max=64)] = None,
) -> None:
    """The SMTP gateway: a before-queue proxy that refuses clients with broken DNS."""
    overrides: dict[str, dict[str, Any]] = {
        "gateway": {
            "listen": tuple(listen) if listen else None,
            "profile": profile,
            "next_hop": next_hop,
            "relay_domains": tuple(relay_domain) if relay_domain else None,
            "maildir": maildir,
            "workers": workers,
        },
    }
    _serve(["gateway"], config, overrides, nameserver, storage, allow_root)


@serve_app.command("policy")
def serve_policy(
    config: ConfigOpt = None,
    listen: Annotated[list[str] | None, typer.Option(help=setting_help("policy", "listen") + ", repeatable.")] = None,
    profile: ProfileOpt = None,
    nameserver: NameserverOpt = None,
    storage: StorageOpt = None,
    allow_root: AllowRootOpt = False,
) -> None:
    """The Postfix policy service: check_policy_service inet:127.0.0.1:10040 (docs/postfix.md)."""
    overrides: dict[str, dict[str, Any]] = {
        "policy": {"listen": tuple(listen) if listen else None, "profile": profile},
    }
    _serve(["policy"], config, overrides, nameserver, storage, allow_root)


app.add_typer(serve_app, name="serve")


@app.command("install-units")
def install_units(
    root: Annotated[Path, typer.Option(help="Write under this directory instead of / (packagers, tests).")] = Path("/"),
    user: Annotated[str, typer.Option(help="The system user the services run as.")] = "rdnsgate",
) -> None:
    """Write the systemd units (rdnsgate.service: gateway, web app, monitor; rdnsgate-policy.service), the
    sysusers.d entry of the system user and, when there is none, /etc/rdnsgate/rdnsgate.toml; on / as root
    also create the user. Then: `rdnsgate config check -c /etc/rdnsgate/rdnsgate.toml` and
    `systemctl enable --now rdnsgate`."""
    import shutil
    import sys

    from rdnsgate.install import install, make_user

    beside = Path(sys.executable).parent / "rdnsgate"  # the console script of this installation (a venv's)
    binary = str(beside) if beside.is_file() else shutil.which("rdnsgate") or f"{sys.executable} -m rdnsgate"
    try:
        for path in install(root, binary, user=user):
            typer.echo(f"wrote {path}")
        done = make_user(root)
    except OSError as exc:
        raise usage_error(f"cannot write under {root}: {exc.strerror or exc}") from None
    if done:
        typer.echo(done)
    typer.echo("next: rdnsgate config check -c /etc/rdnsgate/rdnsgate.toml && systemctl daemon-reload "
               "&& systemctl enable --now rdnsgate")  # fmt: skip


@config_app.command("check")
def config_check(
    config: ConfigOpt = None,
    offline: Annotated[bool, typer.Option("--offline", help="Check the settings only; probe nothing.")] = False,
) -> None:
    """Check the settings file and the RDNSGATE_* environment (every problem, not only the first), then try
    what they point at: the TLS certificate and key, the next hop (EHLO), each nameserver, the store.
    One line per finding; exit status 1 when any is an error."""
    from rdnsgate.config import check_settings
    from rdnsgate.probes import probe_all

    path = settings_path(config)
    settings, problems = check_settings(path)
    if settings is not None:  # profiles and overrides are checked where they are used: try them here
        from rdnsgate.errors import ConfigError
        from rdnsgate.policy.session import Policy

        for section in ("gateway", "policy"):
            try:
                Policy.from_settings(getattr(settings, section), section, "localhost")
            except ConfigError as exc:
                problems.append(str(exc))
        settings = None if problems else settings
    where = str(path) if path else "no settings file (defaults and environment)"
    for problem in problems:
        typer.echo(f"error: {problem}")
    if settings is None:
        raise typer.Exit(Exit.FAILED)
    typer.echo(f"ok: settings: {where}")
    if offline:
        return
    findings = run_loop(probe_all(settings))
    for finding in findings:
        typer.echo(str(finding))
    if any(finding.level == "error" for finding in findings):
        raise typer.Exit(Exit.FAILED)


def main() -> None:
    cli_main()
