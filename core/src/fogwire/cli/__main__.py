"""``python -m fogwire.cli``: the same as the ``fogwire`` command."""

from fogwire.cli.main import entry

entry()
