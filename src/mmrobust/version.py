"""The version, from the installed package's metadata (pyproject.toml is the one source)."""
from importlib import metadata

try:
    __version__ = metadata.version("mmrobust")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
