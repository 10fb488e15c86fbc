"""``python -m rdnsgate``: the same as the ``rdnsgate`` command."""

from rdnsgate.frontends.cli import main

main()
