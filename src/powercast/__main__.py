"""``python -m powercast`` is the ``powercast`` command."""

from powercast.cli import main

raise SystemExit(main())
