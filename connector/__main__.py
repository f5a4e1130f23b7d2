"""``python -m connector`` is the ``connector`` command."""

import sys

from connector.tools.cli import main

sys.exit(main())
