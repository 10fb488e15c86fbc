"""`rdnsgate check` stays light: it loads no storage, SMTP or web code (python -X importtime shows the rest)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sqlalchemy", "alembic", "aiosqlite", "aiosmtpd", "aiosmtplib", "fastapi", "uvicorn", "jinja2", "starlette")

PROBE = """
import json, sys
sys.argv = ["rdnsgate", *sys.argv[1:]]
from rdnsgate.main import main
try:
    main()
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _loaded(*args: str) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], {name.split(".")[0] for name in report["modules"]}


def test_check_help_and_a_check_load_no_storage_smtp_or_web_code() -> None:
    code, modules = _loaded("check", "--help")
    assert code == 0 and not modules & set(HEAVY), modules & set(HEAVY)
    # typer 0.29 coerces options through pydantic (pyproject.toml keeps it out): no command imports it.
    for args in (("check", "--help"), ("--help",), ("whitelist", "--help"), ("serve", "--help")):
        code, modules = _loaded(*args)
        assert code == 0 and "pydantic" not in modules, args
    # A closed loopback port as the resolver: the check ends at once with a temporary error (exit status 3).
    # Its options are coerced without pydantic (typer before 0.29: pyproject.toml), half of a command's start.
    code, modules = _loaded("check", "127.0.0.1", "--nameserver", "127.0.0.1:9", "--timeout", "0.05", "--tries", "1")
    assert code == 3 and not modules & set(HEAVY), modules & set(HEAVY)
    assert "pydantic" not in modules


def test_a_store_at_the_newest_schema_opens_without_alembic(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A new store is made by Alembic's migrations; one already at the newest schema is opened without
    importing Alembic (~0.3 s of every store command's start)."""
    monkeypatch.setenv("RDNSGATE_STORAGE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    code, modules = _loaded("whitelist", "list")
    assert code == 0 and "alembic" in modules
    code, modules = _loaded("whitelist", "list")
    assert code == 0 and "alembic" not in modules and "sqlalchemy" in modules
