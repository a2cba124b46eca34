"""shoal's version: the one place it is written (``pyproject.toml`` reads it from here).

A constant, so that knowing it costs no import: every connection's handshake sends it,
and ``importlib.metadata`` would cost a worker tens of milliseconds at start.
"""

__version__ = "0.1.0"
