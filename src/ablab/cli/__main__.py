"""``python -m ablab.cli``: the ``ablab`` command."""

from ablab.cli.app import console_main

console_main()
