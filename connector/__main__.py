"""``python -m connector`` is the ``connector`` command."""

from connector.tools.cli import entry

entry()
