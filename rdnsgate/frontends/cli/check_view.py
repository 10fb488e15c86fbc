"""The terminal view of one check: the chain as a tree, the checks, each profile's answer, the fixes."""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from rdnsgate.model import IprevReport, Lookup, Report, Result, Status
from rdnsgate.policy.advice import advise, recheck_after
from rdnsgate.policy.decide import Decision
from rdnsgate.policy.receivers import CAVEAT, predict
from rdnsgate.policy.serialize import overall

STYLE = {
    Result.PASS: "green",
    Result.FAIL: "red",
    Result.PERMERROR: "red",
    Result.TEMPERROR: "yellow",
    Result.NONE: "dim",
}


def _word(result: Result) -> str:
    return f"[{STYLE[result]}]{result.value}[/]"


def _lookup(lookup: Lookup) -> str:
    via = f" via CNAME {' -> '.join(escape(name) for name in lookup.cnames)}" if lookup.cnames else ""
    if lookup.status is Status.ANSWER:
        return f"{lookup.qtype} {escape(', '.join(lookup.records))} (TTL {lookup.ttl}){via}"
    if lookup.status in (Status.NXDOMAIN, Status.NODATA):
        ttl = f", negative TTL {lookup.negative_ttl}" if lookup.negative_ttl is not None else ""
        what = "name does not exist" if lookup.status is Status.NXDOMAIN else f"no {lookup.qtype} record"
        return f"[red]{what}[/]{ttl}{via}"
    return f"[yellow]{lookup.status.value}[/] {escape(lookup.detail)}"


def chain_tree(report: Report) -> Tree:
    iprev = report.iprev
    tree = Tree(f"[bold]{report.ip}[/]  iprev {_word(iprev.result.result)}")
    ptr = tree.add(f"PTR {escape(iprev.ptr.qname)}: {_lookup(iprev.ptr)}")
    for item in iprev.names:
        mark = "[green]confirms[/]" if item.confirms else "[red]does not confirm[/]"
        ptr.add(f"{escape(item.name)} -> {_lookup(item.lookup)}  {mark}")
    for name in iprev.invalid_names:
        ptr.add(f"[red]{escape(name)!r}: not a valid host name (set aside)[/]")
    if iprev.omitted_names:
        ptr.add(f"[dim]{len(iprev.omitted_names)} more names not examined[/]")
    if report.helo_name is not None:
        helo = tree.add(f"HELO {escape(report.helo_name)!r}  {_word(report.helo.result)}")
        for lookup in report.helo.lookups:
            helo.add(_lookup(lookup))
        helo.add(f"alignment {_word(report.helo_align.result)}: {escape(report.helo_align.detail)}")
    if report.sender_address is not None or report.sender.reason == "null-sender":
        sender = tree.add(f"MAIL FROM <{escape(report.sender_address or '')}>  {_word(report.sender.result)}")
        for lookup in report.sender.lookups:
            sender.add(f"{escape(lookup.qname)}: {_lookup(lookup)}")
    return tree


def render_check(
    console: Console,
    report: Report,
    decisions: dict[str, Decision],
    now: datetime,
    at_source: IprevReport | None = None,
) -> None:
    console.print(chain_tree(report))
    console.print()
    if at_source is not None:
        from rdnsgate.monitor.fleet import source_note

        source = Tree(f"[bold]At the zones' own servers, now[/]  iprev {_word(at_source.result.result)}")
        source.add(f"PTR {escape(at_source.ptr.qname)}: {_lookup(at_source.ptr)}")
        for forward in at_source.names:
            mark = "[green]confirms[/]" if forward.confirms else "[red]does not confirm[/]"
            source.add(f"{escape(forward.name)} -> {_lookup(forward.lookup)}  {mark}")
        source.add(escape(source_note(report.iprev, at_source, now)))
        console.print(source)
        console.print()

    checks = Table(title="Checks", title_justify="left", show_edge=False)
    for column in ("check", "result", "reason", "detail"):
        checks.add_column(column, overflow="fold")
    for item in report.checks:
        checks.add_row(item.check.value, _word(item.result), item.reason, escape(item.detail))
    console.print(checks)
    console.print()

    answers = Table(title="What each profile would answer", title_justify="left", show_edge=False)
    for column in ("profile", "action", "when", "reply"):
        answers.add_column(column, overflow="fold")
    for name, decision in decisions.items():
        reply = escape(str(decision.reply)) if decision.reply else "-"
        if decision.close:
            reply += " [dim](then closes)[/]"
        when = decision.stage.value.upper() if decision.stage else "-"
        answers.add_row(name, decision.action.value, when, reply)
    console.print(answers)
    console.print()

    receivers = Table(title="What real receivers would likely answer", title_justify="left", show_edge=False)
    for column in ("receiver", "answer", "when", "reply / why"):
        receivers.add_column(column, overflow="fold")
    for guess in predict(report):
        reply = escape(guess.reply or "") or (f"[dim]{escape(guess.because or '')}[/]" if guess.because else "-")
        when = guess.stage.upper() if guess.stage and guess.stage != "data" else ("end of DATA" if guess.stage else "-")
        receivers.add_row(escape(guess.title), guess.action, when, reply)
    console.print(receivers)
    console.print(f"[dim]{escape(CAVEAT)}[/]")

    steps = advise(report, now)
    if steps:
        console.print()
        console.print("[bold]How to fix[/]")
        for number, step in enumerate(steps, 1):
            console.print(f" {number}. [{step.check.value}] {escape(step.text)}")
    wait = recheck_after(report)
    if wait is not None:
        at = (now + timedelta(seconds=wait)).strftime("%H:%M UTC")
        console.print(f"\nRe-check after {at}: resolvers may keep negative answers up to {wait} s.")
    console.print(f"\nverdict: {_word(overall(report))}")
