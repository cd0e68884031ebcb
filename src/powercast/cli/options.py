"""Command-line options derived from configuration settings (``powercast.core.settings``).

``--max-epochs N`` sets ``train.max_epochs``; its type, choices and help come from the config
field, and its bounds are checked when the configuration is built (one error naming the key).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from powercast.core.settings import Setting


def option_name(item: Setting) -> str:
    """Return the long option of a setting (``train.max_epochs`` → ``--max-epochs``)."""
    return "--" + item.name.replace("_", "-")


def add_setting_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, items: Sequence[Setting]) -> None:
    """Add one option per setting; an option left out keeps the configured value."""
    for item in items:
        value_type, choices, is_list = item.scalar_type()
        help_text = f"{item.description} ({item.key}, default {item.default_text})".replace("%", "%%")
        if value_type is bool:
            parser.add_argument(
                option_name(item), dest=item.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
            continue
        parser.add_argument(
            option_name(item),
            dest=item.name,
            type=value_type,
            choices=choices,
            nargs="+" if is_list else None,
            default=None,
            help=help_text,
        )


def setting_overrides(args: argparse.Namespace, items: Sequence[Setting]) -> dict[str, Any]:
    """Return the dotted configuration keys the command line set (options left out are omitted)."""
    return {item.key: getattr(args, item.name) for item in items if getattr(args, item.name, None) is not None}
