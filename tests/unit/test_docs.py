"""The docs cannot drift from the code: reason codes, profile rules, CLI options, links."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import typer.main

from rdnsgate.checks import helo, iprev, sender
from rdnsgate.errors import ConfigError
from rdnsgate.main import app
from rdnsgate.policy.profiles import parse_rules

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

CALL = re.compile(r'_(?:result|helo|align|sender)\(\s*(?:Result\.\w+),\s*"([a-z-]+)"', re.S)


def test_every_reason_used_is_declared() -> None:
    for module, declared in (
        (iprev, iprev.REASONS),
        (helo, {**helo.REASONS, **helo.ALIGN_REASONS}),
        (sender, sender.REASONS),
    ):
        used = set(CALL.findall(Path(module.__file__).read_text()))
        assert used == set(declared), (module.__name__, used ^ set(declared))


def test_generated_docs_are_current() -> None:
    """docs/ parts derived from the code (reason tables, profile table, settings) equal what the code says."""
    spec = importlib.util.spec_from_file_location("gendocs", ROOT / "scripts" / "gendocs.py")
    assert spec is not None and spec.loader is not None
    gendocs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gendocs)
    for file, blocks in gendocs.BLOCKS.items():
        text = (DOCS / file).read_text()
        assert gendocs.render(text, blocks, file) == text, f"{file} is stale: run python scripts/gendocs.py"


def test_profile_rules_reject_unknown_reasons() -> None:
    with pytest.raises(ConfigError, match="iprev has no reason 'ptr-mismatc' with result fail"):
        parse_rules({"iprev fail ptr-mismatc": "log"}, "gateway")
    with pytest.raises(ConfigError, match="no check has a reason 'ptr-mismatch' with result temperror"):
        parse_rules({"* temperror ptr-mismatch": "log"}, "gateway")
    assert list(parse_rules({"* fail ptr-mismatch": "log", "helo none off": "log"}, "x")) == [
        ("*", "fail", "ptr-mismatch"),
        ("helo", "none", "off"),
    ]


def test_every_cli_option_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()

    def walk(command: object, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            full = f"{path} {name}"
            assert f"`{full}" in text, full
            section = text.split(f"`{full}", 1)[1].split("\n## ", 1)[0]
            for param in sub.params:
                for opt in param.opts:
                    if opt.startswith("--") and opt != "--help":
                        assert f"`{opt}" in section or f"/ {opt}" in section, (full, opt)
            walk(sub, full)

    walk(typer.main.get_command(app), "rdnsgate")


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), target
