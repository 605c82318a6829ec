"""The CoMo Live version (one home: pyproject.toml, `como-live --version` and the installer read it)."""
__version__ = "0.1.0"
