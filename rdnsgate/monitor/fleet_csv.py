"""Pure: the fleet as CSV (``ip,helo,label``) for platforms with hundreds of sending IPs, and as JSON values.

`fleet_entry` is the one place that says what a watched server may be: the
CLI, the admin page, the API and the CSV import all go through it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from rdnsgate.checks.names import parse_ip, to_ascii_domain
from rdnsgate.errors import UsageError
from rdnsgate.model import FleetEntry, iso

COLUMNS = ("ip", "helo", "label")
MAX_LABEL = 100
MAX_ROWS = 100_000


def fleet_entry(ip: str, helo: str | None = None, label: str | None = None) -> FleetEntry:
    """A server to watch, its values checked and normalised; UsageError says what is wrong."""
    try:
        address = str(parse_ip(ip.strip()))
    except ValueError:
        raise UsageError(f"{ip.strip()[:100]!r} is not an IP address") from None
    name = (helo or "").strip() or None
    if name is not None:
        if len(name) > 255 or any(ch.isspace() or not ch.isprintable() for ch in name):
            raise UsageError(f"HELO {name[:100]!r}: at most 255 characters, no spaces")
        try:
            name = to_ascii_domain(name)
        except ValueError as exc:
            raise UsageError(f"HELO {name[:100]!r}: {exc}") from None
    text = (label or "").strip()
    if len(text) > MAX_LABEL or any(not ch.isprintable() for ch in text):
        raise UsageError(f"label {text[:40]!r}…: at most {MAX_LABEL} printable characters")
    return FleetEntry(address, name, text)


def parse_fleet_csv(text: str) -> list[FleetEntry]:
    """``ip,helo,label`` rows (a header row is optional; helo and label may be empty) -> entries.

    Every row is checked before anything is stored; the first bad row is named
    by its line number.  An IP given twice keeps its last row.
    """
    rows = csv.reader(io.StringIO(text))
    found: dict[str, FleetEntry] = {}
    for number, row in enumerate(rows, start=1):
        if not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if number == 1 and row[0].strip().lower() == "ip":
            continue
        if len(row) > len(COLUMNS):
            raise UsageError(f"line {number}: {len(row)} columns, want at most {len(COLUMNS)} (ip,helo,label)")
        try:
            entry = fleet_entry(*row)
        except UsageError as exc:
            raise UsageError(f"line {number}: {exc}") from None
        found[entry.ip] = entry
        if len(found) > MAX_ROWS:
            raise UsageError(f"more than {MAX_ROWS} servers in one file")
    return list(found.values())


def fleet_csv(entries: Iterable[FleetEntry]) -> str:
    """The entries as CSV with a header row; `parse_fleet_csv` reads it back."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for entry in entries:
        writer.writerow((entry.ip, entry.helo or "", entry.label))
    return out.getvalue()


def fleet_dict(entry: FleetEntry) -> dict[str, Any]:
    """A watched server as JSON values (``/api/v1/fleet``)."""
    return {
        "ip": entry.ip,
        "helo": entry.helo,
        "label": entry.label,
        "state": entry.state,
        "since": iso(entry.since),
        "last_checked": iso(entry.last_checked),
        "changed_by": entry.changed_by,
        "changed_at": iso(entry.changed_at),
    }
