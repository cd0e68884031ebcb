"""``python -m powercast`` is the ``powercast`` command."""

from powercast.cli.main import main

raise SystemExit(main())
