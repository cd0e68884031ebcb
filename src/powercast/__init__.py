"""powercast: nightly batch forecasting of electric power consumption (Prefect-free library)."""

from powercast.config import PowercastConfig, load_config

__version__ = "0.1.0"

__all__ = ["PowercastConfig", "load_config", "__version__"]
