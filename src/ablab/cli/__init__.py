"""The command line: a thin layer over :mod:`ablab.runner` and :mod:`ablab.results`.

``app`` and the exit policy (:func:`main`, :func:`console_main`) are in :mod:`.app`; each
family of commands registers itself on ``app`` from its own module, imported here in the
order ``ablab --help`` lists them: :mod:`.catalogue` (list, schema), :mod:`.train`,
:mod:`.run` (with the dry-run :mod:`.plan`), :mod:`.directory` (status, report, analyze,
check, data, export, check-model). :mod:`.outcome` prints what a study run did.
"""

# ``ablab.cli.os``: tests stand in for os._exit through it; the imports keep their order
import os  # noqa: F401, I001

# each module registers its commands on ``app`` as it is imported: this order is the
# order ``ablab --help`` lists them in
from ablab.cli import catalogue  # noqa: F401
from ablab.cli import train  # noqa: F401
from ablab.cli import run  # noqa: F401
from ablab.cli import directory  # noqa: F401
from ablab.cli.app import app, console, console_main, err_console, main, plural
from ablab.cli.plan import may_train

#: the name it had when the command line was one module
_may_train = may_train

__all__ = ["app", "console", "console_main", "err_console", "main", "plural"]
