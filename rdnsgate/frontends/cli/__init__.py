"""The command-line front end: ``rdnsgate check``, ``rdnsgate audit``."""

from rdnsgate.frontends.cli.app import app, main

__all__ = ["app", "main"]
