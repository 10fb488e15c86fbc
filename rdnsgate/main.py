"""The ``rdnsgate`` command as installed: the CLI front end plus ``rdnsgate serve``.

This is the top of the import tree.  ``rdnsgate serve`` starts services
through the supervisor, which builds the runtime; the other commands live in
frontends/cli and never import the services, so ``rdnsgate check`` loads no
SMTP, web or storage code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rdnsgate.config import setting_help
from rdnsgate.errors import RdnsgateError
from rdnsgate.frontends.cli import app
from rdnsgate.frontends.cli import main as cli_main
from rdnsgate.frontends.cli.exits import Exit
from rdnsgate.frontends.cli.options import ConfigOpt, settings_from
from rdnsgate.frontends.cli.runtime import new_app, run_loop, usage_error

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
) -> None:
    from rdnsgate.runtime import configure_logging
    from rdnsgate.supervisor import ServiceFailed, run_gateway_processes, run_services, worker_count

    try:
        settings = settings_from(config, _with_store_and_dns(overrides, nameserver, storage))
        configure_logging()
        if names == ["gateway"] and worker_count(settings) > 1:
            raise typer.Exit(run_gateway_processes(settings, run_loop))
        run_loop(run_services(settings, names))
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
    _serve(["gateway", "web", "monitor"], config, overrides, nameserver, storage)


@serve_app.command("web")
def serve_web(
    config: ConfigOpt = None,
    listen: Annotated[
        str | None, typer.Option(help=setting_help("web", "listen") + " (default 127.0.0.1:8080).")
    ] = None,
    nameserver: NameserverOpt = None,
    storage: StorageOpt = None,
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
    _serve(["web"], config, overrides, nameserver, storage)


@serve_app.command("monitor")
def serve_monitor(
    config: ConfigOpt = None,
    nameserver: NameserverOpt = None,
    storage: StorageOpt = None,
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
    _serve(["monitor"], config, overrides, nameserver, storage)


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
    _serve(["gateway"], config, overrides, nameserver, storage)


@serve_app.command("policy")
def serve_policy(
    config: ConfigOpt = None,
    listen: Annotated[list[str] | None, typer.Option(help=setting_help("policy", "listen") + ", repeatable.")] = None,
    profile: ProfileOpt = None,
    nameserver: NameserverOpt = None,
    storage: StorageOpt = None,
) -> None:
    """The Postfix policy service: check_policy_service inet:127.0.0.1:10040 (docs/postfix.md)."""
    overrides: dict[str, dict[str, Any]] = {
        "policy": {"listen": tuple(listen) if listen else None, "profile": profile},
    }
    _serve(["policy"], config, overrides, nameserver, storage)


app.add_typer(serve_app, name="serve")


def main() -> None:
    cli_main()
