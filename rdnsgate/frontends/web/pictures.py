"""Pictures drawn on the server: the check chain and a server's timeline, as SVG geometry.

Pure: a `Report` or a fleet history in, boxes, links and segments out; the
templates turn them into SVG (every text escaped by Jinja).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rdnsgate.model import Lookup, Report, Result, Status

BOX_W = 270  # 30 characters of 14 px monospace
ROW_H = 62
BOX_H = 46
COLUMNS = (10, 340, 670)
MAX_TEXT = 30
KIND = {
    Result.PASS: "pass",
    Result.FAIL: "fail",
    Result.PERMERROR: "fail",
    Result.TEMPERROR: "temp",
    Result.NONE: "none",
}


def short(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Box:
    x: int
    y: int
    title: str  # small caption: "IP", "PTR name", ...
    text: str  # shortened for the picture
    full: str  # the whole text, shown as a tooltip
    kind: str  # pass | fail | temp | none
    note: str = ""

    @property
    def w(self) -> int:
        return BOX_W

    @property
    def h(self) -> int:
        return BOX_H


@dataclass(frozen=True, slots=True)
class Link:
    x1: int
    y1: int
    x2: int
    y2: int
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class Picture:
    width: int
    height: int
    boxes: tuple[Box, ...]
    links: tuple[Link, ...]


def _status_words(lookup: Lookup) -> str:
    if lookup.status is Status.NXDOMAIN:
        return "name does not exist"
    if lookup.status is Status.NODATA:
        return f"no {lookup.qtype} record"
    return f"{lookup.status.value}: {lookup.detail}" if lookup.detail else lookup.status.value


def _kind_of(lookup: Lookup) -> str:
    if lookup.status is Status.ANSWER:
        return "pass"
    return "temp" if lookup.temporary else "fail"


def _link(a: Box, b: Box, kind: str, label: str) -> Link:
    return Link(a.x + BOX_W, a.y + BOX_H // 2, b.x, b.y + BOX_H // 2, kind, label)


def chain_picture(report: Report) -> Picture:
    """IP -> PTR names -> their A/AAAA, and the HELO name -> its A/AAAA, with pass/fail on each link."""
    iprev = report.iprev
    boxes: list[Box] = []
    links: list[Link] = []
    rows = max(1, len(iprev.names) + len(iprev.invalid_names))
    helo_row = rows if report.helo_name is not None else None
    total_rows = rows + (1 if helo_row is not None else 0)
    ip_y = 10 + (rows - 1) * ROW_H // 2
    ip_box = Box(COLUMNS[0], ip_y, "client IP", str(report.ip), str(report.ip), KIND[iprev.result.result])
    boxes.append(ip_box)
    if iprev.ptr.status is not Status.ANSWER:
        words = _status_words(iprev.ptr)
        box = Box(COLUMNS[1], ip_y, "PTR", short(words), words, _kind_of(iprev.ptr), "no PTR name")
        boxes.append(box)
        links.append(_link(ip_box, box, box.kind, "PTR"))
    row = 0
    for item in iprev.names:
        y = 10 + row * ROW_H
        row += 1
        name_box = Box(COLUMNS[1], y, "PTR name", short(item.name), item.name, "pass" if item.confirms else "fail")
        boxes.append(name_box)
        links.append(_link(ip_box, name_box, "pass", "PTR"))
        lookup = item.lookup
        if lookup.status is Status.ANSWER:
            text = ", ".join(lookup.records)
            note = "leads back to the IP" if item.confirms else "does not lead back to the IP"
            kind = "pass" if item.confirms else "fail"
        else:
            text, note, kind = _status_words(lookup), "", _kind_of(lookup)
        address_box = Box(COLUMNS[2], y, lookup.qtype, short(text), text, kind, note)
        boxes.append(address_box)
        links.append(_link(name_box, address_box, kind, lookup.qtype))
    for name in iprev.invalid_names:
        y = 10 + row * ROW_H
        row += 1
        box = Box(COLUMNS[1], y, "PTR name", short(name), name, "fail", "not a valid host name")
        boxes.append(box)
        links.append(_link(ip_box, box, "fail", "PTR"))
    if helo_row is not None and report.helo_name is not None:
        y = 10 + helo_row * ROW_H
        helo_kind = KIND[report.helo.result]
        helo_box = Box(COLUMNS[1], y, "HELO name", short(report.helo_name or "(empty)"), report.helo_name, helo_kind)
        boxes.append(helo_box)
        align = report.helo_align
        links.append(
            Link(ip_box.x + BOX_W // 2, ip_box.y + BOX_H, helo_box.x, y + BOX_H // 2, KIND[align.result], "announces")
        )
        answers = [lookup for lookup in report.helo.lookups if lookup.qtype in ("A", "AAAA")]
        found = [address for lookup in answers if lookup.status is Status.ANSWER for address in lookup.records]
        text = ", ".join(found) if found else (_status_words(answers[0]) if answers else "not looked up")
        address_box = Box(COLUMNS[2], y, "A/AAAA", short(text), text, helo_kind, f"alignment: {align.result.value}")
        boxes.append(address_box)
        links.append(_link(helo_box, address_box, helo_kind, "A/AAAA"))
    return Picture(COLUMNS[2] + BOX_W + 10, 20 + total_rows * ROW_H, tuple(boxes), tuple(links))


@dataclass(frozen=True, slots=True)
class Segment:
    x: float
    w: float
    state: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Dot:
    x: float
    seen: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Timeline:
    width: int
    start: datetime
    end: datetime
    segments: tuple[Segment, ...]
    dots: tuple[Dot, ...]
    ticks: tuple[tuple[float, str], ...]


def timeline(history: list[dict[str, Any]], end: datetime, span: timedelta, width: int = 900) -> Timeline:
    """The confirmed state over [end - span, end] as segments, each check as a dot, and time ticks."""
    start = end - span
    scale = width / span.total_seconds()

    def x_of(moment: datetime) -> float:
        return round(max(0.0, min(width, (moment - start).total_seconds() * scale)), 2)

    segments: list[Segment] = []
    inside = [row for row in history if row["at"] <= end]
    for index, row in enumerate(inside):
        until = inside[index + 1]["at"] if index + 1 < len(inside) else end
        if until < start:
            continue
        begin = max(row["at"], start)
        if segments and segments[-1].state == row["state"]:
            last = segments[-1]
            segments[-1] = Segment(last.x, x_of(until) - last.x, last.state, last.start, until)
        else:
            segments.append(Segment(x_of(begin), x_of(until) - x_of(begin), row["state"], begin, until))
    dots = tuple(Dot(x_of(row["at"]), row["seen"], row["at"]) for row in inside if row["at"] >= start)
    ticks = []
    for step in range(5):
        moment = start + span * step / 4
        ticks.append((x_of(moment), f"{moment:%m-%d %H:%M}"))
    return Timeline(width, start, end, tuple(segments), dots, tuple(ticks))


def chain_changes(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checks whose chain differs from the check before: when, from what, to what."""
    changes = []
    previous: dict[str, Any] | None = None
    for row in history:
        chain = row["chain"] or {}
        if previous is not None and chain != previous:
            changes.append({"at": row["at"], "before": previous, "after": chain, "state": row["state"]})
        previous = chain
    return changes
