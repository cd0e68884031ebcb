"""powercast: nightly batch forecasting of electric power consumption (Prefect-free library)."""

from powercast.core.config import PowercastConfig, load_config
from powercast.serving.publish import read_forecasts

__version__ = "0.1.0"

__all__ = ["PowercastConfig", "load_config", "read_forecasts", "__version__"]
