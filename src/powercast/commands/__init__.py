"""Subcommands of the powercast CLI, one module per job."""

