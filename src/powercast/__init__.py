"""powercast: nightly batch forecasting of electric power consumption (Prefect-free library).

The names below are loaded on first use (PEP 562), so that ``import powercast`` (which every
``powercast.*`` import runs first) costs nothing: ``powercast ingest`` never pays for pandas,
which ``read_forecasts`` needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from powercast.core.config import PowercastConfig, load_config
    from powercast.serving.publish import read_forecasts

# Public name -> module that defines it.
_LAZY_NAMES = {
    "PowercastConfig": "powercast.core.config",
    "load_config": "powercast.core.config",
    "read_forecasts": "powercast.serving.publish",
    "__version__": "powercast.core.version",
}

__all__ = ["PowercastConfig", "load_config", "read_forecasts", "__version__"]


def __getattr__(name: str) -> Any:
    """Return a public name, importing its module on first use."""
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'powercast' has no attribute {name!r}")
    value = getattr(import_module(module_name), "PACKAGE_VERSION" if name == "__version__" else name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
