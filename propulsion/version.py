"""The library's version: one place, read by the package and by what the library writes (adapter configs)."""

__version__ = "0.1.0"
