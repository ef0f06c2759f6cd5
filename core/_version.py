"""ember's version, in a module of its own: the handshake compares it between processes,
and it must be importable without importing the package's API."""

__version__ = "0.1.0"
