"""The installed package's version, read from its metadata (pyproject.toml declares it)."""

from importlib.metadata import PackageNotFoundError, version

try:
    PACKAGE_VERSION = version("powercast")
except PackageNotFoundError:  # a source tree on sys.path without an install
    PACKAGE_VERSION = "0+unknown"
