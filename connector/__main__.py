"""``python -m connector`` is the ``connector`` command."""

from connector._program import main

main()
