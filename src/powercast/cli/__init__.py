"""Layer 8, the ``powercast`` command: one module per subcommand group. Imports any library layer; nothing imports it."""
