"""powercast: nightly batch forecasting of electric power consumption (Prefect-free library)."""

from powercast.core.config import PowercastConfig, load_config
from powercast.core.version import PACKAGE_VERSION
from powercast.serving.publish import read_forecasts

__version__ = PACKAGE_VERSION

__all__ = ["PowercastConfig", "load_config", "read_forecasts", "__version__"]
