"""The SDK version, in its own module so that every module can read it without an import cycle."""

__version__ = "0.1.0"
